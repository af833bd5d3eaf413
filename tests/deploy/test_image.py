"""The container users deploy: built with buildah/podman from the Dockerfile and run as users run it.

Runs only under `make image-test` (H2H_IMAGE_TEST_DIR names the work folder; everything it writes
stays there, tests/deploy/image_env.py says what and why). Skipped with the reason where podman cannot
run (not root, no apt-get to install buildah/podman/debootstrap, `podman info` failing).

1. The CPU variant is built through podman-compose from docker-compose.yml and
   deploy/compose.cpu.yml (the override's base-image argument names the base: its default
   ubuntu:24.04 where a registry answers, the host's release made with debootstrap where none
   does), in docker format.
2. `podman run` as docs/operations.md shows it: read-only root, tmpfs /tmp, the model repository
   mounted read-only, the image's non-root user. Ready, a prediction through v1 and through v2
   (tritonclient), /metrics, the image's own HEALTHCHECK command; the image holds only the CPU
   runtime and nothing of the build's pip configuration. SIGTERM with requests in flight: every
   one answered, exit code 0.
3. `podman-compose up` of the service, scraped by Debian's Prometheus with the shipped job
   (deploy/prometheus/prometheus.yml, target rewritten to the published port): the target is
   up, `h2h_` series arrive, and after mixed traffic every recording rule and every panel query
   of every provisioned Grafana dashboard returns data.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from image_env import IMAGE, Engine, tools_missing_reason
from test_deploy import (
    NO_PROMETHEUS,
    PROMETHEUS,
    Traffic,
    all_queries,
    assert_query_has_data,
    prom_query,
    settle,
    shipped_prometheus_config,
    start_prometheus,
)

from tests.conftest import free_port, stop, wait_until

WORK = os.environ.get("H2H_IMAGE_TEST_DIR")
MODELS = ("mha-tiny", "sha-tiny")
PROJECT = "h2h-image-test"
TRAFFIC_S = 8.0


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    """The tools, configured under the work folder; its `timings.json` gets each phase's seconds."""
    if not WORK:
        pytest.skip("the container test runs with `make image-test` (it builds the image: 1-4 minutes)")
    t0 = time.monotonic()
    reason = tools_missing_reason()
    if reason:
        pytest.skip(reason)
    eng = Engine(Path(WORK))
    info = eng.podman("info", check=False)
    if info.returncode != 0:
        pytest.skip(f"podman cannot run here: {info.stderr.strip().splitlines()[-1:]}")
    eng.timings["tools_s"] = time.monotonic() - t0
    yield eng
    (eng.work / "timings.json").write_text(json.dumps({k: round(v, 1) for k, v in eng.timings.items()}))


@pytest.fixture(scope="module")
def repo(engine: Engine) -> Path:
    """The random-init tiny pair, exported fresh (seconds): what users mount at /models."""
    import shutil

    from export.api import export_random

    t0 = time.monotonic()
    out = engine.work / "models"
    shutil.rmtree(out, ignore_errors=True)
    for arch, name in zip(("mha", "sha"), MODELS, strict=True):
        export_random("tiny", arch, out, name=name)
    engine.timings["export_s"] = time.monotonic() - t0
    return out.resolve()


@pytest.fixture(scope="module")
def image(engine: Engine, repo: Path) -> str:
    """The CPU variant built through podman-compose, the base image as the override's argument."""
    t0 = time.monotonic()
    env = {"H2H_BASE_IMAGE": engine.base_image(), "H2H_MODEL_REPOSITORY_DIR": str(repo)}
    engine.timings["base_image_s"] = (t1 := time.monotonic()) - t0
    engine.compose(env, f"--podman-build-args={engine.build_args()}", "build", "service", timeout=900)
    engine.timings["build_s"] = time.monotonic() - t1
    return IMAGE


def run_container(engine: Engine, name: str, repo: Path, **env: str) -> str:
    """`podman run` as users run the image; returns its base URL once ready."""
    engine.podman("rm", "--force", "--ignore", name)  # left by an interrupted run
    port = free_port()
    flags = ["--read-only", "--tmpfs", "/tmp", "-p", f"127.0.0.1:{port}:8000", "-v", f"{repo}:/models:ro"]
    # no systemd here to schedule healthchecks: the test runs the image's command itself
    flags += ["--health-interval", "disable", "-e", "H2H_PROVIDER=cpu"]
    flags += [f"-e=H2H_{k}={v}" for k, v in env.items()]
    engine.podman("run", "-d", "--name", name, *flags, IMAGE)
    base = f"http://127.0.0.1:{port}"
    engine.timings[f"{name}_ready_s"] = engine.wait_ready(name, f"{base}/v2/health/ready")
    return base


