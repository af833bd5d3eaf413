"""The transport between the engine and its fronts: messages (lists of frames: service.messages
encodes them) on a Unix stream socket, each length-prefixed, read and written by the event loop
itself (an asyncio Protocol: no thread, no future per message).

Why not ZeroMQ, the transport before: on a host with few cores its I/O thread on each side
costs two thread wake-ups per message each way, and its `send` was the front's largest frame
in the profile. Measured side by side (`python -m loadtest.bench.hop`, docs/benchmarks.md) this
stream costs 0.43x ZeroMQ's CPU per round trip at c=1 and 0.30x at c=32. What ZeroMQ gave beyond that is small here:
reconnection (the link reconnects itself when the engine is restarted) and routing (a reply goes
back on the connection its request came on).

A message on the wire: u32 length of the rest, u8 frame count, u32 length of each frame, then
the frames; one write per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from collections.abc import Callable, Sequence
from typing import cast

log = logging.getLogger(__name__)

Frame = bytes | memoryview
MAX_FRAMES = 255
_LEN = struct.Struct("<I")


def pack(frames: Sequence[Frame]) -> bytes:
    """One message's bytes on the wire."""
    if len(frames) > MAX_FRAMES:
        raise ValueError(f"a message holds at most {MAX_FRAMES} frames, got {len(frames)}")
    sizes = [memoryview(f).nbytes for f in frames]
    head = struct.pack(f"<IB{len(frames)}I", 1 + 4 * len(frames) + sum(sizes), len(frames), *sizes)
    return b"".join((head, *frames))


def unpack(data: bytes, start: int = 0) -> list[bytes]:
    """The frames of the message at `start` in `data` (where its length prefix ends)."""
    count = data[start]
    sizes = struct.unpack_from(f"<{count}I", data, start + 1)
    frames, at = [], start + 1 + 4 * count
    for size in sizes:
        frames.append(data[at : at + size])
        at += size
    return frames


class FrameStream(asyncio.Protocol):
    """One connection's messages: `on_message(stream, frames)` for each one received, `send`
    to answer or ask, `on_lost(stream)` once it closes."""

    def __init__(
        self,
        on_message: Callable[[FrameStream, list[bytes]], None],
        on_lost: Callable[[FrameStream], None] | None = None,
    ) -> None:
        self.on_message = on_message
        self.on_lost = on_lost
        self.closed = False
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is one without subclassing it

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.on_lost is not None:
            self.on_lost(self)

    def data_received(self, data: bytes) -> None:
        if self._buf:  # the rest of a message that came in parts
            self._buf += data
            data = bytes(self._buf)
            self._buf.clear()
        at, end = 0, len(data)
        while end - at >= 4:
            (size,) = _LEN.unpack_from(data, at)
            if end - at - 4 < size:
                break
            frames = unpack(data, at + 4)
            at += 4 + size
            try:
                self.on_message(self, frames)
            except Exception:  # one bad message must not stop the connection
                log.exception("a message could not be handled")
        if at < end:
            self._buf += data[at:]

    def send(self, frames: Sequence[Frame]) -> None:
        """Queue one message (never waits: admission bounds what is in flight)."""
        if self.closed or self._transport is None:
            raise ConnectionError("the connection is closed")
        self._transport.write(pack(frames))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def listen(path: str) -> socket.socket:
    """The listening Unix socket at `path` (a stale one, left by an engine that was killed, replaced)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def connect(
    path: str, on_message: Callable[[FrameStream, list[bytes]], None], on_lost: Callable[[FrameStream], None]
) -> FrameStream:
    """A connection to the listener at `path` (OSError when there is none yet)."""
    loop = asyncio.get_running_loop()
    _, stream = await loop.create_unix_connection(lambda: FrameStream(on_message, on_lost), path)
    return stream
