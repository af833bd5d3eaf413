"""The cheap request path: admission before parsing, the waiting room, ORT thread settings,
and the overhead benchmark's own logic (fast tests, no live server)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import numpy as np
import pytest

from loadtest.bench.overhead import TARGETS, report
from loadtest.bench.pyspy import stage_split, top_frames
from service.app import create_app
from service.engine.admission import WaitingRoom
from service.engine.batcher import DynamicBatcher
from service.runtime.session import CPU, CUDA, session_options
from service.settings import ServiceSettings
from tests.service.test_service_api import MAX_QUEUE, AppRunner, make_repo, settings_for
from tests.service.test_service_batcher import hold, release, run_async, started


def _echo(ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = mask.sum(axis=1).astype(np.float32)
    return np.stack([n, n], axis=1), n[:, None]


def _row(n: int = 2) -> list[np.ndarray]:
    return [np.arange(1, n + 1, dtype=np.int64)]


async def _full(b: DynamicBatcher) -> list[asyncio.Task]:
    """Pause `b` and fill its queue with one-row requests."""
    hold(b)
    tasks = [asyncio.create_task(b.submit(_row())) for _ in range(b.max_queue_rows)]
    while b.queued_rows < b.max_queue_rows:
        await asyncio.sleep(0.001)
    return tasks


def _two_rows() -> contextlib.AbstractAsyncContextManager[DynamicBatcher]:
    """A started batcher whose queue two one-row requests fill."""
    return started(_echo, max_batch_size=2, max_queue_rows=2)


async def _refusal_seconds(b: DynamicBatcher, wait_s: float) -> float:
    """Fill `b`'s queue, time a refusal by a room that waits `wait_s` (it must leave no waiter
    behind), then let the queue go."""
    tasks = await _full(b)
    room = WaitingRoom(b, wait_s)
    t0 = time.perf_counter()
    assert await room.enter() is False
    seconds = time.perf_counter() - t0
    assert room.waiting == 0
    release(b)
    await asyncio.gather(*tasks)
    return seconds


@run_async
async def test_room_admits_at_once_when_there_is_room_and_refuses_at_once_with_no_wait() -> None:
    async with _two_rows() as b:
        assert await WaitingRoom(b, 0.0).enter() is True
        assert await _refusal_seconds(b, 0.0) < 0.05


@run_async
async def test_waiter_is_refused_after_its_wait() -> None:
    async with _two_rows() as b:
        assert 0.1 <= await _refusal_seconds(b, 0.12) < 2.0


@run_async
async def test_waiters_are_admitted_first_come_first_served_and_newcomers_queue_behind() -> None:
    async with _two_rows() as b:
        room = WaitingRoom(b, 5.0)
        tasks = await _full(b)
        order: list[str] = []

        async def wait(tag: str) -> None:
            assert await room.enter()
            order.append(tag)
            await b.submit(_row())  # the admitted request queues, as the route would

        first = asyncio.create_task(wait("first"))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(wait("second"))
        await asyncio.sleep(0.01)
        assert room.waiting == 2 and order == []
        release(b)  # one batch of 2 rows leaves the queue: room for the waiters
        await asyncio.wait_for(asyncio.gather(first, second, *tasks), 5.0)
        assert order == ["first", "second"]


@run_async
async def test_a_request_of_many_rows_waits_for_room_like_a_one_row_request() -> None:
    """Its rows known (the engine's check when it queues), a 2-row request waits for room in a
    full queue, first come first served, and goes on when a batch leaves; one larger than the
    whole queue can never fit and is refused at once."""
    async with _two_rows() as b:
        room = WaitingRoom(b, 5.0)
        tasks = await _full(b)
        waiting = asyncio.create_task(room.enter(2))
        await asyncio.sleep(0.02)
        assert room.waiting == 1 and not waiting.done()
        t0 = time.perf_counter()
        assert await room.enter(3) is False and time.perf_counter() - t0 < 0.05
        release(b)
        assert await asyncio.wait_for(waiting, 5.0) is True
        await asyncio.gather(*tasks)


@pytest.fixture(scope="module")
def runner(tiny_repo: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    repo = make_repo(tiny_repo, tmp_path_factory.mktemp("adm"))
    r = AppRunner(create_app(settings_for(repo, admission_wait_ms=0.0), gpu_metrics=False))
    yield r
    r.close()


def _scope(app, path: str) -> dict:  # noqa: ANN001
    return {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "http_version": "1.1",
        "scheme": "http",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1),
        "root_path": "",
        "app": app,
    }


def test_full_queue_is_refused_before_the_body_is_read(runner: AppRunner) -> None:
    b = runner.service.engine.engine.models["mha-tiny"].batcher
    reads: list[int] = []
    sent: list[dict] = []

    async def receive() -> dict:
        reads.append(1)
        return {"type": "http.request", "body": b'{"texts": ["a"]}', "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    async def go() -> None:
        tasks = await _full(b)
        try:
            await runner.app(_scope(runner.app, "/v1/models/mha-tiny/predict"), receive, send)
        finally:
            release(b)
        await asyncio.gather(*tasks)

    runner.call(go())
    assert reads == []  # refused from the URL alone
    start = sent[0]
    assert start["status"] == 429
    headers = dict(start["headers"])
    assert headers[b"retry-after"] == b"1" and headers[b"content-type"] == b"application/json"
    assert b"is full" in sent[1]["body"] and b.max_queue_rows == MAX_QUEUE
    metrics = runner.get("/metrics").text
    assert (
        'h2h_requests_total{model="mha-tiny",route="/v1/models/{name}/predict",status="429"} 1.0' in metrics
    )


def test_hot_route_errors_keep_their_shape(runner: AppRunner) -> None:
    """Served by the middleware, not FastAPI: the error bodies must not change."""
    r = runner.post("/v1/models/mha-tiny/predict", content=b"{", headers={"content-type": "application/json"})
    assert (
        r.status_code == 400
        and r.json()["field"] == "body"
        and r.json()["error"].startswith("malformed JSON")
    )
    r = runner.post("/v2/models/mha-tiny/infer", json={"inputs": []})
    assert r.status_code == 400 and set(r.json()) == {"error"}
    r = runner.post("/v2/models/mha-tiny/versions/2/infer", json={"inputs": []})
    assert r.status_code == 404 and "version" in r.json()["error"]


def test_ort_threads_do_not_spin_on_cpu_by_default() -> None:
    key = "session.intra_op.allow_spinning"
    s = ServiceSettings()
    assert s.ort_spinning == "auto"
    assert session_options(s, CPU).get_session_config_entry(key) == "0"
    assert session_options(s, CUDA).get_session_config_entry(key) == "1"
    on = ServiceSettings(ort_spinning="on")
    assert session_options(on, CPU).get_session_config_entry("session.inter_op.allow_spinning") == "1"


def test_top_frames_from_py_spy_raw_output() -> None:
    raw = "main;a;b 30\nmain;a;c 10\nmain;b 60\nnot a line\n"
    assert top_frames(raw, 2) == [" 90.0% b", " 10.0% c"]
    assert top_frames("") == []


def test_py_spy_samples_split_by_process_role_and_stage() -> None:
    front = 'process 1:"python -m service";process 2:"spawn";thread (2): MainThread;main (service/front_process.py:9)'
    engine = 'process 1:"python -m service";process 3:"spawn";thread (3): MainThread;main (service/engine_process.py:5)'
    worker = 'process 1:"python -m service";process 3:"spawn";thread (4): ThreadPool'
    raw = "\n".join(
        [
            f"{front};run (uvicorn/server.py:1);check_ids (service/front/inputs.py:3) 30",
            f"{front};run (uvicorn/server.py:1);send (service/transport.py:9) 20",
            f"{engine};answer (service/engine/dispatch.py:4) 10",
            f"{worker};_run (service/engine/batcher.py:1);run (service/runtime/session.py:2) 40",
        ]
    )
    assert stage_split(raw) == {
        "engine": {"ORT": 0.4, "engine dispatch": 0.1},
        "front": {"validation + tokenizing": 0.3, "transport": 0.2},
    }


def _point(rps: float, p50: float = 0.5) -> dict:
    return {"rps": rps, "p50_ms": p50, "p99_ms": 1.0, "requests": 100, "non2xx": 0, "cpu_ms_per_request": 0.4}


def _result(
    overhead: float, rps: float, null_w1: float, null_w2: float, goodput: float, errors: int, rss: float
) -> dict:
    over = {"rows_per_s": 100.0, "statuses": {"200": 10}, "p50_ms": 1.0, "p99_ms": 2.0}
    overload = {"c8": over, "c200": over, "goodput": goodput, "server_errors": errors}
    svc = {
        "c1": _point(rps),
        "c32": _point(rps),
        "overload": overload,
        "overhead_c1_ms": overhead,
        "rss_mb": {"root": 50.0, "front": rss, "engine": 150.0},
    }
    before = {**svc, "overload": {**overload, "goodput": 0.9, "server_errors": 0}, "c32": _point(3000.0)}
    return {
        "model": "m",
        "seq": 16,
        "rounds": 1,
        "main": "W=1",
        "inproc_p50_ms": 0.2,
        "services": {"before": before, "W=1": svc},
        "null": {"W1": _point(null_w1), "W2": _point(null_w2)},
        "floor": {"c1": _point(5000.0, p50=0.3), "c32": _point(5000.0)},
    }


def test_overhead_report_checks_every_target() -> None:
    good = report(_result(0.4, 3500.0, 4500.0, 8000.0, 0.9, 0, 60.0))
    assert good.count("PASS") == 10 and "MISS" not in good, good
    bad = report(_result(0.3 + TARGETS["overhead_over_floor_ms"] + 0.1, 2000.0, 2000.0, 2500.0, 0.5, 3, 90.0))
    assert bad.count("MISS") == 8, bad
    assert "5xx under overload, W=1: 3" in bad


def test_auto_intra_op_threads_leave_the_event_loop_a_core(monkeypatch: pytest.MonkeyPatch) -> None:
    from service.runtime import session as runtime

    s = ServiceSettings()
    monkeypatch.setattr(runtime, "usable_cores", lambda: 2)
    assert runtime.intra_op_threads(s, CPU, sessions=2) == 1
    assert session_options(s, CPU, sessions=2).intra_op_num_threads == 1
    monkeypatch.setattr(runtime, "usable_cores", lambda: 16)
    assert runtime.intra_op_threads(s, CPU, sessions=2) == 7
    assert runtime.intra_op_threads(s, CUDA, sessions=2) == 0  # ORT's default on GPU hosts
    assert runtime.intra_op_threads(ServiceSettings(intra_op_threads=3), CPU, sessions=2) == 3


def test_cgroup_quota_caps_the_cores(tmp_path: Path) -> None:
    from service.runtime.session import cgroup_cpu_limit

    f = tmp_path / "cpu.max"
    f.write_text("200000 100000\n")
    assert cgroup_cpu_limit(f) == 2
    f.write_text("50000 100000\n")
    assert cgroup_cpu_limit(f) == 1
    f.write_text("max 100000\n")
    assert cgroup_cpu_limit(f) is None
    assert cgroup_cpu_limit(tmp_path / "missing") is None


def test_batch_above_the_limit_is_named_by_the_core(runner: AppRunner) -> None:
    from tests.service.test_service_api import MAX_BATCH

    r = runner.post("/v1/models/mha-tiny/predict", json={"texts": ["a"] * (MAX_BATCH + 1)})
    assert r.status_code == 422
    assert r.json() == {
        "error": f"batch of {MAX_BATCH + 1} rows is above the limit of {MAX_BATCH}",
        "field": "texts",
    }


def test_a_failed_model_is_not_ready_anywhere(runner: AppRunner) -> None:
    for path in ("/v2/models/broken-tiny", "/v2/models/broken-tiny/ready", "/v2/models/broken-tiny/config"):
        r = runner.get(path)
        assert r.status_code == 503 and "not ready" in r.json()["error"], path
