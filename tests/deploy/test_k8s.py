"""Kubernetes manifests (deploy/k8s, deploy/kserve): rendered and validated offline, no cluster.

Rendering: `render()` below builds a kustomization in Python (the subset the repository uses:
resources, images, strategic-merge and JSON 6902 patches; anything else fails loudly), so the
manifests are checked on every machine. When `kubectl` is installed its `kubectl kustomize`
output must be identical, which keeps this renderer honest.

Validation: every core object of both overlays against the Kubernetes JSON schemas bundled by
`kubernetes-validate` (strict: unknown fields fail), for the oldest and newest versions we
target; the CRDs (PodMonitor, PrometheusRule, InferenceService) structurally, the
InferenceService's pod part as a real Pod. Then what the manifests promise about the service is
checked against the service itself, in-process on the tiny fixture repository: the probe paths
answer as Kubernetes needs (readiness turns 503 while draining, liveness stays 200), and the
metric the HPA and the prometheus-adapter rule read is a per-model gauge in /metrics whose value
follows the requests in flight.
"""

from __future__ import annotations

import asyncio
import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

# dev-only packages: a host with the serving stack alone (a GPU box running `pytest -m gpu`) skips
# this module instead of failing the whole collection
jsonpatch = pytest.importorskip("jsonpatch")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

K8S = ROOT / "deploy" / "k8s"
KSERVE = ROOT / "deploy" / "kserve"
OVERLAYS = {"cpu": K8S / "overlays" / "cpu", "gpu": K8S / "overlays" / "gpu"}
ADAPTER_VALUES = K8S / "prometheus-adapter" / "values.yaml"
RULES_FILE = ROOT / "deploy" / "prometheus" / "rules" / "headtohead.yml"
KUBECTL = shutil.which("kubectl")
PROMTOOL = shutil.which("promtool")
# oldest and newest Kubernetes minor we validate against (autoscaling/v2 and policy/v1 are GA in both)
K8S_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
CORE_KINDS = {
    "Deployment",
    "Service",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
    "PersistentVolumeClaim",
}
CRD_KINDS = {"PodMonitor", "PrometheusRule"}
# strategic-merge keys of the lists our patches touch (k8s.io/api patchMergeKey tags)
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
}
SERVICE_METRICS = ("h2h_inflight_requests", "h2h_queue_depth")


# --------------------------------------------------------------------------------------------
# a small kustomize: just what deploy/ uses


def _load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _strategic_merge(orig: Any, patch: Any, key: str = "") -> Any:
    """Kubernetes strategic merge for the fields we patch: maps merge, keyed lists merge by key
    (patch items first, then the untouched originals: kustomize's order), other lists replace."""
    if isinstance(orig, dict) and isinstance(patch, dict):
        out = dict(orig)
        for k, v in patch.items():
            if k.startswith("$"):
                raise NotImplementedError(f"strategic-merge directive {k} is not supported here")
            if v is None:
                out.pop(k, None)
            else:
                out[k] = _strategic_merge(orig.get(k), v, k) if k in orig else copy.deepcopy(v)
        return out
    if isinstance(orig, list) and isinstance(patch, list) and key in MERGE_KEYS:
        mk = MERGE_KEYS[key]
        by_key = {o[mk]: o for o in orig}
        merged = [_strategic_merge(by_key[p[mk]], p) if p[mk] in by_key else copy.deepcopy(p) for p in patch]
        seen = {p[mk] for p in patch}
        return merged + [copy.deepcopy(o) for o in orig if o[mk] not in seen]
    return copy.deepcopy(patch)


def _matches(obj: dict, target: dict) -> bool:
    unknown = set(target) - {"kind", "name", "group", "version"}
    if unknown:
        raise NotImplementedError(f"patch target fields {unknown} are not supported here")
    group, _, version = obj["apiVersion"].rpartition("/")
    return (
        target.get("kind", obj["kind"]) == obj["kind"]
        and target.get("name", obj["metadata"]["name"]) == obj["metadata"]["name"]
        and target.get("group", group) == group
        and target.get("version", version) == version
    )


def _apply_patch(objs: list[dict], spec: dict, base: Path) -> list[dict]:
    text = spec["patch"] if "patch" in spec else (base / spec["path"]).read_text()
    body = yaml.safe_load(text)
    if isinstance(body, list):  # JSON 6902
        target = spec["target"]
        hits = [i for i, o in enumerate(objs) if _matches(o, target)]
        assert hits, f"patch target {target} matches nothing"
        for i in hits:
            objs[i] = jsonpatch.JsonPatch(body).apply(objs[i])
        return objs
    target = spec.get("target") or {"kind": body["kind"], "name": body["metadata"]["name"]}
    hits = [i for i, o in enumerate(objs) if _matches(o, target)]
    assert hits, f"patch target {target} matches nothing"
    for i in hits:
        objs[i] = _strategic_merge(objs[i], body)
    return objs


