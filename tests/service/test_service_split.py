"""The engine process and its fronts (`python -m service --fronts 2`): both APIs answer the
model's own logits, /metrics counts each request once across fronts, admission is decided by the
engine for every front, an engine killed under load turns every front 503 at once and comes
back, a killed front is replaced, SIGTERM answers every request in flight and exits 0."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from contract.tokenizer import Tokenizer
from tests.conftest import start_service, wait_until
from tests.service.conftest import v2_logits

ENV = {"H2H_PROVIDER": "cpu", "H2H_INTRA_OP_THREADS": "1", "H2H_MAX_BATCH_SIZE": "8"}
Split = tuple[str, Path, subprocess.Popen]
TEXTS = ["a small domesticated carnivore", "a tree", "the act of running"]


def _start(repo: Path, log: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    proc, hostport = start_service(repo, {**ENV, **env}, log, "--fronts", "2", "--models", "mha-tiny")
    wait_until(
        "service ready",
        lambda: httpx.get(f"http://{hostport}/v2/health/ready", timeout=2).status_code == 200,
        90,
        proc,
        log,
    )
    return proc, hostport


def _pids(log: Path, what: str) -> list[int]:
    pattern = r"engine (\d+) ready" if what == "engine" else r"front \d+ started \(pid (\d+)\)"
    return [int(p) for p in re.findall(pattern, log.read_text())]


def _predict(base: str, text: str = "a dog", timeout: float = 10) -> httpx.Response:
    # a new connection each time: the kernel hands connections to either front
    return httpx.post(f"{base}/v1/models/mha-tiny/predict", json={"texts": [text]}, timeout=timeout)


def _metric(base: str, name: str) -> float:
    lines = httpx.get(f"{base}/metrics").text.splitlines()
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines if ln.startswith(name))


@pytest.fixture(scope="module")
def split(tiny_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Split]:
    log = tmp_path_factory.mktemp("split") / "service.log"
    proc, hostport = _start(tiny_repo, log, {})
    try:
        yield f"http://{hostport}", log, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-3000:]


def test_both_apis_answer_the_models_logits_and_each_request_is_counted_once(
    split: Split, tiny_repo: Path
) -> None:
    base, log, proc = split
    assert len(_pids(log, "front")) == 2
    ids, mask = (
        np.array(x, dtype=np.int64)
        for x in Tokenizer.load(tiny_repo / "mha-tiny" / "tokenizer.json").encode_batch(TEXTS)
    )
    session = ort.InferenceSession(
        str(tiny_repo / "mha-tiny" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    want = session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
    np.testing.assert_allclose(v2_logits(base[7:], tiny_repo, "mha-tiny", TEXTS), want, rtol=1e-4, atol=1e-4)
    v1 = httpx.post(f"{base}/v1/models/mha-tiny/predict", json={"texts": TEXTS}).json()
    assert [p["label_id"] for p in v1["predictions"]] == want.argmax(axis=1).tolist()

    route = 'h2h_requests_total{model="mha-tiny",route="/v1/models/{name}/predict",status="200"}'
    before = _metric(base, route)
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: _predict(base, f"a dog {i}").status_code, range(40)))
    assert codes == [200] * 40
    assert _metric(base, route) - before == 40  # summed over both fronts, once each
    text = httpx.get(f"{base}/metrics").text
    for series in ("h2h_batch_size_count", "h2h_compute_seconds_count", "h2h_queue_depth", "h2h_model_ready"):
        assert f"\n{series}" in text, series  # the engine's series beside the fronts'


def test_engine_killed_under_load_answers_503_at_once_and_comes_back(split: Split) -> None:
    base, log, proc = split
    (engine,) = _pids(log, "engine")
    answers: list[tuple[float, int]] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                answers.append((time.monotonic(), _predict(base, timeout=5).status_code))
            except httpx.HTTPError:
                answers.append((time.monotonic(), 0))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    killed = time.monotonic()
    subprocess.run(["kill", "-9", str(engine)], check=True)
    try:
        first_503 = None
        deadline = killed + 60
        while time.monotonic() < deadline:
            got = [(t, c) for t, c in answers if t > killed]
            first_503 = first_503 or next((t for t, c in got if c == 503), None)
            if first_503 and any(c == 200 and t > first_503 for t, c in got):
                break
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert first_503 is not None and first_503 - killed < 1.0, answers[-20:]
    after = [c for t, c in answers if t > killed]
    assert set(after) <= {200, 503}, after  # no timeouts, no 500s, no refused connections
    assert len(_pids(log, "engine")) == 2  # restarted
    assert httpx.get(f"{base}/v2/health/ready").status_code == 200
    assert _predict(base).status_code == 200


def test_a_killed_front_is_replaced(split: Split) -> None:
    base, log, proc = split
    victim = _pids(log, "front")[0]
    subprocess.run(["kill", "-9", str(victim)], check=True)
    wait_until("front replaced", lambda: len(_pids(log, "front")) == 3, 30, proc, log)
    with ThreadPoolExecutor(4) as pool:
        assert set(pool.map(lambda i: _predict(base).status_code, range(20))) == {200}


def test_admission_is_exact_across_fronts_and_sigterm_answers_every_request(
    tiny_repo: Path, tmp_path: Path
) -> None:
    """Queue of 4 rows, no admission wait, a 1.5 s batching window: of 12 one-row requests sent at
    once through both fronts exactly 4 are queued and answered, 8 are refused 429. Then 3 more
    wait in the window when SIGTERM arrives: all answered, exit 0, new connections refused."""
    env = {"H2H_MAX_QUEUE_ROWS": "4", "H2H_ADMISSION_WAIT_MS": "0", "H2H_MAX_QUEUE_DELAY_MS": "1500"}
    log = tmp_path / "service.log"
    proc, hostport = _start(tiny_repo, log, env)
    base = f"http://{hostport}"
    try:
        with ThreadPoolExecutor(12) as pool:
            codes = sorted(pool.map(lambda i: _predict(base, f"a cat {i}").status_code, range(12)))
        assert codes == [200] * 4 + [429] * 8, codes
        with ThreadPoolExecutor(3) as pool:
            pending = [pool.submit(_predict, base, f"a fox {i}", 30) for i in range(3)]
            wait_until(
                "queued",
                lambda: 'h2h_queue_depth{model="mha-tiny"} 3.0' in httpx.get(f"{base}/metrics").text,
                10,
                proc,
                log,
            )
            proc.send_signal(signal.SIGTERM)
            answers = [f.result() for f in pending]
        assert [r.status_code for r in answers] == [200] * 3
        assert proc.wait(60) == 0, log.read_text()[-3000:]
        with pytest.raises(httpx.ConnectError):
            _predict(base)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_fronts_default_to_one_per_two_cores_and_engine_deaths_past_the_limit_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from service import settings as settings_module
    from service import supervisor
    from service.settings import ServiceSettings

    for cores, fronts in ((1, 1), (2, 1), (3, 1), (16, 8)):
        monkeypatch.setattr(settings_module, "usable_cores", lambda c=cores: c)
        assert ServiceSettings().front_count() == fronts
    assert ServiceSettings(fronts=3).front_count() == 3
    sup = supervisor.Supervisor(ServiceSettings(model_repository=tmp_path, engine_restarts=0))
    sup.engine = SimpleNamespace(pid=12345, exitcode=-9)
    assert sup._engine_died() is False  # no restart left: run() returns 1 for the orchestrator
    shutil.rmtree(sup.rundir)
