"""`python -m service [--model-repository DIR] [--host H] [--port P] [--fronts W]` (h2h-serve).

One engine process runs the models and W front processes serve HTTP (service.supervisor), or
one process serves both (`--single-process`); unset, the shape is the measured best for the
host (ServiceSettings.one_process: one process on a CPU host with few cores).

SIGTERM/SIGINT: new inference requests on open connections get 503 + Retry-After and
/v2/health/ready turns 503, new connections are refused, every accepted request is answered,
then the service exits 0 (each front and the engine wait up to H2H_SHUTDOWN_GRACE_S).
"""

from __future__ import annotations

import logging
import sys

from contract.cli import OneLineArgumentParser, fail, settings_flags, settings_from
from service.http.server import serve
from service.settings import ServiceSettings

# the settings a flag may set (every setting is also an env var H2H_<NAME>); what each means, its
# type, choices and default come from ServiceSettings' fields
FLAGS = [
    "model_repository",
    "host",
    "port",
    "provider",
    "variant",
    "models",
    "fronts",
    "single_process",
    "null_engine",
]


def build_parser() -> OneLineArgumentParser:
    p = OneLineArgumentParser(
        prog="h2h-serve", description="Serve the model repository (v1 JSON + KServe v2)."
    )
    settings_flags(p, ServiceSettings, FLAGS)
    return p


def main(argv: list[str] | None = None) -> None:
    settings = settings_from(ServiceSettings, build_parser().parse_args(argv))
    if not settings.model_repository.is_dir():
        fail(f"model repository {settings.model_repository} is not a folder (--model-repository)")
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    if not settings.one_process():
        from service import supervisor  # after argument checks, like create_app below

        sys.exit(supervisor.run(settings))
    from service.app import create_app  # after argument checks: onnxruntime import is slow

    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
