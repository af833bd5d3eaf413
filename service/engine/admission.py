"""Admission before parsing: a bounded, first-come-first-served wait for room in a full queue.

Under overload a server that answers 429 at once invites the next request at once: a closed-loop
client with 200 connections turned a full queue into ~11,000 refusals a second, whose HTTP
parsing took the cores the model needed (useful work fell to 0.39 of capacity even though each
refusal was decided from the URL alone). Letting a request wait a little, its body unread, for
room in the queue paces such clients at no CPU cost: the oldest waiter is admitted as soon as a
batch leaves the queue, and whoever is still waiting after `wait_s` gets 429 + Retry-After.
Newcomers never pass waiting requests. `wait_s = 0` refuses at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Protocol


class Queue(Protocol):
    """What the room needs of a model's queue (service.batcher.DynamicBatcher is one)."""

    @property
    def accepting(self) -> bool: ...
    def has_room(self, rows: int = 1) -> bool: ...
    def requests_with_room(self) -> int: ...
    def watch_room(self, callback: Callable[[], None]) -> None: ...


class WaitingRoom:
    """Requests for one model that wait, bodies unread, for room in its queue."""

    def __init__(self, queue: Queue, wait_s: float) -> None:
        self.queue = queue
        self.wait_s = wait_s
        self._waiters: deque[asyncio.Future[None]] = deque()
        queue.watch_room(self.notify)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def enter(self) -> bool:
        """True when the request may go on to be parsed and queued, False to refuse it."""
        q = self.queue
        if not self._waiters and q.has_room(1):
            return True
        if self.wait_s <= 0 or not q.accepting:
            return False
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await asyncio.wait_for(fut, self.wait_s)
            return True
        except TimeoutError:
            return False
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(fut)  # still there only when it timed out

    def notify(self) -> None:
        """Rows left the queue: admit the oldest waiters that the free room can hold."""
        admit = self.queue.requests_with_room()
        while self._waiters and admit > 0:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                admit -= 1

    def refuse_all(self) -> None:
        """Shutdown: every waiter is answered now (the route then says 503)."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
