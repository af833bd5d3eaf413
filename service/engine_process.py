"""The engine process's entry (spawned by service.supervisor), as service.front_process is a
front's: the engine, and with it ONNX Runtime, is imported only in the process that runs it, so
the supervisor that names this entry never loads the runtime."""

from __future__ import annotations

from multiprocessing.connection import Connection

from service import process_tree


def main(settings_json: str, endpoint: str, ready: Connection) -> None:
    process_tree.die_with_parent()
    process_tree.name("h2h-engine")
    # only here, in the engine's own process: the supervisor imports this module (see the docstring)
    from service.engine import server

    server.main(settings_json, endpoint, ready)
