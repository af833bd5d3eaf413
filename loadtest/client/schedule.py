"""Open-loop pacing: Poisson arrivals at a fixed mean rate, sent at their intended times.

Pure and clock-injectable. The scheduler never waits for a response before the next send
(that is the point of an open loop); callers measure each request's latency from its
*intended* send time, so when the sender falls behind (a busy event loop, a stalled
client) the delay shows up in the latencies instead of silently lowering the offered
rate (coordinated omission). Sends more than `late_after` seconds behind schedule are
counted as late.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


def poisson_offsets(rate: float, duration: float, seed: int = 0) -> np.ndarray:
    """Arrival times in [0, duration) of a Poisson process with `rate` events per second."""
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be positive")
    rng = np.random.default_rng(seed)
    n_guess = int(rate * duration + 10 * np.sqrt(rate * duration) + 10)
    t = np.cumsum(rng.exponential(1.0 / rate, size=n_guess))
    while t[-1] < duration:  # rare: draw more
        more = t[-1] + np.cumsum(rng.exponential(1.0 / rate, size=n_guess))
        t = np.concatenate([t, more])
    return t[t < duration]


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    """The real clock: time.perf_counter and asyncio.sleep."""

    def now(self) -> float:
        return time.perf_counter()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


@dataclass
class ScheduleStats:
    planned: int = 0
    sent: int = 0
    late: int = 0  # sends more than `late_after` behind their intended time
    max_lag_s: float = 0.0
    lag_sum_s: float = 0.0
    start: float = 0.0
    first_sent: float = 0.0
    last_sent: float = 0.0
    lags: list[float] = field(default_factory=list, repr=False)

    @property
    def mean_lag_s(self) -> float:
        return self.lag_sum_s / self.sent if self.sent else 0.0

    def achieved_rate(self, duration: float) -> float:
        """Sends per second over the scheduled window."""
        return self.sent / duration if duration > 0 else 0.0


async def run_open_loop(
    offsets: np.ndarray | list[float],
    fire: Callable[[float], object],
    clock: Clock | None = None,
    *,
    late_after: float = 0.002,
    stop: Callable[[], bool] | None = None,
    start: float | None = None,
) -> ScheduleStats:
    """Call `fire(intended_abs_time)` at each `start + offset`; never waits for responses.

    `fire` must not block (it should create a task and return). Returns counts of late sends
    and the lag distribution. `stop()` returning True ends the schedule early. `start` (a clock
    time, default now) anchors the schedule, so client processes can share one.
    """
    clock = clock or MonotonicClock()
    st = ScheduleStats(planned=len(offsets))
    st.start = clock.now() if start is None else start
    for off in offsets:
        if stop is not None and stop():
            break
        intended = st.start + float(off)
        wait = intended - clock.now()
        if wait > 0:
            await clock.sleep(wait)
        now = clock.now()
        lag = max(0.0, now - intended)
        fire(intended)
        st.sent += 1
        st.lag_sum_s += lag
        st.lags.append(lag)
        st.max_lag_s = max(st.max_lag_s, lag)
        if lag > late_after:
            st.late += 1
        if st.sent == 1:
            st.first_sent = now
        st.last_sent = now
    return st
