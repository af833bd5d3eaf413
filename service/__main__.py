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
from typing import get_args

import uvicorn

from contract.cli import OneLineArgumentParser, fail, validation_message
from service.settings import ServiceSettings


class DrainingServer(uvicorn.Server):
    """uvicorn.Server that tells the app about SIGTERM before uvicorn starts its shutdown."""

    def __init__(self, config: uvicorn.Config, on_exit) -> None:  # noqa: ANN001
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._on_exit()
        super().handle_exit(sig, frame)


# flag -> what it sets; env name, default and (for --provider) choices are read from ServiceSettings
_FLAGS = {
    "--model-repository": "folder of exported models",
    "--host": "bind address",
    "--port": "port",
    "--provider": "execution provider",
    "--variant": "model variant, e.g. model.opt.onnx",
}


def _help(flag: str, what: str) -> str:
    """'what (H2H_NAME, default X)': the settings class states the default, the help repeats it."""
    name = flag.removeprefix("--").replace("-", "_")
    default = ServiceSettings.model_fields[name].default
    shown = "each model's own" if default is None else default
    return f"{what} (H2H_{name.upper()}, default {shown})"


def build_parser() -> OneLineArgumentParser:
    p = OneLineArgumentParser(
        prog="h2h-serve", description="Serve the model repository (v1 JSON + KServe v2)."
    )
    for flag, what in _FLAGS.items():
        kind = int if flag == "--port" else None
        choices = (
            get_args(ServiceSettings.model_fields["provider"].annotation) if flag == "--provider" else None
        )
        p.add_argument(flag, type=kind, choices=choices, help=_help(flag, what))
    p.add_argument("--models", nargs="+", help="serve only these model names (H2H_MODELS, default all)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    try:
        settings = ServiceSettings(**overrides)
    except Exception as exc:
        fail(validation_message(exc))
    if not settings.model_repository.is_dir():
        fail(f"model repository {settings.model_repository} is not a folder (--model-repository)")
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    from service.app import create_app  # after argument checks: onnxruntime import is slow

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
