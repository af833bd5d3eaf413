"""Deployment artefacts: Dockerfile, docker-compose.yml, Prometheus config and rules, Grafana.

Static part (no engine, no network): the compose file's services, volumes, GPU reservation,
read-only model mount and healthchecks; the Dockerfile; the Grafana provisioning; the dashboard
JSON (every panel has a datasource and targets, every query parses); `promtool check config` and
`check rules` on the shipped files.

Live part (`test_live_query_returns_data`): a real Prometheus server (Debian's `prometheus`,
loopback only, 1 s scrape and rule interval, its own tmp storage) runs the repository's
`deploy/prometheus/prometheus.yml` and rules, with the scrape target rewritten in a tmp copy to a
live `python -m service` on a free loopback port (CPU provider, a 6-row queue so bursts get
429s). After real traffic (v1 predict with texts and input_ids, v2 infer, compare, 404s, 422s,
429 bursts) every PromQL expression of the dashboard and of the recording rules must return at
least one sample with a finite value through the Prometheus HTTP API. The only expressions
skipped are the `h2h_gpu_*` ones, and only when the service exports no GPU series (no NVML).

Grafana variables are substituted before a dashboard query goes to Prometheus (GRAFANA_VARS):
`$__rate_interval` -> `1m` (with a 1 s scrape interval Grafana would pick >= 4 s; 1 m matches the
recording rules' window and keeps every rate() fed for the whole test), `$__interval` -> `5s`,
`$__range` -> `5m`, `$model` and `$instance` -> `.*` (the variables' "All" value).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import (
    ROOT,  # noqa: E402
    free_port,
    start_service,
    stop,
    wait_until,
)

COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_CPU = ROOT / "deploy" / "compose.cpu.yml"
DOCKERFILE = ROOT / "Dockerfile"
PROM_DIR = ROOT / "deploy" / "prometheus"
PROM_CONFIG = PROM_DIR / "prometheus.yml"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "headtohead.json"
DATASOURCES = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = GRAFANA_DIR / "provisioning" / "dashboards" / "dashboards.yml"

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
NO_PROMETHEUS = (
    "Debian package `prometheus` not installed (apt-get install prometheus; `make install` does it)"
)

GRAFANA_VARS = {
    "__rate_interval": "1m",
    "__interval": "5s",
    "__range": "5m",
    "model": ".*",
    "instance": ".*",
}
GPU_METRIC = re.compile(r"\bh2h_gpu_")


# --------------------------------------------------------------------------------------------
# helpers shared by the static and the live tests


class _ComposeLoader(yaml.SafeLoader):
    """SafeLoader that accepts Compose's `!reset` / `!override` merge tags."""


def _compose_tag(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_ComposeLoader.add_constructor("!reset", _compose_tag)
_ComposeLoader.add_constructor("!override", _compose_tag)


def load_yaml(path: Path) -> Any:
    return yaml.load(path.read_text(), Loader=_ComposeLoader)  # noqa: S506 (SafeLoader subclass)


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def provisioned_dashboards() -> dict[str, dict]:
    """Every dashboard Grafana loads: the JSON files in the folder the provisioning names,
    found through the compose bind mount that puts deploy/grafana/dashboards there."""
    (prov,) = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())["providers"]
    grafana = load_yaml(COMPOSE)["services"]["grafana"]
    (mount,) = [
        v for v in grafana["volumes"] if isinstance(v, dict) and v["target"] == prov["options"]["path"]
    ]
    files = sorted((ROOT / mount["source"]).glob("**/*.json"))
    assert DASHBOARD in files, files
    return {f.name: json.loads(f.read_text()) for f in files}


def iter_panels(panels: list[dict]) -> Iterator[dict]:
    """Every panel, rows' nested panels included."""
    for p in panels:
        yield p
        yield from iter_panels(p.get("panels") or [])


def substitute(expr: str) -> str:
    """Grafana variables -> concrete values (GRAFANA_VARS); fails on any unknown variable."""

    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        if name not in GRAFANA_VARS:
            raise KeyError(f"unknown Grafana variable ${name} in {expr!r}")
        return GRAFANA_VARS[name]

    out = re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", repl, expr)
    assert "$" not in out, out
    return out


