"""Run one load measurement in this process or split across several client processes.

One Python process on one core drives a few thousand requests per second with `loadtest.client.wire`;
a server that answers faster (a GPU host with many cores) needs more senders. `Driver(procs=N)`
keeps N worker processes (spawned once, reused for every point, each with its own uvloop and
keep-alive connections) and splits a point between them: a closed loop's connections are
divided, an open loop's Poisson rate is divided (independent Poisson streams add up to a Poisson
stream of the total rate). Every worker warms up, then all start at one shared perf_counter
instant (CLOCK_MONOTONIC, the same in every process), and the parts are merged into one result.
Open-loop latency stays measured from each request's intended send time in every worker.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from loadtest.client import load as hc
from loadtest.client import wire

START_MARGIN_S = 0.05  # between the last worker's "ready" and the shared start


@dataclass(frozen=True)
class LoadSpec:
    """One measured window against one URL with one body (picklable: sent to worker processes)."""

    url: str
    body: bytes
    load: Literal["closed", "open"]
    duration: float
    concurrency: int = 1
    rate: float | None = None
    warmup: float = 0.0
    seed: int = 0
    timeout: float = 30.0
    max_outstanding: int = 4096
    drain_s: float | None = None


def split(spec: LoadSpec, procs: int) -> list[LoadSpec]:
    """The per-process parts of `spec`: connections or arrival rate divided as evenly as possible."""
    if spec.load == "closed":
        n = max(1, min(procs, spec.concurrency))
        per = [spec.concurrency // n + (1 if i < spec.concurrency % n else 0) for i in range(n)]
        return [replace(spec, concurrency=c) for c in per]
    assert spec.rate is not None and spec.rate > 0
    n = max(1, procs)
    return [
        replace(
            spec,
            rate=spec.rate / n,
            seed=spec.seed * 1000 + i,
            max_outstanding=max(1, spec.max_outstanding // n),
        )
        for i in range(n)
    ]


async def warm(client: hc.WireClient, spec: LoadSpec) -> None:
    """Open connections and wake the server before the measured window (closed loop, not counted)."""
    if spec.warmup > 0:
        conc = spec.concurrency if spec.load == "closed" else 1
        await hc.closed_loop(client, spec.url, spec.body, conc, spec.warmup)


async def measure(client: hc.WireClient, spec: LoadSpec, start: float | None = None) -> hc.LoadResult:
    """The measured window of `spec` on this process's event loop."""
    if spec.load == "closed":
        return await hc.closed_loop(client, spec.url, spec.body, spec.concurrency, spec.duration, start=start)
    assert spec.rate is not None
    return await hc.open_loop(
        client,
        spec.url,
        spec.body,
        spec.rate,
        spec.duration,
        seed=spec.seed,
        max_outstanding=spec.max_outstanding,
        start=start,
        drain_s=spec.drain_s,
    )


def _worker(inbox: mp.Queue, outbox: mp.Queue) -> None:
    """Worker process: for each spec, warm up, report ready, wait for the start time, measure."""
    wire.run(_worker_loop(inbox, outbox))


async def _worker_loop(inbox: mp.Queue, outbox: mp.Queue) -> None:
    while True:
        spec = inbox.get()  # blocking is fine: nothing else runs on this loop between points
        if spec is None:
            return
        try:
            async with hc.WireClient(spec.timeout) as client:  # fresh connections per point
                await warm(client, spec)
                outbox.put(("ready", None))
                start = inbox.get()
                outbox.put(("done", await measure(client, spec, start)))
        except Exception as exc:  # reported to the parent, which raises it
            outbox.put(("error", f"{type(exc).__name__}: {exc}"))


class Driver:
    """Runs `LoadSpec`s: in this process (procs=1) or across `procs` persistent worker processes."""

    def __init__(self, procs: int = 1) -> None:
        if procs < 1:
            raise ValueError("procs must be at least 1")
        self.procs = procs
        self._workers: list[tuple[mp.Process, mp.Queue, mp.Queue]] = []

    def run(self, spec: LoadSpec, on_ready: Callable[[], object] | None = None) -> hc.LoadResult:
        """Warm up, call `on_ready()` (e.g. scrape the server's counters), then measure `spec`."""
        if self.procs == 1:
            return wire.run(self._run_here(spec, on_ready))
        try:
            return self._run_split(spec, on_ready)
        except BaseException:  # a worker failed or timed out: the others are mid-protocol, restart all
            self.close()
            raise

    async def _run_here(self, spec: LoadSpec, on_ready: Callable[[], object] | None) -> hc.LoadResult:
        # one loop per call (wire.run); connections cannot outlive their loop
        async with hc.WireClient(spec.timeout) as client:
            await warm(client, spec)
            if on_ready is not None:
                on_ready()  # blocking is fine: nothing is in flight between warm-up and the window
            return await measure(client, spec)

    def _start(self, n: int) -> None:
        ctx = mp.get_context("spawn")  # never fork a process that may hold ORT or HTTP threads
        while len(self._workers) < n:
            inbox, outbox = ctx.Queue(), ctx.Queue()
            p = ctx.Process(target=_worker, args=(inbox, outbox), daemon=True, name="h2h-load-client")
            p.start()
            self._workers.append((p, inbox, outbox))

    def _run_split(self, spec: LoadSpec, on_ready: Callable[[], object] | None) -> hc.LoadResult:
        parts = split(spec, self.procs)
        self._start(len(parts))
        used = self._workers[: len(parts)]
        for (_, inbox, _), part in zip(used, parts, strict=True):
            inbox.put(part)
        for p, _, outbox in used:
            self._expect(p, outbox, "ready", 60 + spec.warmup)
        if on_ready is not None:
            on_ready()
        start = time.perf_counter() + START_MARGIN_S
        for _, inbox, _ in used:
            inbox.put(start)
        budget = spec.duration + spec.timeout + 60
        return hc.merge([self._expect(p, outbox, "done", budget) for p, _, outbox in used])

    @staticmethod
    def _expect(proc: mp.process.BaseProcess, outbox: mp.Queue, what: str, timeout: float) -> Any:
        """The worker's next message, which must be `what`; a dead or silent worker raises."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                kind, value = outbox.get(timeout=0.5)
                break
            except queue.Empty:
                if not proc.is_alive():
                    raise RuntimeError(f"load client process exited with code {proc.exitcode}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"load client process sent no {what!r} within {timeout:.0f} s"
                    ) from None
        if kind == "error":
            raise RuntimeError(f"load client process failed: {value}")
        assert kind == what, (kind, what)
        return value

    def close(self) -> None:
        for p, inbox, _ in self._workers:
            if p.is_alive():
                inbox.put(None)
        for p, _, _ in self._workers:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        self._workers.clear()

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
