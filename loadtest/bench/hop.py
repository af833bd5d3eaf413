"""The engine <-> front hop alone, side by side: ZeroMQ (DEALER/ROUTER over ipc, driven by the
event loop as the service did until it changed) against service.transport (length-prefixed
messages on a Unix stream socket), in alternating rounds.

A client process sends a batch-1 `Infer` (service.messages, 16 token ids) with `--conc` requests
in flight; a server process decodes it and answers a canned `Inferred` (2 labels, 64-wide
embedding). Per transport and concurrency: microseconds per round trip, and CPU microseconds per
round trip of each side (/proc). The figures decided the service's transport
(docs/benchmarks.md).

  python -m loadtest.bench.hop --requests 20000 --rounds 2
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import uvloop
import zmq
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.cli import settings_from, settings_parser
from service import transport
from service.messages import BatchResult, Codec, Infer, Inferred
from service.transport import FrameStream

KINDS = ("zmq", "unix")


class ZmqLoopSocket:
    """A ZeroMQ socket on the running loop, as the service's was: no high-water mark, received
    messages drained on every edge of its file descriptor."""

    def __init__(self, kind: int, on_message: Callable[[list[bytes]], None]) -> None:
        self.sock = zmq.Context.instance().socket(kind)
        for opt in (zmq.SNDHWM, zmq.RCVHWM, zmq.LINGER):
            self.sock.setsockopt(opt, 0)
        self.on_message = on_message
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.FD, self._drain)

    def send(self, frames: list) -> None:
        self.sock.send_multipart(frames, zmq.NOBLOCK)
        if self.sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.on_message(frames)


def _reply() -> Inferred:
    result = BatchResult(np.zeros((1, 2), np.float32), np.zeros((1, 64), np.float32), 0.0, 0.0, 1, 16)
    return Inferred(result=result, has_room=True)


async def _serve(kind: str, where: str) -> None:
    codec, reply = Codec(), _reply()
    if kind == "zmq":
        sock: ZmqLoopSocket | None = None

        def on_zmq(frames: list[bytes]) -> None:
            ident, rid, *msg = frames
            codec.request(msg)
            assert sock is not None
            sock.send([ident, rid, *codec.encode(reply)])

        sock = ZmqLoopSocket(zmq.ROUTER, on_zmq)
        sock.sock.bind(where)
    else:

        def on_unix(stream: FrameStream, frames: list[bytes]) -> None:
            rid, *msg = frames
            codec.request(msg)
            stream.send([rid, *codec.encode(reply)])

        loop = asyncio.get_running_loop()
        await loop.create_unix_server(lambda: FrameStream(on_unix), sock=transport.listen(where))
    await asyncio.Event().wait()


def serve(kind: str, where: str) -> None:
    uvloop.run(_serve(kind, where))


async def _client(kind: str, where: str, conc: int, requests: int) -> float:
    """Seconds for `requests` round trips, `conc` in flight (after as many to warm up)."""
    loop = asyncio.get_running_loop()
    codec = Codec()
    pending: dict[bytes, asyncio.Future] = {}

    def done(frames: list[bytes]) -> None:
        rid, *msg = frames
        pending.pop(rid).set_result(codec.reply(msg))

    if kind == "zmq":
        zsock = ZmqLoopSocket(zmq.DEALER, done)
        zsock.sock.connect(where)
        send: Callable[[list], None] = zsock.send
    else:
        stream = await transport.connect(where, lambda s, f: done(f), lambda s: None)
        send = stream.send
    rows = [np.arange(16, dtype=np.int64)]

    async def worker(first: int) -> None:
        for i in range(first, requests, conc):
            rid = i.to_bytes(8, "little")
            fut = pending[rid] = loop.create_future()
            send([rid, *codec.encode(Infer.of("mha", rows, None, "-"))])
            await fut

    await asyncio.gather(*(worker(w) for w in range(conc)))
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(conc)))
    return time.perf_counter() - t0


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(kind: str, concs: list[int], requests: int, tmp: Path) -> dict[str, dict[str, float]]:
    where = f"ipc://{tmp / 'zmq.sock'}" if kind == "zmq" else str(tmp / "unix.sock")
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(kind, where), daemon=True)
    server.start()
    time.sleep(1.0)  # bound and listening
    out = {}
    try:
        for conc in concs:
            s0, c0 = _cpu(server.pid or 0), _cpu(os.getpid())
            seconds = uvloop.run(_client(kind, where, conc, requests))
            s1, c1 = _cpu(server.pid or 0), _cpu(os.getpid())
            n = 2 * requests  # the warm-up's too: CPU is read around both
            out[f"c{conc}"] = {
                "us_per_round_trip": round(seconds / requests * 1e6, 1),
                "server_cpu_us": round((s1 - s0) / n * 1e6, 1),
                "client_cpu_us": round((c1 - c0) / n * 1e6, 1),
            }
    finally:
        server.kill()
        server.join()
    return out


class HopSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="H2H_BENCH_HOP_", extra="forbid")

    requests: int = Field(default=20000, ge=100, description="round trips per transport and concurrency")
    conc: list[int] = Field(default=[1, 32], description="requests in flight")
    rounds: int = Field(default=2, ge=1, description="alternating rounds over both transports")


def main(argv: list[str] | None = None) -> None:
    a = settings_from(
        HopSettings, settings_parser(HopSettings, "bench_hop", __doc__.splitlines()[0]).parse_args(argv)
    )
    raw: dict[str, list] = {k: [] for k in KINDS}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(a.rounds):
            for kind in KINDS:
                raw[kind].append(measure(kind, a.conc, a.requests, Path(tmp)))
    for kind, runs in raw.items():
        for conc in a.conc:
            cells = [r[f"c{conc}"] for r in runs]
            print(
                f"{kind:5} c={conc:<3} us/round trip {' / '.join(str(c['us_per_round_trip']) for c in cells):>20}"
                f"  CPU us server {' / '.join(str(c['server_cpu_us']) for c in cells):>14}"
                f"  client {' / '.join(str(c['client_cpu_us']) for c in cells):>14}"
            )
    print(json.dumps(raw))


if __name__ == "__main__":
    main()
