"""The framework's floor: a bare FastAPI route that parses the same JSON body and does no work.

`bench.overhead` serves it with the same uvicorn settings as the service and loads it with the
same client, so "service minus bare app" is the cost of our own request path and the bare app's
figures (the `floor` entry of the overhead report) are what FastAPI + uvicorn cost on this
machine. "Floor" means this, and only this, in the load tester; the model's own cost measured
in-process (sweep/inproc.py) is called in-process.

  python -m loadtest.bench.bare_app --port 8102
"""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from contract.cli import settings_from, settings_parser


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


class BareAppSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(default="127.0.0.1", description="bind address")
    port: int = Field(default=8102, ge=1, le=65535, description="port")


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    a = settings_from(
        BareAppSettings,
        settings_parser(BareAppSettings, "bare_app", __doc__.splitlines()[0]).parse_args(argv),
    )
    uvicorn.run(create_app(), host=a.host, port=a.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