def _set_images(node: Any, images: list[dict]) -> None:
    """kustomize `images:` on every containers/initContainers list anywhere (CRDs included)."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("containers", "initContainers") and isinstance(v, list):
                for c in v:
                    name = re.split(r"[@]|:(?=[^/]*$)", c["image"])[0]
                    for img in images:
                        if img["name"] == name:
                            tag = (
                                f"@{img['digest']}" if "digest" in img else f":{img.get('newTag', 'latest')}"
                            )
                            c["image"] = img.get("newName", name) + tag
            _set_images(v, images)
    elif isinstance(node, list):
        for v in node:
            _set_images(v, images)


def render(directory: Path) -> list[dict]:
    """The objects `kubectl kustomize directory` would print (for the features deploy/ uses)."""
    k = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(k) - {"apiVersion", "kind", "resources", "images", "patches"}
    if unsupported:
        raise NotImplementedError(f"{directory}: kustomization fields {unsupported}: extend render()")
    objs: list[dict] = []
    for res in k.get("resources", []):
        path = (directory / res).resolve()
        objs += render(path) if path.is_dir() else _load_docs(path)
    for spec in k.get("patches", []):
        objs = _apply_patch(objs, spec, directory)
    _set_images(objs, k.get("images", []))
    return objs


def by_kind(objs: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for o in objs:
        assert o["kind"] not in out, f"two {o['kind']} objects: this test expects one of each"
        out[o["kind"]] = o
    return out


@pytest.fixture(scope="module", params=sorted(OVERLAYS))
def overlay(request: pytest.FixtureRequest) -> tuple[str, dict[str, dict]]:
    return request.param, by_kind(render(OVERLAYS[request.param]))


def container(deploy: dict) -> dict:
    (c,) = deploy["spec"]["template"]["spec"]["containers"]
    return c


def env_of(c: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c.get("env", [])}


def adapter_rules() -> dict[str, dict]:
    """prometheus-adapter custom rules by the metric name they serve."""
    values = yaml.safe_load(ADAPTER_VALUES.read_text())
    assert values["rules"]["default"] is False
    return {r["name"]["as"]: r for r in values["rules"]["custom"]}


def series_metric(rule: dict) -> str:
    m = re.fullmatch(r"(h2h_[a-z_]+)\{.*\}", rule["seriesQuery"])
    assert m, rule["seriesQuery"]
    return m.group(1)


# --------------------------------------------------------------------------------------------
# rendering


@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed: the Python renderer alone is used")
@pytest.mark.parametrize("name", [*sorted(OVERLAYS), "kserve"])
def test_render_matches_kubectl_kustomize(name: str) -> None:
    directory = OVERLAYS.get(name, KSERVE)
    r = subprocess.run([KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    theirs = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(r.stdout) if o}
    ours = {(o["kind"], o["metadata"]["name"]): o for o in render(directory)}
    assert ours.keys() == theirs.keys()
    for key, obj in ours.items():
        assert obj == theirs[key], key


def test_renderer_strategic_merge_and_images() -> None:
    base = {
        "spec": {
            "containers": [
                {
                    "name": "a",
                    "image": "img:1",
                    "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
                }
            ]
        }
    }
    patch = {
        "spec": {
            "containers": [{"name": "a", "env": [{"name": "Y", "value": "3"}, {"name": "Z", "value": "4"}]}]
        }
    }
    out = _strategic_merge(base, patch)
    assert out["spec"]["containers"][0]["env"] == [
        {"name": "Y", "value": "3"},
        {"name": "Z", "value": "4"},
        {"name": "X", "value": "1"},
    ]
    assert base["spec"]["containers"][0]["env"][1]["value"] == "2"  # input untouched
    _set_images(out, [{"name": "img", "newName": "reg.example/img", "newTag": "cpu"}])
    assert out["spec"]["containers"][0]["image"] == "reg.example/img:cpu"
    with pytest.raises(NotImplementedError):
        _strategic_merge({"a": 1}, {"$patch": "delete"})


# --------------------------------------------------------------------------------------------
# schemas


def test_overlays_validate_against_kubernetes_schemas(overlay: tuple[str, dict[str, dict]]) -> None:
    _, objs = overlay
    assert set(objs) == CORE_KINDS | CRD_KINDS  # nothing unvalidated slips in
    for kind in CORE_KINDS:
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(objs[kind], version, strict=True)


def test_schema_validation_rejects_a_broken_object(overlay: tuple[str, dict[str, dict]]) -> None:
    """The validator is live: a misspelt field and a wrong type both fail."""
    _, objs = overlay
    bad = copy.deepcopy(objs["Deployment"])
    container(bad)["readinesProbe"] = container(bad).pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[-1], strict=True)
    bad = copy.deepcopy(objs["HorizontalPodAutoscaler"])
    bad["spec"]["minReplicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[-1], strict=True)


def _labels_select(selector: dict, labels: dict) -> bool:
    assert set(selector) == {"matchLabels"}, selector
    return selector["matchLabels"].items() <= labels.items()


def test_crds_structure(overlay: tuple[str, dict[str, dict]]) -> None:
    _, objs = overlay
    pod_labels = objs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    ports = {p["name"] for p in container(objs["Deployment"])["ports"]}

    pm = objs["PodMonitor"]
    assert pm["apiVersion"] == "monitoring.coreos.com/v1"
    assert _labels_select(pm["spec"]["selector"], pod_labels)
    (ep,) = pm["spec"]["podMetricsEndpoints"]
    assert ep["port"] in ports and ep["path"] == "/metrics"
    assert _seconds(ep["scrapeTimeout"]) < _seconds(ep["interval"])

    pr = objs["PrometheusRule"]
    assert pr["apiVersion"] == "monitoring.coreos.com/v1"
    assert pr["spec"] == yaml.safe_load(RULES_FILE.read_text()), "PrometheusRule drifted from the rules file"


def _seconds(d: str) -> float:
    m = re.fullmatch(r"(\d+)(s|m)", d)
    assert m, d
    return int(m.group(1)) * (60 if m.group(2) == "m" else 1)


# --------------------------------------------------------------------------------------------
# what the Deployment promises


def test_deployment_probes_shutdown_and_security(overlay: tuple[str, dict[str, dict]]) -> None:
    _, objs = overlay
    d = objs["Deployment"]
    pod = d["spec"]["template"]["spec"]
    c = container(d)
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    start = c["startupProbe"]
    assert start["periodSeconds"] * start["failureThreshold"] >= 120  # room to load models
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["port"] in {p["name"] for p in c["ports"]}

    # SIGTERM: preStop sleep, then the drain; the kubelet's kill must come after both
    env = env_of(c)
    (pre_cmd,) = [c["lifecycle"]["preStop"]["exec"]["command"]]
    assert pre_cmd[0] == "sleep"
    grace = float(env["H2H_SHUTDOWN_GRACE_S"])
    assert pod["terminationGracePeriodSeconds"] >= float(pre_cmd[1]) + grace + 5

    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
    assert c["resources"]["limits"]["memory"]

    # the model repository: the PVC in the same render, mounted read-only where the service reads
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    claim = vols["models"]["persistentVolumeClaim"]
    assert (
        claim["readOnly"] is True and claim["claimName"] == objs["PersistentVolumeClaim"]["metadata"]["name"]
    )
    assert (
        mounts["models"]["readOnly"] is True and mounts["models"]["mountPath"] == env["H2H_MODEL_REPOSITORY"]
    )
    assert "ReadOnlyMany" in objs["PersistentVolumeClaim"]["spec"]["accessModes"]
    assert mounts["tmp"]["mountPath"] == "/tmp" and "emptyDir" in vols["tmp"]  # writable scratch


def test_deployment_env_is_real_settings_and_overlay_specific(
    overlay: tuple[str, dict[str, dict]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.runtime import session as runtime
    from service.settings import ServiceSettings

    name, objs = overlay
    c = container(objs["Deployment"])
    env = env_of(c)
    h2h = {k: v for k, v in env.items() if k.startswith("H2H_")}
    fields = {f.upper() for f in ServiceSettings.model_fields}
    assert {k.removeprefix("H2H_") for k in h2h} <= fields, set(h2h) - {f"H2H_{f}" for f in fields}
    settings = ServiceSettings(**{k.removeprefix("H2H_").lower(): v for k, v in h2h.items()})  # all parse
    assert settings.port == c["ports"][0]["containerPort"] and settings.require_all_models is True
    gpu = c["resources"]["limits"].get("nvidia.com/gpu")
    if name == "gpu":
        assert gpu == 1 and c["resources"]["requests"]["nvidia.com/gpu"] == 1
        assert settings.provider == "cuda" and c["image"] == "headtohead-service:latest"
        assert settings.cuda_graph and settings.io_binding and settings.warmup  # graphs captured before ready
    else:
        assert gpu is None and "nvidia.com/gpu" not in c["resources"]["requests"]
        assert settings.provider == "cpu" and c["image"] == "headtohead-service:cpu"
        # the pin is what the service's auto default picks with exactly the requested cores
        # (in a pod auto would count the node's cores), with one model loaded or two
        monkeypatch.setattr(runtime, "usable_cores", lambda: int(c["resources"]["requests"]["cpu"]))
        auto = ServiceSettings(provider="cpu", intra_op_threads=0)  # 0 = auto
        for models in (1, 2):
            assert settings.intra_op_threads == runtime.intra_op_threads(auto, runtime.CPU, models)


def test_service_pdb_and_selectors(overlay: tuple[str, dict[str, dict]]) -> None:
    _, objs = overlay
    d = objs["Deployment"]
    pod_labels = d["spec"]["template"]["metadata"]["labels"]
    assert _labels_select(d["spec"]["selector"], pod_labels)
    svc = objs["Service"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    (port,) = svc["spec"]["ports"]
    assert port["targetPort"] in {p["name"] for p in container(d)["ports"]}
    pdb = objs["PodDisruptionBudget"]
    assert _labels_select(pdb["spec"]["selector"], pod_labels)
    assert pdb["spec"]["minAvailable"] < objs["HorizontalPodAutoscaler"]["spec"]["minReplicas"]
    assert d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_hpa_scales_on_the_adapter_metric_with_cpu_fallback(overlay: tuple[str, dict[str, dict]]) -> None:
    name, objs = overlay
    hpa = objs["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", objs["Deployment"]["metadata"]["name"])
    pods, cpu = hpa["spec"]["metrics"]
    assert pods["type"] == "Pods" and cpu["type"] == "Resource" and cpu["resource"]["name"] == "cpu"
    metric = pods["pods"]["metric"]["name"]
    rule = adapter_rules()[metric]  # the adapter serves exactly this name
    assert series_metric(rule) == metric == "h2h_inflight_requests"
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
    assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
    target = pods["pods"]["target"]
    assert target["type"] == "AverageValue"
    batch = int(env_of(container(objs["Deployment"]))["H2H_MAX_BATCH_SIZE"])
    assert {"cpu": 8, "gpu": 16}[name] == int(target["averageValue"]) <= batch
    assert "nvidia.com/gpu" not in str(cpu)
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 60


def adapter_query(rule: dict, matchers: str, group_by: str) -> str:
    """The PromQL prometheus-adapter sends for a rule (its Go template filled in)."""
    q = rule["metricsQuery"]
    for k, v in {"Series": series_metric(rule), "LabelMatchers": matchers, "GroupBy": group_by}.items():
        q = q.replace(f"<<.{k}>>", v)
    assert "<<" not in q, q
    return q


@pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: Debian package `prometheus`")
def test_adapter_queries_parse(tmp_path: Path) -> None:
    rules = [
        {
            "record": f"adapter:{name}:check",
            "expr": adapter_query(r, 'namespace="headtohead",pod=~"a|b"', "pod"),
        }
        for name, r in adapter_rules().items()
    ]
    f = tmp_path / "adapter_rules.yml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "adapter", "rules": rules}]}))
    r = subprocess.run([PROMTOOL, "check", "rules", str(f)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


# --------------------------------------------------------------------------------------------
# KServe


def test_kserve_inferenceservice_matches_the_deployment() -> None:
    objs = by_kind(render(KSERVE))
    assert set(objs) == {"InferenceService", "PersistentVolumeClaim"}
    kubernetes_validate.validate(objs["PersistentVolumeClaim"], K8S_VERSIONS[-1], strict=True)
    isvc = objs["InferenceService"]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    pred = copy.deepcopy(isvc["spec"]["predictor"])
    ext = {k: pred.pop(k) for k in ("minReplicas", "maxReplicas", "scaleMetric", "scaleTarget")}
    assert 2 <= ext["minReplicas"] <= ext["maxReplicas"] and ext["scaleMetric"] == "cpu"
    # the rest of the predictor is a PodSpec (custom predictor): validate it as a real Pod
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "isvc"}, "spec": pred},
            version,
            strict=True,
        )
    (c,) = pred["containers"]
    assert c["name"] == "kserve-container"  # KServe's name for the predictor container
    env = env_of(c)
    assert env.pop("PROTOCOL") == "v2"  # custom predictor: Open Inference Protocol (v2)

    gpu = by_kind(render(OVERLAYS["gpu"]))
    dpod = gpu["Deployment"]["spec"]["template"]["spec"]
    dc = container(gpu["Deployment"])
    assert env == env_of(dc)  # same settings
    for key in (
        "image",
        "ports",
        "startupProbe",
        "readinessProbe",
        "livenessProbe",
        "lifecycle",
        "resources",
        "securityContext",
        "volumeMounts",
    ):
        assert c[key] == dc[key], key
    for key in ("terminationGracePeriodSeconds", "securityContext", "volumes", "tolerations"):
        assert pred[key] == dpod[key], key
    assert (
        pred["volumes"][0]["persistentVolumeClaim"]["claimName"]
        == objs["PersistentVolumeClaim"]["metadata"]["name"]
    )


# --------------------------------------------------------------------------------------------
# the running service: probe paths and the HPA's metric


def _gauge(text: str, name: str) -> dict[str, float]:
    """{model: value} of one per-model gauge in Prometheus text format."""
    from prometheus_client.parser import text_string_to_metric_families

    (fam,) = [f for f in text_string_to_metric_families(text) if f.name == name]
    assert fam.type == "gauge", (name, fam.type)
    return {s.labels["model"]: s.value for s in fam.samples}


async def _probe_and_metrics_scenario(repo: Path, paths: dict[str, str]) -> dict[str, Any]:
    import httpx

    from service.app import create_app
    from tests.conftest import cpu_service_settings
    from tests.service.test_service_batcher import hold, release

    settings = cpu_service_settings(repo, require_all_models=True)
    app = create_app(settings, gpu_metrics=False)
    out: dict[str, Any] = {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://pod") as c:
            out["probes"] = {k: (await c.get(p)).status_code for k, p in paths.items()}
            out["idle"] = (await c.get("/metrics")).text
            b = app.state.registry.engine.engine.models["mha-tiny"].batcher
            hold(b)  # hold the batch so the request stays in flight
            try:
                task = asyncio.create_task(
                    c.post("/v1/models/mha-tiny/predict", json={"texts": ["a dog", "a tree", "a cat"]})
                )
                while b.queued_rows < 3:
                    await asyncio.sleep(0.001)
                out["busy"] = (await c.get("/metrics")).text
            finally:
                release(b)
            out["answer"] = (await task).status_code
            out["after"] = (await c.get("/metrics")).text
            app.state.registry.begin_shutdown()  # what SIGTERM does
            out["draining"] = {k: (await c.get(p)).status_code for k, p in paths.items()}
    return out


def test_probes_and_hpa_metrics_in_the_running_service(tiny_repo: Path) -> None:
    objs = by_kind(render(OVERLAYS["cpu"]))
    c = container(objs["Deployment"])
    paths = {p: c[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe", "livenessProbe")}
    out = asyncio.run(_probe_and_metrics_scenario(tiny_repo, paths))

    assert out["probes"] == {"startupProbe": 200, "readinessProbe": 200, "livenessProbe": 200}
    # SIGTERM: readiness fails (the pod leaves the Service), liveness holds (no kill mid-drain)
    assert out["draining"] == {"startupProbe": 200, "readinessProbe": 503, "livenessProbe": 200}

    # every metric the HPA, the adapter rules and the PrometheusRule name is exported
    names = {series_metric(r) for r in adapter_rules().values()}
    names.add(objs["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["pods"]["metric"]["name"])
    assert names == set(SERVICE_METRICS)
    for name in names:
        assert _gauge(out["idle"], name) == {"mha-tiny": 0.0, "sha-tiny": 0.0}
    # ...and follows the load: one 3-row request held in the batcher
    assert _gauge(out["busy"], "h2h_inflight_requests") == {"mha-tiny": 1.0, "sha-tiny": 0.0}
    assert _gauge(out["busy"], "h2h_queue_depth") == {"mha-tiny": 3.0, "sha-tiny": 0.0}
    assert out["answer"] == 200
    for name in names:
        assert _gauge(out["after"], name) == {"mha-tiny": 0.0, "sha-tiny": 0.0}

    from prometheus_client.parser import text_string_to_metric_families

    exported = {f.name for f in text_string_to_metric_families(out["after"])}
    exprs = " ".join(r["expr"] for g in yaml.safe_load(RULES_FILE.read_text())["groups"] for r in g["rules"])
    used = set(re.findall(r"\b(h2h_[a-z_]+?)(?:_bucket|_sum|_count|_total)?\b", exprs))
    assert {"h2h_requests", "h2h_request_duration_seconds", "h2h_tokens"} <= used
    assert used <= exported, used - exported
