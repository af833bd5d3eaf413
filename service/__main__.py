"""`python -m service [--model-repository DIR] [--host H] [--port P]` (console script h2h-serve).

SIGTERM/SIGINT: new inference requests get 503 + Retry-After and /v2/health/ready turns 503,
queued work runs at once, every accepted request is answered, then the process exits 0
(uvicorn closes the listening socket and waits up to H2H_SHUTDOWN_GRACE_S).
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

import uvicorn

from contract.cli import OneLineArgumentParser, fail, settings_flags, settings_from
from service.settings import ServiceSettings


class DrainingServer(uvicorn.Server):
    """uvicorn.Server that tells the app about SIGTERM before uvicorn starts its shutdown."""

    def __init__(self, config: uvicorn.Config, on_exit) -> None:  # noqa: ANN001
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._on_exit()
        super().handle_exit(sig, frame)


# the settings a flag may set (every setting is also an env var H2H_<NAME>); what each means, its
# type, choices and default come from ServiceSettings
FLAGS = ["model_repository", "host", "port", "provider", "variant", "models"]
HELP = {
    "model_repository": "folder of exported models",
    "host": "bind address",
    "port": "port",
    "provider": "execution provider",
    "variant": "model variant, e.g. model.opt.onnx (default: each model's best proven one)",
    "models": "serve only these model names (default all)",
}


def build_parser() -> OneLineArgumentParser:
    p = OneLineArgumentParser(
        prog="h2h-serve", description="Serve the model repository (v1 JSON + KServe v2)."
    )
    settings_flags(p, ServiceSettings, FLAGS, helps=HELP)
    return p


def main(argv: list[str] | None = None) -> None:
    settings = settings_from(ServiceSettings, build_parser().parse_args(argv))
    if not settings.model_repository.is_dir():
        fail(f"model repository {settings.model_repository} is not a folder (--model-repository)")
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    from service.http.app import create_app  # after argument checks: onnxruntime import is slow

    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=settings.shutdown_grace_s,
        lifespan="on",
    )
    server = DrainingServer(config, app.state.service.begin_shutdown)
    # uvicorn re-raises the captured signal after its graceful shutdown; exit 0 then.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    server.run()
    if not server.started:
        sys.exit(1)


if __name__ == "__main__":
    main()
