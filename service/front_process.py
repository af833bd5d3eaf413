"""A front process's entry (spawned by service.supervisor): uvicorn serving the front app on the
listening socket the supervisor bound, with the engine behind an EngineLink.

prometheus_client reads PROMETHEUS_MULTIPROC_DIR when it is first imported, so this module
imports nothing of the service before `main` has set it: each front's series then live in
that folder's files and /metrics (in any front) sums them over every front, dead ones included,
so a request is counted once whichever front answered it.
"""

from __future__ import annotations

import logging
import os
import socket

from service import process_tree  # imports no prometheus_client (see the docstring)


def main(settings_json: str, endpoint: str, sock: socket.socket, metrics_dir: str, index: int) -> None:
    process_tree.die_with_parent()
    process_tree.name(f"h2h-front-{index}")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    # only now: prometheus_client reads that variable on its first import (see the docstring)
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    from service.app import create_app
    from service.front.link import EngineLink
    from service.http.server import serve
    from service.metrics import FrontMetrics, families, with_help
    from service.settings import ServiceSettings

    settings = ServiceSettings.model_validate_json(settings_json)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format=f"%(asctime)s %(levelname)s %(name)s[front {index}]: %(message)s",
    )
    every_front = CollectorRegistry()
    MultiProcessCollector(every_front, path=metrics_dir)
    metrics = FrontMetrics()
    help_texts = {f.name: f.documentation for f in families(metrics.registry)}
    app = create_app(
        settings,
        engine=EngineLink(settings, endpoint),
        metrics=metrics,
        front_series=lambda: with_help(families(every_front), help_texts),
    )
    serve(app, settings, sockets=[sock])
