"""The framework's floor: a bare FastAPI route that parses the same JSON body and does no work.

`bench.overhead` serves it with the same uvicorn settings as the service and loads it with the
same client, so "service minus bare app" is the cost of our own request path and the bare app's
figures (the `floor` entry of the overhead report) are what FastAPI + uvicorn cost on this
machine. "Floor" means this, and only this, in the load tester; the model's own cost measured
in-process (sweep/inproc.py) is called in-process.

  python -m loadtest.bench.bare_app --port 8102
"""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.cli import settings_from, settings_parser
from contract.flags import BindAddress, Port


class Body(BaseModel):
    model_config = ConfigDict(extra="allow")

    input_ids: list[list[StrictInt]] | None = None
    attention_mask: list[list[StrictInt]] | None = None
    texts: list[str] | None = None


def create_app() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/models/{name}/predict")
    async def predict(name: str, body: Body) -> dict:
        rows = len(body.input_ids or body.texts or [])
        return {"model": name, "rows": rows}

    return app


class BareAppSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="H2H_BENCH_BARE_APP_", extra="forbid")

    host: BindAddress = "127.0.0.1"
    port: Port = Field(default=8102, ge=1, le=65535)


def main(argv: list[str] | None = None) -> None:
    a = settings_from(
        BareAppSettings,
        settings_parser(BareAppSettings, "bare_app", __doc__.splitlines()[0]).parse_args(argv),
    )
    uvicorn.run(create_app(), host=a.host, port=a.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
