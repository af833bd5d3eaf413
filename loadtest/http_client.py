"""Drive the running service with httpx.AsyncClient: closed loop and open loop.

Every request is `POST /v1/models/{name}/predict` with `input_ids` of exactly [batch, seq]
(random ids in [2, vocab_size)) and an all-ones `attention_mask`, so a point measures that
shape. The body is serialised once per point; the client only sends bytes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import numpy as np

from loadtest.schedule import Clock, MonotonicClock, ScheduleStats, poisson_offsets, run_open_loop


class ServiceUnreachable(RuntimeError):
    """No service answers at the URL (or it is not ready)."""


def predict_body(batch: int, seq: int, vocab_size: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, max(3, vocab_size), size=(batch, seq)).tolist()
    mask = [[1] * seq for _ in range(batch)]
    return json.dumps({"input_ids": ids, "attention_mask": mask, "top_k": 1}, separators=(",", ":")).encode()


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

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def make_client(concurrency: int, timeout: float) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=max(1, concurrency), max_keepalive_connections=max(1, concurrency))
    return httpx.AsyncClient(
        limits=limits, timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        headers={"content-type": "application/json"},
    )  # fmt: skip


async def _post(client: httpx.AsyncClient, url: str, body: bytes, res: LoadResult, t_ref: float) -> None:
    """POST once; latency counted from `t_ref` (the send time, or the intended one)."""
    try:
        r = await client.post(url, content=body)
        await r.aread()
        done = time.perf_counter()
        if r.status_code == 200:
            res.latencies.append(done - t_ref)
        else:
            res.errors[f"http_{r.status_code}"] += 1
    except httpx.HTTPError as exc:
        res.errors[type(exc).__name__] += 1


async def closed_loop(
    client: httpx.AsyncClient, url: str, body: bytes, concurrency: int, duration: float
) -> LoadResult:
    """`concurrency` workers, each sending its next request as soon as the last one answers."""
    res = LoadResult()
    t0 = time.perf_counter()
    end = t0 + duration

    async def worker() -> None:
        while time.perf_counter() < end:
            await _post(client, url, body, res, time.perf_counter())

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    res.window_s = time.perf_counter() - t0
    return res


async def open_loop(
    client: httpx.AsyncClient, url: str, body: bytes, rate: float, duration: float, *,
    seed: int = 0, clock: Clock | None = None, max_outstanding: int = 4096,
) -> LoadResult:  # fmt: skip
    """Poisson arrivals at `rate`/s for `duration` s; latency from each intended send time.

    Requests beyond `max_outstanding` in flight are not sent and count as `dropped_overload`.
    """
    res = LoadResult()
    tasks: set[asyncio.Task] = set()

    def fire(intended: float) -> None:
        if len(tasks) >= max_outstanding:
            res.errors["dropped_overload"] += 1
            return
        t = asyncio.get_running_loop().create_task(_post(client, url, body, res, intended))
        tasks.add(t)
        t.add_done_callback(tasks.discard)

    t0 = time.perf_counter()
    res.schedule = await run_open_loop(poisson_offsets(rate, duration, seed), fire, clock or MonotonicClock())
    if tasks:
        await asyncio.gather(*list(tasks), return_exceptions=True)
    res.window_s = time.perf_counter() - t0  # includes draining the last responses
    return res