def dashboard_queries() -> list[tuple[str, str]]:
    """(id, PromQL) for every target and query variable of every provisioned dashboard,
    variables substituted."""
    out = []
    for file, d in provisioned_dashboards().items():
        where = "" if file == DASHBOARD.name else f"{file} "
        for p in iter_panels(d["panels"]):
            for t in p.get("targets") or []:
                out.append((f"{where}panel {p['id']} {p['title']!r} {t['refId']}", substitute(t["expr"])))
        for v in d.get("templating", {}).get("list", []):
            if v.get("type") == "query":
                q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
                m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", q.strip())
                assert m, f"variable {v['name']}: only label_values(metric, label) is supported, got {q!r}"
                # what Grafana asks Prometheus for label_values(): the series carrying the label
                out.append(
                    (f"{where}variable ${v['name']}", f"count by ({m.group(2)}) ({substitute(m.group(1))})")
                )
    return out


def rule_files() -> list[Path]:
    cfg = yaml.safe_load(PROM_CONFIG.read_text())
    files: list[Path] = []
    for pattern in cfg.get("rule_files") or []:
        files += sorted(PROM_DIR.glob(pattern))
    return files


def recording_rules() -> list[tuple[str, str]]:
    out = []
    for f in rule_files():
        for g in yaml.safe_load(f.read_text())["groups"]:
            for r in g["rules"]:
                assert "record" in r, f"{f.name}: only recording rules are shipped, got {r}"
                out.append((f"rule {r['record']}", r["expr"]))
    return out


def all_queries() -> list[tuple[str, str]]:
    return recording_rules() + dashboard_queries()


# --------------------------------------------------------------------------------------------
# static: compose, Dockerfile, provisioning, dashboard, promtool


