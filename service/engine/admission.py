"""Admission before parsing: a bounded, first-come-first-served wait for room in a full queue.

Under overload a server that answers 429 at once invites the next request at once: a closed-loop
client with 200 connections turned a full queue into ~11,000 refusals a second, whose HTTP
parsing took the cores the model needed (useful work fell to 0.39 of capacity even though each
refusal was decided from the URL alone). Letting a request wait a little, its body unread, for
room in the queue paces such clients at no CPU cost: the oldest waiter is admitted as soon as a
batch leaves the queue, and whoever is still waiting after `wait_s` gets 429 + Retry-After.
Newcomers never pass waiting requests. `wait_s = 0` refuses at once.

A request enters twice: before its body is read (its rows unknown: a request of the usual size
is assumed) and, if its rows do not fit when it is queued, again with its rows, so a request of
many rows waits for room like a one-row request rather than being refused at once. A request
larger than the whole queue can never fit and is refused at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Protocol


class Queue(Protocol):
    """What the room needs of a model's queue (service.engine.batcher.DynamicBatcher is one)."""

    @property
    def accepting(self) -> bool: ...
    @property
    def max_queue_rows(self) -> int: ...
    def has_room(self, rows: int = 1) -> bool: ...
    def free_rows(self) -> int: ...
    def usual_rows(self) -> int: ...
    def watch_room(self, callback: Callable[[], None]) -> None: ...


class WaitingRoom:
    """Requests for one model that wait, bodies unread, for room in its queue."""

    def __init__(self, queue: Queue, wait_s: float) -> None:
        self.queue = queue
        self.wait_s = wait_s
        self._waiters: deque[tuple[asyncio.Future[None], int | None]] = deque()
        queue.watch_room(self.notify)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def enter(self, rows: int | None = None) -> bool:
        """True when the request may go on (to be parsed, or queued), False to refuse it;
        `rows` None: not known yet (the body is unread), a request of the usual size."""
        q = self.queue
        if not self._waiters and q.has_room(rows or 1):
            return True
        if self.wait_s <= 0 or not q.accepting or (rows or 1) > q.max_queue_rows:
            return False
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (fut, rows)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(fut, self.wait_s)
            return True
        except TimeoutError:
            return False
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)  # still there only when it timed out

    def notify(self) -> None:
        """Rows left the queue: admit the oldest waiters that the free room can hold, in order."""
        free = self.queue.free_rows()
        while self._waiters:
            fut, rows = self._waiters[0]
            need = self.queue.usual_rows() if rows is None else rows
            if not fut.done() and need > free:
                break
            self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                free -= need

    def refuse_all(self) -> None:
        """Shutdown: every waiter is answered now (the route then says 503)."""
        while self._waiters:
            fut, _ = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
