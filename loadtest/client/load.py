"""Drive the running service: closed loop and open loop, over the lean `loadtest.client.wire` client.

httpx is kept for the control plane (readiness, model list, config, /metrics), where speed does
not matter. Every request is `POST /v1/models/{name}/predict` with `input_ids` of exactly [batch, seq]
(random ids in [2, vocab_size)) and an all-ones `attention_mask`, so a point measures that
shape. The body is serialised once per point; the client only sends bytes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import numpy as np

from contract.tensors import ATTENTION_MASK, INPUT_IDS
from loadtest.client.schedule import Clock, MonotonicClock, ScheduleStats, poisson_offsets, run_open_loop
from loadtest.client.wire import Pool, RequestError


class ServiceUnreachable(RuntimeError):
    """No service answers at the URL (or it is not ready)."""


def predict_body(batch: int, seq: int, vocab_size: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, max(3, vocab_size), size=(batch, seq)).tolist()
    mask = [[1] * seq for _ in range(batch)]
    body = {INPUT_IDS: ids, ATTENTION_MASK: mask, "top_k": 1}
    return json.dumps(body, separators=(",", ":")).encode()


def predict_url(base: str, model: str) -> str:
    return f"{base}/v1/models/{model}/predict"


def check_ready(base: str, timeout: float = 5.0) -> None:
    try:
        r = httpx.get(f"{base}/v2/health/ready", timeout=timeout)
    except httpx.HTTPError as exc:
        raise ServiceUnreachable(
            f"no service at {base} ({type(exc).__name__}); start it with "
            f"`python -m service --model-repository DIR --port N` or use --mode inproc"
        ) from None
    if r.status_code != 200:
        raise ServiceUnreachable(f"service at {base} is not ready (GET /v2/health/ready -> {r.status_code})")


def list_models(base: str) -> list[dict]:
    r = httpx.get(f"{base}/v1/models", timeout=10.0)
    r.raise_for_status()
    return r.json()["models"]


def model_config(base: str, model: str) -> dict:
    r = httpx.get(f"{base}/v2/models/{model}/config", timeout=10.0)
    r.raise_for_status()
    return r.json()


def server_metadata(base: str) -> dict:
    try:
        r = httpx.get(f"{base}/v2", timeout=5.0)
        return r.json() if r.status_code == 200 else {}
    except (httpx.HTTPError, ValueError):
        return {}


def scrape_metrics(base: str) -> str:
    r = httpx.get(f"{base}/metrics", timeout=10.0)
    r.raise_for_status()
    return r.text


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests only
    errors: Counter = field(default_factory=Counter)  # "http_429", "ReadTimeout", ...
    window_s: float = 0.0
    schedule: ScheduleStats | None = None
    client_cpu_s: float = 0.0  # CPU the client's event loop(s) spent in the measured window

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def client_cpu_us_per_request(self) -> float | None:
        n = self.ok + self.error_count
        return self.client_cpu_s / n * 1e6 if n else None


Send = Callable[[], Awaitable[int]]


class WireClient:
    """The load client: one keep-alive `wire.Pool` per (url, body); an async context manager."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.pools: dict[tuple[str, bytes], Pool] = {}

    def sender(self, url: str, body: bytes) -> Send:
        key = (url, body)
        if key not in self.pools:
            self.pools[key] = Pool(url, body, self.timeout)
        return self.pools[key].send

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()
        self.pools.clear()

    async def __aenter__(self) -> WireClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


async def _post(send: Send, res: LoadResult, t_ref: float, clock: Clock) -> None:
    """One request; latency counted from `t_ref` (the send time, or the intended one)."""
    try:
        status = await send()
    except RequestError as exc:
        res.errors[exc.kind] += 1
        return
    if status == 200:
        res.latencies.append(clock.now() - t_ref)
    else:
        res.errors[f"http_{status}"] += 1


async def _wait_until(clock: Clock, start: float | None) -> float:
    if start is not None and start > clock.now():
        await clock.sleep(start - clock.now())
    return start if start is not None else clock.now()


async def closed_loop(
    client: WireClient,
    url: str,
    body: bytes,
    concurrency: int,
    duration: float,
    *,
    clock: Clock | None = None,
    start: float | None = None,
) -> LoadResult:
    """`concurrency` workers, each sending its next request as soon as the last one answers.

    `start` (a `clock` time, perf_counter by default) lets several processes begin together.
    """
    clock = clock or MonotonicClock()
    send, res = client.sender(url, body), LoadResult()
    t0 = await _wait_until(clock, start)
    end, cpu0 = t0 + duration, time.thread_time()

    async def worker() -> None:
        while clock.now() < end:
            await _post(send, res, clock.now(), clock)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    res.window_s = clock.now() - t0
    res.client_cpu_s = time.thread_time() - cpu0
    return res


async def open_loop(
    client: WireClient,
    url: str,
    body: bytes,
    rate: float,
    duration: float,
    *,
    seed: int = 0,
    clock: Clock | None = None,
    max_outstanding: int = 4096,
    start: float | None = None,
    drain_s: float | None = None,
) -> LoadResult:
    """Poisson arrivals at `rate`/s for `duration` s; latency from each *intended* send time.

    Measuring from the intended time is what keeps the open loop free of coordinated omission:
    a send the client got to late (busy loop, stalled process) carries its lateness in its
    latency instead of quietly lowering the offered load. Requests beyond `max_outstanding` in
    flight are not sent and count as `dropped_overload`; with `drain_s`, requests still
    unanswered that long after the last arrival are cancelled and count as `unfinished`.
    """
    clock = clock or MonotonicClock()
    send, res = client.sender(url, body), LoadResult()
    tasks: set[asyncio.Task] = set()

    def fire(intended: float) -> None:
        if len(tasks) >= max_outstanding:
            res.errors["dropped_overload"] += 1
            return
        t = asyncio.get_running_loop().create_task(_post(send, res, intended, clock))
        tasks.add(t)
        t.add_done_callback(tasks.discard)

    t0 = await _wait_until(clock, start)
    cpu0 = time.thread_time()
    res.schedule = await run_open_loop(poisson_offsets(rate, duration, seed), fire, clock, start=t0)
    if tasks:
        _, pending = await asyncio.wait(list(tasks), timeout=drain_s)
        for t in pending:
            t.cancel()
        if pending:
            res.errors["unfinished"] += len(pending)
            await asyncio.gather(*pending, return_exceptions=True)
    res.window_s = clock.now() - t0  # includes draining the last responses
    res.client_cpu_s = time.thread_time() - cpu0
    return res


def merge(parts: list[LoadResult]) -> LoadResult:
    """One result from several client processes that measured the same window side by side."""
    out = LoadResult()
    scheds = [p.schedule for p in parts if p.schedule is not None]
    for p in parts:
        out.latencies += p.latencies
        out.errors.update(p.errors)
        out.window_s = max(out.window_s, p.window_s)
        out.client_cpu_s += p.client_cpu_s
    if scheds:
        out.schedule = ScheduleStats(
            planned=sum(s.planned for s in scheds),
            sent=sum(s.sent for s in scheds),
            late=sum(s.late for s in scheds),
            max_lag_s=max(s.max_lag_s for s in scheds),
            lag_sum_s=sum(s.lag_sum_s for s in scheds),
            start=min(s.start for s in scheds),
            first_sent=min(s.first_sent for s in scheds),
            last_sent=max(s.last_sent for s in scheds),
            lags=[x for s in scheds for x in s.lags],
        )
    return out
