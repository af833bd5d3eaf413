"""uvicorn's Server, told about SIGTERM before its own shutdown starts (both the single-process
service and every front run it)."""

from __future__ import annotations

import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn

from service.settings import ServiceSettings

if TYPE_CHECKING:
    from service.app import ServiceApp


class DrainingServer(uvicorn.Server):
    """uvicorn.Server that tells the app about SIGTERM before uvicorn starts its shutdown."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._on_exit()
        super().handle_exit(sig, frame)


def serve(app: ServiceApp, settings: ServiceSettings, sockets: list[socket.socket] | None = None) -> None:
    """Run `app` until SIGTERM/SIGINT has drained it (exit 0), on `sockets` when given (a front
    on the supervisor's socket), else on the settings' host and port; exit 1 if it never started."""
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=settings.shutdown_grace_s,
        lifespan="on",
    )
    server = DrainingServer(config, app.state.registry.begin_shutdown)
    # uvicorn re-raises the captured signal after its graceful shutdown; exit 0 then.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    server.run(sockets=sockets)
    if not server.started:
        sys.exit(1)
