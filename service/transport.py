"""The transport between the engine and its fronts: a ZeroMQ socket driven by the running event
loop (what crosses it is service.messages').

pyzmq's asyncio sockets cost a future per send and per receive; here sends never wait (no
high-water mark: admission bounds what is in flight, and the engine's queue what is queued) and
received messages are handed to `on_message` as the loop sees the socket readable. ZeroMQ's file
descriptor signals edges, not levels, so the socket is drained until empty on every wake-up and
looked at again after every send (a send can consume the edge a receive would have woken on).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import zmq

log = logging.getLogger(__name__)


class LoopSocket:
    def __init__(self, kind: int, on_message: Callable[[list[bytes]], None]) -> None:
        self.sock = zmq.Context.instance().socket(kind)
        for opt in (zmq.SNDHWM, zmq.RCVHWM, zmq.LINGER):
            self.sock.setsockopt(opt, 0)
        self.on_message = on_message
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Receive on the running loop from now on."""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.FD, self._drain)
        self._drain()

    def send(self, frames: list[bytes | memoryview]) -> None:
        self.sock.send_multipart(frames, zmq.NOBLOCK)
        if self._loop is not None and self.sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                self.on_message(frames)
            except Exception:  # one bad message must not stop the socket
                log.exception("a message could not be handled")

    def close(self) -> None:
        if self._loop is not None and not self.sock.closed:
            self._loop.remove_reader(self.sock.FD)
        self.sock.close()