def test_compose_services_volumes_gpu_and_healthchecks() -> None:
    c = load_yaml(COMPOSE)
    assert set(c["services"]) == {"service", "prometheus", "grafana"}
    assert set(c["volumes"]) == {"prometheus-data", "grafana-data"}

    svc = c["services"]["service"]
    assert svc["build"]["context"] == "." and svc["build"]["dockerfile"] == "Dockerfile"
    assert any(str(p).endswith(":8000") for p in svc["ports"])
    env = svc["environment"]
    assert env["H2H_MODEL_REPOSITORY"] == "/models" and str(env["H2H_PORT"]) == "8000"
    assert all(k.startswith("H2H_") for k in env)
    from service.settings import ServiceSettings  # every H2H_ variable is a real setting

    fields = {f.upper() for f in ServiceSettings.model_fields}
    assert {k.removeprefix("H2H_") for k in env} <= fields, set(env) - {f"H2H_{f}" for f in fields}

    (mount,) = [v for v in svc["volumes"] if isinstance(v, dict) and v["target"] == "/models"]
    assert mount["type"] == "bind" and mount["read_only"] is True
    assert "model_repository" in mount["source"]

    (gpu,) = svc["deploy"]["resources"]["reservations"]["devices"]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"] and gpu.get("count", 1) >= 1

    hc = svc["healthcheck"]
    assert hc["test"][0] == "CMD" and "/v2/health/ready" in " ".join(hc["test"])
    assert "start_period" in hc and "interval" in hc
    assert svc["stop_grace_period"] and svc["read_only"] is True

    prom = c["services"]["prometheus"]
    assert prom["image"].startswith("prom/prometheus:")
    assert any(str(p).endswith(":9090") for p in prom["ports"])
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom["command"]
    mounts = {m["target"]: m for m in prom["volumes"] if isinstance(m, dict)}
    assert (
        mounts["/etc/prometheus"]["source"] == "./deploy/prometheus"
        and mounts["/etc/prometheus"]["read_only"]
    )
    assert "prometheus-data:/prometheus" in prom["volumes"]
    assert "healthcheck" in prom

    graf = c["services"]["grafana"]
    assert graf["image"].startswith("grafana/grafana:")
    assert any(str(p).endswith(":3000") for p in graf["ports"])
    mounts = {m["target"]: m for m in graf["volumes"] if isinstance(m, dict)}
    assert mounts["/etc/grafana/provisioning"]["source"] == "./deploy/grafana/provisioning"
    assert mounts["/etc/grafana/dashboards"]["source"] == "./deploy/grafana/dashboards"
    assert all(m["read_only"] for m in mounts.values())
    genv = graf["environment"]
    assert genv["GF_AUTH_ANONYMOUS_ENABLED"] == "true" and genv["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert "GRAFANA_ADMIN_PASSWORD" in genv["GF_SECURITY_ADMIN_PASSWORD"]
    assert "healthcheck" in graf and "prometheus" in graf["depends_on"]

    # every bind-mounted host path exists in the repository (model_repository is built by export)
    for s in c["services"].values():
        for v in s.get("volumes", []):
            if isinstance(v, dict) and v["type"] == "bind" and "model_repository" not in v["source"]:
                assert (ROOT / v["source"]).exists(), v["source"]


def test_compose_cpu_override_drops_gpu() -> None:
    o = load_yaml(COMPOSE_CPU)["services"]["service"]
    assert o["deploy"] == {} and o["environment"]["H2H_PROVIDER"] == "cpu"
    assert o["build"]["args"]["ORT_PACKAGE"] == "onnxruntime"
    # the base image is an argument (a mirror, a local debootstrap base), Ubuntu by default
    assert o["build"]["args"]["BASE_IMAGE"] == "${H2H_BASE_IMAGE:-ubuntu:24.04}"
    assert "!reset" in COMPOSE_CPU.read_text()


def _docker_compose() -> list[str] | None:
    """Docker Compose (plugin or standalone), else podman-compose (a dev dependency) with podman."""
    podman_compose = str(Path(sys.executable).with_name("podman-compose"))
    for cmd in (["docker", "compose"], ["docker-compose"], [podman_compose]):
        if shutil.which(cmd[0]) is None or (cmd == [podman_compose] and shutil.which("podman") is None):
            continue
        probe = subprocess.run([*cmd, "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return cmd
    return None


def test_docker_compose_config(tmp_path: Path) -> None:
    cmd = _docker_compose()
    if cmd is None:
        pytest.skip("none of `docker compose`, `docker-compose`, podman with podman-compose is installed")
    env = {**os.environ, "H2H_MODEL_REPOSITORY_DIR": str(tmp_path)}
    for files in (["-f", str(COMPOSE)], ["-f", str(COMPOSE), "-f", str(COMPOSE_CPU)]):
        r = subprocess.run(
            [*cmd, *files, "config", "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert r.returncode == 0, r.stderr


def test_dockerfile() -> None:
    text = DOCKERFILE.read_text()
    lines = [ln.strip() for ln in text.splitlines()]
    assert re.search(r"^ARG BASE_IMAGE=nvidia/cuda:\S+-cudnn-runtime-", text, re.M)
    assert "ARG ORT_PACKAGE=onnxruntime-gpu" in text  # CPU variant: --build-arg ORT_PACKAGE=onnxruntime
    instructions = "\n".join(ln for ln in lines if not ln.startswith("#"))
    assert "pip install --no-deps ." in instructions and "torch" not in instructions
    # the CPU variant installs only ORT_PACKAGE: the GPU wheel is replaced before pip runs
    assert "uninstall" not in instructions and "os.environ['ORT_PACKAGE']" in instructions
    # pip's configuration and CA come as optional build secrets, on every RUN that runs pip
    pip_runs = [r for r in instructions.split("\nRUN ") if "pip install" in r]
    assert len(pip_runs) == 2
    for run in pip_runs:
        assert "--mount=type=secret,id=pip_conf,target=/etc/pip.conf,required=false" in run
        assert "--mount=type=secret,id=pip_ca,required=false" in run and "PIP_CERT=/run/secrets/pip_ca" in run
    assert not re.search(r"^(COPY|ADD)\b.*(pip|\.crt|\.pem)", instructions, re.M | re.I)
    user = [ln for ln in lines if ln.startswith("USER ")]
    assert user and user[-1].split()[1].split(":")[0] not in {"0", "root"}
    (hc,) = [ln for ln in lines if ln.startswith("HEALTHCHECK")]
    assert "/v2/health/ready" in text.split("HEALTHCHECK", 1)[1].split("\n\n")[0]
    assert hc
    assert 'ENTRYPOINT ["python", "-m", "service"]' in text and "H2H_MODEL_REPOSITORY=/models" in text
    # every COPY source is in the build context .dockerignore lets through, and exists
    ignore = (ROOT / ".dockerignore").read_text().split()
    allowed = {ln.lstrip("!").rstrip("/") for ln in ignore if ln.startswith("!")}
    for ln in lines:
        if ln.startswith("COPY ") and "--from=" not in ln:
            for src in ln.split()[1:-1]:
                assert src.rstrip("/") in allowed and (ROOT / src).exists(), src
    # the service's torch-free imports are all in the copied packages
    for mod in (
        "contract/tokenizer.py",
        "contract/atomic.py",
        "contract/cli.py",
        "contract/manifest.py",
        "contract/tensors.py",
        "service/app.py",
    ):
        assert (ROOT / mod).exists() and mod.split("/")[0] in allowed


def test_grafana_provisioning() -> None:
    ds = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    (prom,) = ds
    assert prom["type"] == "prometheus" and prom["uid"] == "prometheus"
    assert prom["url"] == "http://prometheus:9090"
    (prov,) = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())["providers"]
    assert prov["type"] == "file" and prov["options"]["path"] == "/etc/grafana/dashboards"


def test_dashboard_panels() -> None:
    d = dashboard()
    assert d["uid"] == "headtohead-service" and d["title"]
    titles = []
    ids = set()
    for p in iter_panels(d["panels"]):
        assert p["id"] not in ids, f"duplicate panel id {p['id']}"
        ids.add(p["id"])
        gp = p["gridPos"]
        assert gp["x"] >= 0 and gp["x"] + gp["w"] <= 24 and gp["h"] > 0
        if p["type"] == "row":
            continue
        titles.append(p["title"])
        assert p["datasource"] == {"type": "prometheus", "uid": "prometheus"}, p["title"]
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "prometheus" and t["expr"].strip(), p["title"]
    # what the issue asks the dashboard to show
    text = json.dumps(d)
    for needle in (
        "h2h_requests",
        "histogram_quantile(0.95, sum by (le, model) (rate(h2h_request_duration_seconds",
        "histogram_quantile(0.99, sum by (le, model) (rate(h2h_request_duration_seconds",
        "h2h_queue_wait_seconds",
        "h2h_compute_seconds",
        "h2h_batch_size_bucket",
        "h2h_sequence_length_bucket",
        'status=\\"429\\"',
        "h2h_gpu_utilization_ratio",
        "h2h_gpu_memory_used_bytes",
        'arch=\\"mha\\"',
        'arch=\\"sha\\"',
    ):
        assert needle in text, needle
    assert any("MHA" in t for t in titles) and any("SHA" in t for t in titles)
    assert {p["type"] for p in iter_panels(d["panels"])} >= {"timeseries", "heatmap", "stat", "table"}
    # rate windows come from Grafana, not hard-coded (the recording rules carry the fixed 1m ones)
    for _, q in dashboard_queries():
        assert not re.search(r"\[\d+[smh]\]", q.replace("[1m]", "")), q
    for p in iter_panels(d["panels"]):
        for t in p.get("targets") or []:
            assert "[$__rate_interval]" in t["expr"] or "[" not in t["expr"], t["expr"]
            # the replica selector filters every query: each series selector carries it (recording
            # rules, aggregated over every replica, would ignore it)
            for m in re.finditer(r"\b(?:[a-z_]+:)?h2h_[a-z0-9_:]+(\{[^}]*\})?", t["expr"]):
                assert 'instance=~"$instance"' in (m.group(1) or ""), (p["title"], m.group(0))


def test_dashboard_uses_only_known_metrics() -> None:
    """Every metric name a query uses is exported by the service or recorded by a rule."""
    from service import metrics

    src = Path(metrics.__file__).read_text()
    exported = set(re.findall(r'"(h2h_[a-z_]+)"', src))
    exported |= {f"{n}_total" for n in exported} | {
        f"{n}_{s}" for n in exported for s in ("bucket", "sum", "count")
    }
    recorded = {name.removeprefix("rule ") for name, _ in recording_rules()}
    for name, q in all_queries():
        for metric in re.findall(r"\b(?:[a-z_]+:)?h2h_[a-z0-9_:]+", q):
            assert metric in exported or metric in recorded, f"{name}: {metric}"


@pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: Debian package `prometheus`")
def test_promtool_checks_shipped_config_and_rules() -> None:
    r = subprocess.run([PROMTOOL, "check", "config", str(PROM_CONFIG)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert rule_files(), "prometheus.yml loads no rule file"
    r = subprocess.run([PROMTOOL, "check", "rules", *map(str, rule_files())], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: Debian package `prometheus`")
def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    """Each dashboard query (variables substituted) as a recording rule: promtool parses them all."""
    rules = [
        {"record": f"dashboard:query_{i}:check", "expr": q} for i, (_, q) in enumerate(dashboard_queries())
    ]
    f = tmp_path / "dashboard_rules.yml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    r = subprocess.run([PROMTOOL, "check", "rules", str(f)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(rules)} rules found" in r.stdout


def test_substitute() -> None:
    assert substitute('rate(x{model=~"$model"}[$__rate_interval])') == 'rate(x{model=~".*"}[1m])'
    assert substitute("rate(x[${__rate_interval}])") == "rate(x[1m])"
    with pytest.raises(KeyError):
        substitute("rate(x[$nope])")


# --------------------------------------------------------------------------------------------
# live: the service, a real Prometheus running the shipped config and rules, real traffic

WORDS = (
    "a small domesticated carnivore",
    "a tree",
    "the act of running quickly across a field",
    "an instrument for measuring time",
    "a large body of salt water that covers much of the earth",
    "dog",
    "a person who writes poems and stories for a living",
)
SERVICE_ENV = {
    "H2H_PROVIDER": "cpu",
    "H2H_INTRA_OP_THREADS": "1",
    "H2H_INTER_OP_THREADS": "1",
    "H2H_MAX_BATCH_SIZE": "8",
    "H2H_MAX_QUEUE_DELAY_MS": "3",
    "H2H_LOG_LEVEL": "warning",
    # tiny queue: the bursts below overflow it, so the 429 panels get real data
    "H2H_MAX_QUEUE_ROWS": "6",
}
TRAFFIC_S = 12.0


def fast_rule_files(tmp: Path) -> list[str]:
    """tmp copies of the shipped rule files, every group evaluated each second: a live test
    then sees recorded series within seconds instead of the shipped interval."""
    rules_dir = tmp / "rules"
    rules_dir.mkdir()
    files = []
    for f in rule_files():
        doc = yaml.safe_load(f.read_text())
        for g in doc["groups"]:
            g["interval"] = "1s"
        (rules_dir / f.name).write_text(yaml.safe_dump(doc, sort_keys=False))
        files.append(str(rules_dir / f.name))
    return files


def shipped_prometheus_config(tmp: Path, service: str, prom: str) -> Path:
    """tmp copy of the shipped config and rules: target -> the live service, 1 s intervals."""
    cfg = yaml.safe_load(PROM_CONFIG.read_text())
    cfg["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    cfg["rule_files"] = fast_rule_files(tmp)
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    (sc,) = jobs["headtohead"]["static_configs"]
    assert sc["targets"] == ["service:8000"], sc  # the compose service name and port
    sc["targets"] = [service]
    jobs["prometheus"]["static_configs"][0]["targets"] = [prom]
    out = tmp / "prometheus.yml"
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


class Traffic:
    """Mixed v1/v2 traffic from a few threads plus periodic bursts that overflow the queue."""

    def __init__(self, base: str, repo: Path) -> None:
        import httpx

        from contract.tokenizer import Tokenizer

        self.base = base
        self.models = ["mha-tiny", "sha-tiny"]
        self.tok = {m: Tokenizer.load(repo / m / "tokenizer.json") for m in self.models}
        self.client = httpx.Client(base_url=base, timeout=30, limits=httpx.Limits(max_connections=64))
        self.status: dict[int, int] = {}
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def _count(self, r: Any) -> None:
        with self._lock:
            self.status[r.status_code] = self.status.get(r.status_code, 0) + 1

    def _texts(self, i: int, n: int) -> list[str]:
        return [WORDS[(i + k) % len(WORDS)] for k in range(n)]

    def one(self, i: int) -> None:
        m = self.models[i % 2]
        n = 1 + i % 3
        texts = self._texts(i, n)
        kind = i % 10
        c = self.client
        if kind in (0, 1, 2):
            r = c.post(f"/v1/models/{m}/predict", json={"texts": texts, "top_k": 2})
        elif kind in (3, 4):
            ids, mask = self.tok[m].encode_batch(texts)
            r = c.post(f"/v1/models/{m}/predict", json={"input_ids": ids, "attention_mask": mask})
        elif kind in (5, 6):
            ids, mask = self.tok[m].encode_batch(texts)
            shape = [len(ids), len(ids[0])]
            inputs = [
                {
                    "name": "input_ids",
                    "shape": shape,
                    "datatype": "INT64",
                    "data": [x for row in ids for x in row],
                },
                {
                    "name": "attention_mask",
                    "shape": shape,
                    "datatype": "INT64",
                    "data": [x for row in mask for x in row],
                },
            ]
            r = c.post(f"/v2/models/{m}/infer", json={"inputs": inputs})
        elif kind == 7:
            r = c.post("/v1/compare", json={"texts": texts[:2]})
        elif kind == 8:
            r = c.post("/v1/models/no-such-model/predict", json={"texts": texts})  # 404
        else:
            r = c.post(f"/v1/models/{m}/predict", json={"top_k": 2})  # 422: neither texts nor ids
        self._count(r)

    def _worker(self, k: int) -> None:
        i = k
        while not self._stop.is_set():
            try:
                self.one(i)
            except Exception as exc:  # noqa: BLE001 (reported by the test)
                self.errors.append(repr(exc))
            i += 3
            time.sleep(0.01)

    def burst(self, j: int) -> None:
        """16 concurrent 3-row requests into a 6-row queue, plus one 8-row request (> queue)."""
        m = self.models[j % 2]

        def post(n: int) -> None:
            try:
                self._count(self.client.post(f"/v1/models/{m}/predict", json={"texts": self._texts(j, n)}))
            except Exception as exc:  # noqa: BLE001
                self.errors.append(repr(exc))

        threads = [threading.Thread(target=post, args=(3,)) for _ in range(16)]
        threads.append(threading.Thread(target=post, args=(8,)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def run(self, seconds: float) -> None:
        workers = [threading.Thread(target=self._worker, args=(k,)) for k in range(3)]
        for w in workers:
            w.start()
        t0 = time.monotonic()
        j = 0
        while time.monotonic() - t0 < seconds:
            self.burst(j)
            j += 1
            time.sleep(1.5)
        self._stop.set()
        for w in workers:
            w.join()


def prom_query(prom: str, expr: str, at: float | None = None) -> list[dict]:
    import httpx

    params = {"query": expr}
    if at is not None:
        params["time"] = f"{at:.3f}"
    r = httpx.get(f"{prom}/api/v1/query", params=params, timeout=10)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
    data = body["data"]
    if data["resultType"] == "scalar":
        return [{"metric": {}, "value": data["result"]}]
    assert data["resultType"] == "vector", data
    return data["result"]


def finite(result: list[dict]) -> list[dict]:
    return [s for s in result if math.isfinite(float(s["value"][1]))]


def start_prometheus(tmp: Path, port: int, config: Path, *flags: str) -> tuple[subprocess.Popen, Path]:
    """Prometheus on loopback, its data and log under `tmp` so every test run starts empty.
    Returns the process and its log."""
    log = tmp / "prometheus.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                *flags,
                "--log.level=warn",
            ],
            cwd=tmp,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, log


def settle(prom: str, gpu: bool) -> None:
    """Wait (30 s at most) until every query has a finite value: the last scrapes and rule
    evaluations have landed, so the tests may fix one evaluation time."""
    queries = [(n, q) for n, q in all_queries() if gpu or not GPU_METRIC.search(q)]
    deadline = time.monotonic() + 30
    missing = queries
    while missing and time.monotonic() < deadline:
        time.sleep(1)
        missing = [(n, q) for n, q in missing if not finite(prom_query(prom, q))]


def _start_stack(tmp: Path, tiny_repo: Path, procs: list[subprocess.Popen]) -> tuple[str, str, Path, Path]:
    """The service and a Prometheus scraping it, both ready and the target up. Each process joins
    `procs` as it starts, so the caller stops it even when a later step fails.
    Returns the service and Prometheus base URLs and their logs."""
    import httpx

    slog = tmp / "service.log"
    svc, addr = start_service(tiny_repo, SERVICE_ENV, slog)
    procs.append(svc)
    base = f"http://{addr}"

    pport = free_port()
    prom = f"http://127.0.0.1:{pport}"
    cfg = shipped_prometheus_config(tmp, addr, f"127.0.0.1:{pport}")
    pr, plog = start_prometheus(tmp, pport, cfg, "--storage.tsdb.retention.time=1h")
    procs.append(pr)

    wait_until(
        "service ready",
        lambda: httpx.get(f"{base}/v2/health/ready", timeout=2).status_code == 200,
        120,
        svc,
        slog,
    )
    wait_until(
        "prometheus ready",
        lambda: httpx.get(f"{prom}/-/ready", timeout=2).status_code == 200,
        60,
        pr,
        plog,
    )

    def target_up() -> bool:
        targets = httpx.get(f"{prom}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        return any(t["labels"]["job"] == "headtohead" and t["health"] == "up" for t in targets)

    wait_until("prometheus scrapes the service", target_up, 30, pr, plog)
    return base, prom, slog, plog


@pytest.fixture(scope="module")
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    if PROMETHEUS is None:
        pytest.skip(NO_PROMETHEUS)
    import httpx

    tiny_repo: Path = request.getfixturevalue("tiny_repo")  # after the skip: it trains two models

    tmp = tmp_path_factory.mktemp("deploy_live")
    phases: dict[str, float] = {}
    t_start = time.monotonic()
    procs: list[subprocess.Popen] = []
    try:
        base, prom, slog, plog = _start_stack(tmp, tiny_repo, procs)

        phases["startup_s"] = time.monotonic() - t_start
        traffic = Traffic(base, tiny_repo)
        t0 = time.monotonic()
        traffic.run(TRAFFIC_S)
        traffic.client.close()
        t1 = time.monotonic()
        gpu = "h2h_gpu_utilization_ratio" in httpx.get(f"{base}/metrics", timeout=5).text
        settle(prom, gpu)
        at = time.time()
        phases["traffic_s"] = t1 - t0
        phases["settle_s"] = time.monotonic() - t1
        yield {
            "prom": prom,
            "base": base,
            "at": at,
            "gpu": gpu,
            "traffic": traffic,
            "phases": phases,
            "service_log": slog,
            "prometheus_log": plog,
        }
    finally:
        for p in reversed(procs):
            stop(p)


@pytest.mark.slow
def test_live_traffic_mix(live: dict) -> None:
    t = live["traffic"]
    assert not t.errors, t.errors[:5]
    for code in (200, 404, 422, 429):
        assert t.status.get(code, 0) > 0, (code, t.status)
    assert sum(t.status.values()) >= 200, t.status


def test_live_rules_healthy(live: dict) -> None:
    import httpx

    groups = httpx.get(f"{live['prom']}/api/v1/rules", timeout=5).json()["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert {r["name"] for r in rules} == {n.removeprefix("rule ") for n, _ in recording_rules()}
    for r in rules:
        assert r["health"] == "ok" and not r.get("lastError"), r


def test_live_both_models_recorded(live: dict) -> None:
    """The per-model recording rules carry both the MHA and the SHA model."""
    for rule in (
        "model:h2h_request_duration_seconds:p95",
        "model:h2h_requests:rate1m",
        "model:h2h_compute_seconds_per_token:rate1m",
    ):
        models = {s["metric"]["model"] for s in finite(prom_query(live["prom"], rule, live["at"]))}
        assert {"mha-tiny", "sha-tiny"} <= models, (rule, models)
    (share,) = [
        s
        for s in prom_query(live["prom"], "model:h2h_requests_429:ratio_rate1m", live["at"])
        if s["metric"]["model"] == "mha-tiny"
    ]
    assert 0 < float(share["value"][1]) < 1


def assert_query_has_data(prom: str, at: float, gpu: bool, name: str, expr: str) -> None:
    """`expr` has a finite sample at `at`: a query naming a metric nobody exports fails here.
    GPU queries are skipped where the service exports no h2h_gpu_* series."""
    if GPU_METRIC.search(expr) and not gpu:
        pytest.skip(
            "no NVML on this host: the service exports no h2h_gpu_* series, so this GPU query "
            "cannot have data here (not faked; it is checked on hosts with a GPU)"
        )
    result = prom_query(prom, expr, at)
    assert finite(result), f"{name}: no finite sample for {expr!r}: {result[:3]}"


@pytest.mark.parametrize(("name", "expr"), all_queries(), ids=[n for n, _ in all_queries()])
def test_live_query_returns_data(live: dict, name: str, expr: str) -> None:
    assert_query_has_data(live["prom"], live["at"], live["gpu"], name, expr)
