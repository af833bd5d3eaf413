"""The framework floor: a bare FastAPI route that parses the same JSON body and does no work.

`bench_overhead` serves it with the same uvicorn settings as the service and loads it with
the same client, so "service minus floor" is the cost of our own request path and "floor"
is what FastAPI + uvicorn cost on this machine.

  python -m loadtest.bench.bare_app --port 8102
"""

from __future__ import annotations

import argparse

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, StrictInt


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


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    p = argparse.ArgumentParser(prog="floor_app", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8102)
    a = p.parse_args(argv)
    uvicorn.run(create_app(), host=a.host, port=a.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
