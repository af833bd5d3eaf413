"""The load client: latency from intended send times (fake clock + stub transport), the wire
protocol against a stub HTTP server (keep-alive, statuses, close, timeout, refused), and the
multi-process driver (split, merge, a real two-process run)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import Counter
from collections.abc import Iterator

import pytest

from loadtest.client import load as hc
from loadtest.client import wire
from loadtest.client.driver import Driver, LoadSpec, split
from loadtest.client.schedule import ScheduleStats, poisson_offsets


class FakeClock:
    """Virtual time. `sleep` first yields (so fired requests run at the time they were fired),
    then advances exactly; `stalls[k]` makes the k-th sleep overshoot (a stalled client).
    Shared with test_loadtest_units (the scheduler alone)."""

    def __init__(self) -> None:
        self.t = 100.0
        self.stalls: dict[int, float] = {}
        self.calls = 0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)
        self.calls += 1
        self.t += seconds + self.stalls.get(self.calls, 0.0)


class StubClient:
    """Stands in for WireClient: every request is answered at once, in zero virtual time."""

    def __init__(self, clock: FakeClock, service_s: float = 0.0, status: int = 200) -> None:
        self.clock, self.service_s, self.status = clock, service_s, status
        self.sent_at: list[float] = []

    def sender(self, url: str, body: bytes):
        async def send() -> int:
            self.sent_at.append(self.clock.now())
            self.clock.t += self.service_s
            return self.status

        return send


def test_open_loop_latency_counts_from_the_intended_send_time():
    """A 50 ms stall of the sender: the requests that were due during it go out late; their
    latency must include that lateness (coordinated-omission-free). Measured from the actual
    send time instead, every latency here would be 0 and this test fails."""
    clock = FakeClock()
    clock.stalls = {10: 0.050}
    stub = StubClient(clock)
    res = asyncio.run(hc.open_loop(stub, "http://x/p", b"{}", 200.0, 1.0, seed=3, clock=clock))
    sched = res.schedule
    assert sched is not None and res.ok == sched.sent == len(stub.sent_at) > 150
    assert sched.late >= 5  # 50 ms at 200/s: about ten sends were due during the stall
    assert res.latencies == pytest.approx(sched.lags, abs=1e-12)  # latency = lateness + 0 service time
    assert max(res.latencies) == pytest.approx(0.050, abs=1e-9)
    assert sum(lat > 0.02 for lat in res.latencies) >= 3


def test_open_loop_on_schedule_has_no_latency_without_service_time():
    clock = FakeClock()
    res = asyncio.run(hc.open_loop(StubClient(clock), "http://x/p", b"{}", 100.0, 1.0, clock=clock))
    assert res.schedule is not None and res.schedule.late == 0
    assert res.ok > 50 and max(res.latencies) == 0.0


def test_open_loop_counts_statuses_and_overload():
    clock = FakeClock()
    res = asyncio.run(
        hc.open_loop(StubClient(clock, status=429), "http://x/p", b"{}", 100.0, 1.0, clock=clock)
    )
    assert res.ok == 0 and res.errors["http_429"] == res.schedule.sent > 50


def test_closed_loop_latency_is_the_service_time():
    clock = FakeClock()
    res = asyncio.run(
        hc.closed_loop(StubClient(clock, service_s=0.002), "http://x/p", b"{}", 1, 1.0, clock=clock)
    )
    assert res.ok == pytest.approx(500, abs=1)
    assert res.latencies == pytest.approx([0.002] * res.ok)
    assert res.window_s == pytest.approx(res.ok * 0.002)


def test_split_divides_connections_and_rate():
    closed = LoadSpec("http://x/p", b"{}", "closed", 1.0, concurrency=7)
    assert [s.concurrency for s in split(closed, 3)] == [3, 2, 2]
    assert [s.concurrency for s in split(LoadSpec("http://x/p", b"{}", "closed", 1.0, concurrency=2), 4)] == [
        1,
        1,
    ]
    opened = split(LoadSpec("http://x/p", b"{}", "open", 1.0, rate=300.0, seed=5), 3)
    assert [s.rate for s in opened] == [100.0, 100.0, 100.0]
    assert len({s.seed for s in opened}) == 3  # independent streams, not three copies of one


def test_merge_adds_counts_and_keeps_the_worst_lag():
    a = hc.LoadResult([0.001, 0.002], Counter(http_429=1), 1.0, ScheduleStats(10, 10, 1, 0.004, 0.01), 0.05)
    b = hc.LoadResult(
        [0.003], Counter(http_429=2, ReadTimeout=1), 1.2, ScheduleStats(8, 8, 2, 0.009, 0.02), 0.03
    )
    m = hc.merge([a, b])
    assert sorted(m.latencies) == [0.001, 0.002, 0.003] and m.errors == Counter(http_429=3, ReadTimeout=1)
    assert m.window_s == 1.2 and m.client_cpu_s == pytest.approx(0.08)
    assert (m.schedule.planned, m.schedule.sent, m.schedule.late, m.schedule.max_lag_s) == (18, 18, 3, 0.009)
    assert m.client_cpu_us_per_request() == pytest.approx(0.08 / 7 * 1e6)


# -- the wire protocol against a stub HTTP server -----------------------------------------


class StubServer:
    """HTTP/1.1 on loopback in a thread. Path /ok -> 200 keep-alive, /busy -> 429,
    /close -> 200 then close, /slow -> never answers. Counts connections."""

    def __init__(self) -> None:
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(
                    next(
                        ln.split(b":")[1]
                        for ln in head.split(b"\r\n")
                        if ln.lower().startswith(b"content-length")
                    )
                )
                await reader.readexactly(length)
                path = head.split(b" ")[1]
                if path == b"/slow":
                    await asyncio.sleep(30)
                status = b"429 Too Many Requests" if path == b"/busy" else b"200 OK"
                close = path == b"/close"
                writer.write(
                    b"HTTP/1.1 "
                    + status
                    + b"\r\nContent-Length: 2\r\n"
                    + (b"Connection: close\r\n" if close else b"")
                    + b"\r\n{}"
                )
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _shutdown(self) -> None:
        self.server.close()
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(scope="module")
def stub_server() -> Iterator[StubServer]:
    s = StubServer()
    yield s
    s.stop()


def test_wire_keeps_connections_alive_and_reads_statuses(stub_server: StubServer):
    async def go() -> tuple[list[int], list[int]]:
        ok, busy = wire.Pool(stub_server.url("/ok"), b'{"a":1}'), wire.Pool(stub_server.url("/busy"), b"{}")
        statuses = [await ok.send() for _ in range(20)]
        statuses += await asyncio.gather(*(ok.send() for _ in range(4)))
        b = [await busy.send() for _ in range(3)]
        ok.close()
        busy.close()
        return statuses, b

    before = stub_server.connections
    statuses, busy = wire.run(go())
    assert statuses == [200] * 24 and busy == [429] * 3
    assert stub_server.connections - before == 4 + 1  # 4 concurrent at most on /ok, 1 on /busy


def test_wire_reconnects_after_connection_close(stub_server: StubServer):
    async def go() -> list[int]:
        pool = wire.Pool(stub_server.url("/close"), b"{}")
        return [await pool.send() for _ in range(3)]

    before = stub_server.connections
    assert wire.run(go()) == [200, 200, 200]
    assert stub_server.connections - before == 3


def test_wire_errors_have_httpx_names(stub_server: StubServer):
    async def go(url: str, timeout: float) -> str:
        try:
            await wire.Pool(url, b"{}", timeout=timeout).send()
        except wire.RequestError as exc:
            return exc.kind
        return "no error"

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/ok"
    assert wire.run(go(dead, 1.0)) == "ConnectError"
    assert wire.run(go(stub_server.url("/slow"), 0.2)) == "ReadTimeout"
    with pytest.raises(ValueError, match="plain http"):
        wire.Pool("https://example.org/x", b"{}")


def test_open_loop_over_the_wire_records_latency_and_429s(stub_server: StubServer):
    async def go(path: str) -> hc.LoadResult:
        async with hc.WireClient(5.0) as c:
            return await hc.open_loop(c, stub_server.url(path), b"{}", 200.0, 0.5, seed=1)

    res = wire.run(go("/ok"))
    assert res.error_count == 0 and res.ok == res.schedule.sent > 60
    assert 0 < max(res.latencies) < 1.0 and res.client_cpu_s > 0
    busy = wire.run(go("/busy"))
    assert busy.ok == 0 and busy.errors["http_429"] == busy.schedule.sent


def test_open_loop_drain_cancels_unfinished(stub_server: StubServer):
    async def go() -> hc.LoadResult:
        async with hc.WireClient(30.0) as c:
            return await hc.open_loop(c, stub_server.url("/slow"), b"{}", 50.0, 0.2, drain_s=0.2)

    res = wire.run(go())
    assert res.ok == 0 and res.errors["unfinished"] == res.schedule.sent > 0
    assert res.window_s < 2.0


def test_driver_two_processes_merge_one_window(stub_server: StubServer):
    with Driver(procs=2) as d:
        closed = d.run(LoadSpec(stub_server.url("/ok"), b"{}", "closed", 0.5, concurrency=4, warmup=0.1))
        scraped = []
        opened = d.run(
            LoadSpec(stub_server.url("/ok"), b"{}", "open", 0.5, rate=200.0, seed=2),
            on_ready=lambda: scraped.append(1),
        )
    assert closed.error_count == 0 and closed.ok > 50 and 0.45 < closed.window_s < 1.5
    assert closed.client_cpu_s > 0
    assert scraped == [1]
    expected = sum(
        len(poisson_offsets(s.rate, 0.5, s.seed))
        for s in split(LoadSpec("u", b"", "open", 0.5, rate=200.0, seed=2), 2)
    )
    assert opened.schedule.planned == opened.schedule.sent == opened.ok == expected