@pytest.fixture(scope="module")
def served(engine: Engine, image: str, repo: Path) -> Iterator[dict[str, Any]]:
    name = f"{PROJECT}-run"
    try:
        yield {"name": name, "base": run_container(engine, name, repo)}
    finally:
        engine.podman("rm", "--force", "--ignore", name, check=False)


def test_runs_read_only_as_non_root_with_cpu_runtime_only(engine: Engine, served: dict) -> None:
    (c,) = json.loads(engine.podman("inspect", served["name"]).stdout)
    assert c["Config"]["User"] == "10001:10001" and c["HostConfig"]["ReadonlyRootfs"] is True
    (models,) = [m for m in c["Mounts"] if m["Destination"] == "/models"]
    assert models["RW"] is False
    probe = (
        "import importlib.metadata as m, os, pathlib; "
        "print(os.getuid()); "
        "print(sorted(d.metadata['Name'] for d in m.distributions() if 'onnxruntime' in d.metadata['Name'])); "
        "print([p for p in ('/etc/pip.conf', '/etc/xdg/pip', '/run/secrets') if os.path.exists(p)]); "
        "pathlib.Path('/tmp/x').write_text('tmpfs'); "
        "print(os.access('/home/h2h', os.W_OK), os.access('/models', os.W_OK))"
    )
    out = engine.podman("exec", served["name"], "python", "-c", probe).stdout.splitlines()
    assert out == ["10001", "['onnxruntime']", "[]", "False False"], out


def test_ready_v1_v2_and_metrics(served: dict, repo: Path) -> None:
    import httpx
    import numpy as np
    import tritonclient.http as tc

    from contract.tokenizer import Tokenizer

    base = served["base"]
    for model in MODELS:
        r = httpx.post(f"{base}/v1/models/{model}/predict", json={"texts": ["a dog"], "top_k": 2}, timeout=30)
        assert r.status_code == 200, r.text
        (pred,) = r.json()["predictions"]
        assert pred["label"] and len(pred["top_k"]) == 2
    ids, mask = Tokenizer.load(repo / "sha-tiny" / "tokenizer.json").encode_batch(["a dog", "a tall tree"])
    inputs = []
    for n, rows in (("input_ids", ids), ("attention_mask", mask)):
        t = tc.InferInput(n, [len(rows), len(rows[0])], "INT64")
        t.set_data_from_numpy(np.asarray(rows, dtype=np.int64))
        inputs.append(t)
    client = tc.InferenceServerClient(url=base.removeprefix("http://"))
    try:
        assert client.is_server_ready() and client.is_model_ready("sha-tiny")
        logits = client.infer("sha-tiny", inputs).as_numpy("logits")
    finally:
        client.close()
    assert logits.shape[0] == 2 and np.isfinite(logits).all()
    metrics = httpx.get(f"{base}/metrics", timeout=10).text
    counted = [ln for ln in metrics.splitlines() if ln.startswith("h2h_requests_total{")]
    for model in MODELS:
        assert any(f'model="{model}"' in ln for ln in counted), counted
    assert any("infer" in ln for ln in counted), counted


