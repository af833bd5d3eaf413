"""The engine <-> front transport: a message's frames come out as they went in however the
stream cuts its bytes (parts, several messages at once), one bad message does not stop the
connection, and a real Unix socket carries both ways and says when it closes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from service import transport
from service.transport import FrameStream, pack
from tests.service.test_service_batcher import run_async


def _collect() -> tuple[FrameStream, list[list[bytes]]]:
    got: list[list[bytes]] = []
    return FrameStream(lambda s, frames: got.append(frames)), got


def test_messages_survive_any_cut_of_the_stream() -> None:
    msgs = [[b"rid1", b"head", np.arange(5, dtype=np.int64).data.cast("B")], [b"r2", b""], [b"x" * 70_000]]
    wire = b"".join(pack(m) for m in msgs)
    want = [[bytes(f) for f in m] for m in msgs]
    for step in (1, 3, 7, 1000, len(wire)):
        stream, got = _collect()
        for at in range(0, len(wire), step):
            stream.data_received(wire[at : at + step])
        assert got == want, step


def test_a_message_that_fails_its_handler_does_not_stop_the_stream(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[bytes] = []

    def handle(stream: FrameStream, frames: list[bytes]) -> None:
        if frames[0] == b"bad":
            raise ValueError("planted")
        seen.append(frames[0])

    stream = FrameStream(handle)
    stream.data_received(pack([b"bad"]) + pack([b"good"]))
    assert seen == [b"good"] and "could not be handled" in caplog.text


def test_too_many_frames_are_refused() -> None:
    with pytest.raises(ValueError, match="at most 255"):
        pack([b""] * 256)


def test_a_unix_socket_carries_both_ways(tmp_path: Path) -> None:
    path = str(tmp_path / "engine.sock")

    @run_async
    async def go() -> None:
        listener = transport.listen(path)
        server = await asyncio.get_running_loop().create_unix_server(
            lambda: FrameStream(lambda s, frames: s.send([*frames, b"back"])), sock=listener
        )
        replies: asyncio.Queue[list[bytes]] = asyncio.Queue()
        lost = asyncio.Event()
        client = await transport.connect(path, lambda s, f: replies.put_nowait(f), lambda s: lost.set())
        client.send([b"1", b"hello"])
        assert await asyncio.wait_for(replies.get(), 5) == [b"1", b"hello", b"back"]
        server.close()
        client.close()
        await asyncio.wait_for(lost.wait(), 5)
        with pytest.raises(ConnectionError):
            client.send([b"2"])
        transport.listen(path).close()  # a stale socket file is replaced, not refused

    go()
