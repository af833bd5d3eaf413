"""Admission before parsing: a bounded, first-come-first-served wait for room in a full queue.

Under overload a server that answers 429 at once invites the next request at once: a closed-loop
client with 200 connections turned a full queue into ~11,000 refusals a second, whose HTTP
parsing took the cores the model needed (useful work fell to 0.39 of capacity even though each
refusal was decided from the URL alone). Letting a request wait a little, its body unread, for
room in the queue paces such clients at no CPU cost: the oldest waiter is admitted as soon as a
batch leaves the queue, and whoever is still waiting after `wait_s` gets 429 + Retry-After.
Newcomers never pass waiting requests. `wait_s = 0` refuses at once (the old behaviour).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from service.batcher import DynamicBatcher


class WaitingRoom:
    """Requests for one model that wait, bodies unread, for room in its batcher's queue."""

    def __init__(self, batcher: DynamicBatcher, wait_s: float) -> None:
        self.batcher = batcher
        self.wait_s = wait_s
        self._waiters: deque[asyncio.Future[None]] = deque()
        batcher.on_room = self.notify

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def enter(self) -> bool:
        """True when the request may go on to be parsed and queued, False to refuse it."""
        b = self.batcher
        if not self._waiters and b.has_room(1):
            return True
        if self.wait_s <= 0 or not b.accepting:
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
        b = self.batcher
        free = b.max_queue_rows - b.queued_rows
        per_request = max(1, round(b.mean_request_rows))
        while self._waiters and free >= per_request:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                free -= per_request

    def refuse_all(self) -> None:
        """Shutdown: every waiter is answered now (the route then says 503)."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