def test_image_healthcheck(engine: Engine, image: str, served: dict) -> None:
    (img,) = json.loads(engine.podman("image", "inspect", image).stdout)
    hc = img["Healthcheck"]  # kept: the image is in docker format
    assert hc["Test"][0] == "CMD" and "/v2/health/ready" in " ".join(hc["Test"]), hc
    r = engine.podman("healthcheck", "run", served["name"], check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_sigterm_answers_requests_in_flight_and_exits_0(engine: Engine, image: str, repo: Path) -> None:
    import httpx

    name = f"{PROJECT}-drain"
    n = 6
    try:
        # a 60 s batching window: the requests wait in the queue until SIGTERM runs them at once
        base = run_container(engine, name, repo, MAX_QUEUE_DELAY_MS="60000", MAX_BATCH_SIZE="8")
        results: list[Any] = []

        def call(i: int) -> None:
            try:
                results.append(
                    httpx.post(
                        f"{base}/v1/models/mha-tiny/predict", json={"texts": [f"a dog {i}"]}, timeout=60
                    )
                )
            except Exception as exc:  # noqa: BLE001 (reported below)
                results.append(exc)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while f'h2h_queue_depth{{model="mha-tiny"}} {n}.0' not in httpx.get(f"{base}/metrics").text:
            assert time.monotonic() < deadline, "the requests never queued"
            time.sleep(0.05)
        engine.podman("kill", "--signal", "TERM", name)
        for t in threads:
            t.join(60)
        code = engine.podman("wait", name, timeout=60).stdout.strip()
        logs = engine.podman("logs", name, check=False)
    finally:
        engine.podman("rm", "--force", "--ignore", name, check=False)
    assert code == "0", logs.stdout + logs.stderr
    assert len(results) == n
    for r in results:
        assert isinstance(r, httpx.Response) and r.status_code == 200, r
        assert r.json()["timing"]["batch_size"] == n


# --------------------------------------------------------------------------------------------
# compose + Prometheus


@pytest.fixture(scope="module")
def stack(
    engine: Engine, image: str, repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """podman-compose up of the service (CPU override, bridge network, published port) with a
    6-row queue so traffic bursts get 429s; Prometheus scrapes it with the shipped job."""
    if PROMETHEUS is None:
        pytest.skip(NO_PROMETHEUS)
    import httpx

    port = free_port()
    env = {
        "H2H_MODEL_REPOSITORY_DIR": str(repo),
        "H2H_HTTP_PORT": str(port),
        "H2H_MAX_BATCH_SIZE": "8",
        "H2H_MAX_QUEUE_DELAY_MS": "3",
        "H2H_MAX_QUEUE_ROWS": "6",
    }
    tmp = tmp_path_factory.mktemp("image_stack")
    t0 = time.monotonic()
    prom_proc = None
    engine.compose(env, "down")  # left by an interrupted run
    try:
        engine.compose(env, "up", "-d", "--no-build", "service")
        (name,) = engine.podman(
            "ps", "--filter", f"label=com.docker.compose.project={PROJECT}", "--format", "{{.Names}}"
        ).stdout.split()
        base = f"http://127.0.0.1:{port}"
        engine.wait_ready(name, f"{base}/v2/health/ready")
        pport = free_port()
        prom = f"http://127.0.0.1:{pport}"
        config = shipped_prometheus_config(tmp, f"127.0.0.1:{port}", f"127.0.0.1:{pport}")
        prom_proc, plog = start_prometheus(tmp, pport, config)
        wait_until(
            "prometheus ready", lambda: httpx.get(f"{prom}/-/ready").status_code == 200, 60, prom_proc, plog
        )
        traffic = Traffic(base, repo)
        traffic.run(TRAFFIC_S)
        traffic.client.close()
        settle(prom, gpu=False)
        engine.timings["compose_stack_s"] = time.monotonic() - t0
        yield {"name": name, "prom": prom, "at": time.time(), "traffic": traffic}
    finally:
        if prom_proc is not None:
            stop(prom_proc)
        engine.compose(env, "down")


def test_compose_service_scraped_by_shipped_job(engine: Engine, stack: dict) -> None:
    import httpx

    (c,) = json.loads(engine.podman("inspect", stack["name"]).stdout)
    assert c["HostConfig"]["ReadonlyRootfs"] is True and c["Config"]["User"] == "10001:10001"
    active = httpx.get(f"{stack['prom']}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
    (target,) = [t for t in active if t["labels"]["job"] == "headtohead"]
    assert target["health"] == "up", target
    (n,) = prom_query(stack["prom"], 'count({job="headtohead", __name__=~"h2h_.+"})', stack["at"])
    assert float(n["value"][1]) > 10
    t = stack["traffic"]
    assert not t.errors and all(t.status.get(code, 0) > 0 for code in (200, 404, 422, 429)), t.status


@pytest.mark.parametrize(("name", "expr"), all_queries(), ids=[n for n, _ in all_queries()])
def test_compose_every_rule_and_panel_returns_data(stack: dict, name: str, expr: str) -> None:
    assert_query_has_data(stack["prom"], stack["at"], False, name, expr)


# --------------------------------------------------------------------------------------------
# where podman cannot run: the reason the test is skipped (these run in `make test` too)


def test_skip_reasons_name_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import image_env

    monkeypatch.setattr(image_env.os, "geteuid", lambda: 1000)
    assert "needs root" in (image_env.tools_missing_reason() or "")
    monkeypatch.setattr(image_env.os, "geteuid", lambda: 0)
    monkeypatch.setattr(image_env.shutil, "which", lambda name: None)  # no tools, no apt-get
    reason = image_env.tools_missing_reason() or ""
    assert "buildah, podman, debootstrap, runc missing and no apt-get" in reason, reason
