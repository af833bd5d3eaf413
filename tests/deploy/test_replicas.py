"""Two replicas behind one Prometheus: the dashboard's numbers are the fleet's, not one pod's.

Two `python -m service` processes on loopback serve the tiny fixture repository; replica A
batches at once (1 ms window), replica B waits 60 ms for more rows, so B is slow and its queue is
rarely empty. A real Prometheus (Debian's `prometheus`, 1 s scrape and rule interval) runs the
repository's recording rules and scrapes both, each target labelled with a `namespace` and `pod`
the way the Prometheus Operator's PodMonitor labels pods on Kubernetes. Several client threads
send requests to both for a few seconds, counting every answer.

Then, through the Prometheus HTTP API:
- per-replica request counters equal what each client counted, and the sum equals the total;
- the dashboard's latency quantiles (recording rules, `sum by (le, model)`) equal the quantile of
  the two replicas' merged histograms, recomputed here from each replica's own bucket rates at
  the rule's evaluation time: the fast replica's majority sets p50, the slow one sets p99, and
  the average of per-replica p50s (what a wrong aggregation would show) is far off;
- the dashboard's request rate equals the sum of the per-replica rates;
- the recording rules themselves (rate and quantiles) are checked as promtool checks rules: at a
  fixed evaluation time over two replicas' synthetic series (no Prometheus server, not slow), so
  the answer does not depend on when a live Prometheus last ran a rule;
- per-replica queue depth and in-flight series are visible (the slow replica's queue was seen
  non-empty), and the prometheus-adapter query the HPA relies on returns one value per pod;
- the dashboard's replica (`instance`) variable lists both replicas, and the per-replica panels
  return one series per replica;
- the replica selector filters the panels: with every replica selected the dashboard's latency
  and request-rate panels show the fleet's numbers (the recording rules' values), with one
  replica selected they show exactly that replica's quantile and rate, and no panel returns a
  series of a replica that is not selected.
"""

from __future__ import annotations

import math
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_deploy import (
    GPU_METRIC,
    NO_PROMETHEUS,
    PROMETHEUS,
    PROMTOOL,
    dashboard,
    fast_rule_files,
    iter_panels,
    provisioned_dashboards,
    rule_files,
    start_prometheus,
    substitute,
)
from test_k8s import ADAPTER_VALUES, adapter_query

from tests.conftest import free_port, start_service, stop, wait_until

MODEL = "mha-tiny"
OTHER = "sha-tiny"
INFER = 'route=~".+/(predict|infer)"'
COMMON_ENV = {
    "H2H_PROVIDER": "cpu",
    "H2H_INTRA_OP_THREADS": "1",
    "H2H_INTER_OP_THREADS": "1",
    "H2H_MAX_BATCH_SIZE": "8",
    "H2H_LOG_LEVEL": "warning",
}
REPLICAS = {  # pod name -> its batching window
    "replica-a": {"H2H_MAX_QUEUE_DELAY_MS": "1"},
    "replica-b": {"H2H_MAX_QUEUE_DELAY_MS": "60"},
}
SLOW_S = 0.05  # replica B's requests all take longer than this (60 ms window), A's mostly less
# (threads, pause between requests): A paced so B keeps a share of the traffic that sets the
# fleet's p99 (above 1%) on any machine, and so the test does not hog the CPU
CLIENTS = {"replica-a": (4, 0.01), "replica-b": (4, 0.0)}
TRAFFIC_S = 6.0
NAMESPACE = "h2h-test"
TEXTS = ("a small domesticated carnivore", "a tree", "dog", "an instrument for measuring time")


# --------------------------------------------------------------------------------------------
# processes and queries


def query(prom: str, expr: str, at: float) -> list[dict]:
    """Instant query: [{"metric": {...}, "value": float}]."""
    import httpx

    r = httpx.get(f"{prom}/api/v1/query", params={"query": expr, "time": f"{at:.3f}"}, timeout=10)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
    assert body["data"]["resultType"] == "vector", body["data"]
    return [{"metric": s["metric"], "value": float(s["value"][1])} for s in body["data"]["result"]]


def _start_service(repo: Path, pod: str, tmp: Path) -> tuple[subprocess.Popen, str, Path]:
    log = tmp / f"{pod}.log"
    proc, addr = start_service(repo, {**COMMON_ENV, **REPLICAS[pod]}, log)
    return proc, addr, log


def _prometheus_config(tmp: Path, targets: dict[str, str]) -> Path:
    """The shipped rules (1 s interval) and one scrape job over every replica, each target
    labelled like a PodMonitor target (namespace, pod)."""
    cfg = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": fast_rule_files(tmp),
        "scrape_configs": [
            {
                "job_name": "headtohead",
                "static_configs": [
                    {"targets": [addr], "labels": {"namespace": NAMESPACE, "pod": pod}}
                    for pod, addr in targets.items()
                ],
            }
        ],
    }
    out = tmp / "prometheus.yml"
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


def _drive(targets: dict[str, str], seconds: float) -> dict[str, dict[int, int]]:
    """Closed-loop clients on every replica for `seconds`; status counts per replica."""
    import httpx

    counts: dict[str, dict[int, int]] = {pod: {} for pod in targets}
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(pod: str, k: int) -> None:
        with httpx.Client(base_url=f"http://{targets[pod]}", timeout=30) as c:
            i = k
            while time.monotonic() < deadline:
                try:
                    r = c.post(f"/v1/models/{MODEL}/predict", json={"texts": [TEXTS[i % len(TEXTS)]]})
                except Exception as exc:  # noqa: BLE001 (reported below)
                    errors.append(repr(exc))
                    continue
                with lock:
                    counts[pod][r.status_code] = counts[pod].get(r.status_code, 0) + 1
                i += 1
                time.sleep(CLIENTS[pod][1])

    threads = [
        threading.Thread(target=worker, args=(pod, k)) for pod in targets for k in range(CLIENTS[pod][0])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:5]
    return counts


def _touch_other_model(targets: dict[str, str]) -> None:
    """A few requests to the SHA model on each replica (the counted traffic is MHA's only), so the
    dashboard's SHA panels have data too: two rounds more than a scrape apart, since rate() sees
    only what a counter gained between two scrapes."""
    import httpx

    for round_ in range(2):
        time.sleep(1.5 * round_)
        for addr in targets.values():
            for text in TEXTS:
                r = httpx.post(f"http://{addr}/v1/models/{OTHER}/predict", json={"texts": [text]}, timeout=30)
                assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    if PROMETHEUS is None:
        pytest.skip(NO_PROMETHEUS)
    import httpx

    repo: Path = request.getfixturevalue("tiny_repo")  # after the skip: it trains two models
    tmp = tmp_path_factory.mktemp("replicas")
    procs: list[subprocess.Popen] = []
    try:
        services = {}
        for pod in REPLICAS:
            proc, addr, log = _start_service(repo, pod, tmp)
            procs.append(proc)
            services[pod] = (proc, addr, log)
        targets = {pod: addr for pod, (_, addr, _) in services.items()}
        pport = free_port()
        prom = f"http://127.0.0.1:{pport}"
        pr, plog = start_prometheus(tmp, pport, _prometheus_config(tmp, targets))
        procs.append(pr)
        for pod, (proc, addr, log) in services.items():
            wait_until(
                f"{pod} ready",
                lambda a=addr: httpx.get(f"http://{a}/v2/health/ready").status_code == 200,
                120,
                proc,
                log,
            )
        wait_until("prometheus ready", lambda: httpx.get(f"{prom}/-/ready").status_code == 200, 60, pr, plog)

        def both_up() -> bool:
            active = httpx.get(f"{prom}/api/v1/targets").json()["data"]["activeTargets"]
            return sorted(t["labels"]["pod"] for t in active if t["health"] == "up") == sorted(REPLICAS)

        wait_until("prometheus scrapes both replicas", both_up, 30, pr, plog)
        counts = _drive(targets, TRAFFIC_S)
        instance = {pod: addr for pod, addr in targets.items()}
        expected = {addr: counts[pod].get(200, 0) for pod, addr in instance.items()}

        def scraped_all() -> bool:  # the last scrape after the traffic has every answer
            got = query(
                prom,
                f'sum by (instance) (h2h_requests_total{{model="{MODEL}", {INFER}, status="200"}})',
                time.time(),
            )
            return {s["metric"]["instance"]: s["value"] for s in got} == expected

        wait_until("prometheus has the final counts", scraped_all, 20, pr, plog)
        _touch_other_model(targets)  # every dashboard panel then has data on both replicas
        time.sleep(2.5)  # at least one rule evaluation over the complete data
        at = time.time()
        # every query is at `at` or before: wait until nothing stamped before it can still land (a
        # target's scrapes and a rule group's runs are sequential, so one stamped after `at` means
        # all before it are stored); on a busy machine a scrape stamped before `at` lands seconds
        # later, and two queries at one instant would otherwise see different data
        wait_until("samples up to the queried instant stored", lambda: _settled(prom, at), 60, pr, plog)
        yield {"prom": prom, "at": at, "counts": counts, "instance": instance}
    finally:
        for p in reversed(procs):
            stop(p)


def _settled(prom: str, at: float) -> bool:
    """Every target scraped, and every rule the tests read evaluated, after `at`."""
    now = time.time()
    stamps = [s["value"] for s in query(prom, "timestamp(up)", now)]
    for record in ("model:h2h_requests:rate1m", "model:h2h_request_duration_seconds:p50"):
        stamps += [s["value"] for s in query(prom, f'timestamp({record}{{model="{MODEL}"}})', now)]
    return len(stamps) == len(REPLICAS) + 2 and min(stamps) > at


# --------------------------------------------------------------------------------------------
# Prometheus's histogram_quantile, to recompute the fleet's quantile from per-replica buckets


def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus's linear interpolation over cumulative buckets {le: count} (le may be inf)."""
    les = sorted(buckets)
    assert les[-1] == math.inf, les
    total = buckets[math.inf]
    assert total > 0
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le in les:
        if buckets[le] >= rank:
            if le == math.inf:
                return prev_le
            # Prometheus's own order of operations (bucketQuantile), so equal inputs give equal bits
            return prev_le + (le - prev_le) * ((rank - prev_count) / (buckets[le] - prev_count))
        prev_le, prev_count = le, buckets[le]
    raise AssertionError("unreachable: the +Inf bucket holds the total")


def _fleet_rules_test(tmp: Path) -> tuple[Path, dict[str, float]]:
    """A promtool rule unit test: two replicas' synthetic counters and latency buckets (A fast
    and busy, B slow), the recording rules evaluated at a fixed time, and what each must give:
    the sum of the replicas' rates, the merged histogram's quantiles."""
    route = 'route="/v1/models/{name}/predict"'
    a_rate, b_rate = 6.0, 2.0  # requests per second, all 200s
    a_le, b_le = {0.01: a_rate, 0.1: a_rate, math.inf: a_rate}, {0.01: 0.0, 0.1: b_rate, math.inf: b_rate}
    series = []
    for inst, rate, buckets in (("a:1", a_rate, a_le), ("b:1", b_rate, b_le)):
        lbl = f'model="{MODEL}", {route}, status="200", instance="{inst}"'
        series.append({"series": f"h2h_requests_total{{{lbl}}}", "values": f"0+{rate * 15:g}x40"})
        series.append(
            {
                "series": "h2h_requests_total{" + lbl.replace(route, 'route="/metrics"') + "}",
                "values": "0+9000x40",
            }
        )
        for le, r in buckets.items():
            le_s = "+Inf" if le == math.inf else f"{le:g}"
            name = f'h2h_request_duration_seconds_bucket{{{lbl}, le="{le_s}"}}'
            series.append({"series": name, "values": f"0+{r * 15:g}x40"})
    merged = {le: a_le[le] + b_le[le] for le in a_le}
    want = {
        "model:h2h_requests:rate1m": a_rate + b_rate,
        "model:h2h_request_duration_seconds:p50": histogram_quantile(0.5, merged),
        "model:h2h_request_duration_seconds:p99": histogram_quantile(0.99, merged),
    }
    doc = {
        "rule_files": [str(f) for f in rule_files()],
        "evaluation_interval": "5s",
        "tests": [
            {
                "interval": "15s",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": record,
                        "eval_time": "5m",
                        "exp_samples": [{"labels": f'{record}{{model="{MODEL}"}}', "value": value}],
                    }
                    for record, value in want.items()
                ],
            }
        ],
    }
    path = tmp / "fleet_rules_test.yml"
    path.write_text(yaml.safe_dump(doc))
    return path, want


@pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: Debian package `prometheus`")
def test_recording_rules_sum_replicas_at_a_fixed_evaluation_time(tmp_path: Path) -> None:
    """The dashboard's request rate and latency quantiles (recording rules) are the fleet's: checked
    as promtool checks rules, at a fixed evaluation time over synthetic series, so the answer
    does not depend on when a live Prometheus last ran the rule (the live tests below compare
    the rule's expression with the per-replica figures at one instant instead)."""
    path, want = _fleet_rules_test(tmp_path)
    assert (
        want["model:h2h_request_duration_seconds:p50"] < 0.01 < want["model:h2h_request_duration_seconds:p99"]
    )
    r = subprocess.run([PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_histogram_quantile_matches_prometheus_definition() -> None:
    b = {0.1: 50.0, 0.2: 90.0, 0.5: 100.0, math.inf: 100.0}
    assert histogram_quantile(0.5, b) == pytest.approx(0.1)
    assert histogram_quantile(0.7, b) == pytest.approx(0.15)
    assert histogram_quantile(0.95, b) == pytest.approx(0.35)
    assert histogram_quantile(0.999, {0.1: 99.0, math.inf: 100.0}) == pytest.approx(0.1)


def _rule(record: str) -> str:
    for f in rule_files():
        for g in yaml.safe_load(f.read_text())["groups"]:
            for r in g["rules"]:
                if r["record"] == record:
                    return r["expr"]
    raise KeyError(record)


def _eval_time(fleet: dict, record: str) -> float:
    """When the rule last produced the sample the dashboard shows (its evaluation timestamp)."""
    (s,) = query(fleet["prom"], f'timestamp({record}{{model="{MODEL}"}})', fleet["at"])
    return s["value"]


def _one(result: list[dict]) -> float:
    (s,) = [s for s in result if s["metric"].get("model") == MODEL]
    return s["value"]


def panel_query(title: str, ref: str, instance: str | None = None) -> str:
    """A dashboard target's PromQL as Grafana sends it: every variable at "All", or the replica
    variable set to one instance (Grafana regex-escapes a selected value for `=~`)."""
    (p,) = [p for p in iter_panels(dashboard()["panels"]) if p["title"] == title]
    (t,) = [t for t in p["targets"] if t["refId"] == ref]
    return on_replica(t["expr"], instance)


def on_replica(expr: str, instance: str | None) -> str:
    if instance is not None:
        value = re.escape(instance).replace("\\", "\\\\")  # inside a PromQL string literal
        expr = expr.replace('instance=~"$instance"', f'instance=~"{value}"')
    return substitute(expr)


# --------------------------------------------------------------------------------------------
# tests


@pytest.mark.slow
def test_request_counts_add_up_across_replicas(fleet: dict) -> None:
    counts, instance = fleet["counts"], fleet["instance"]
    for pod in REPLICAS:
        assert set(counts[pod]) == {200}, counts  # no errors, no 429 at this load
    got = query(
        fleet["prom"], f'sum by (instance) (h2h_requests_total{{model="{MODEL}", {INFER}}})', fleet["at"]
    )
    assert {s["metric"]["instance"]: s["value"] for s in got} == {
        instance[p]: counts[p][200] for p in REPLICAS
    }
    (total,) = query(
        fleet["prom"], f'sum(h2h_request_duration_seconds_count{{model="{MODEL}", {INFER}}})', fleet["at"]
    )
    assert total["value"] == sum(c[200] for c in counts.values())
    assert counts["replica-a"][200] > counts["replica-b"][200] > 20  # the fast replica answers more


@pytest.mark.slow
@pytest.mark.parametrize("quantile", ["p50", "p99"])
def test_dashboard_latency_quantiles_merge_replica_histograms(fleet: dict, quantile: str) -> None:
    record = f"model:h2h_request_duration_seconds:{quantile}"
    expr = _rule(record)
    m = re.fullmatch(r"histogram_quantile\(([\d.]+), sum by \(le, model\) \((rate\(.+\))\)\)", expr)
    assert m, f"{record} no longer merges replicas with sum by (le, model): {expr}"
    q, inner = float(m.group(1)), m.group(2)
    t = _eval_time(fleet, record)
    prom = fleet["prom"]
    fleet_q = _one(query(prom, expr, t))
    # the rule's own sample exists; its value is checked at a fixed evaluation time by promtool
    # (test_recording_rules_sum_replicas_at_a_fixed_evaluation_time): here the rule's value at t
    # comes from its last run, and a scrape ingested after that run (late on a busy machine) moves
    # the instant query at t, not the recorded sample
    assert _one(query(prom, record, t)) > 0

    per: dict[str, dict[float, float]] = {}
    for s in query(prom, f"sum by (le, model, instance) ({inner})", t):
        if s["metric"]["model"] == MODEL:
            per.setdefault(s["metric"]["instance"], {})[float(s["metric"]["le"])] = s["value"]
    a, b = (per[fleet["instance"][p]] for p in ("replica-a", "replica-b"))
    merged = {le: a[le] + b[le] for le in a}
    assert fleet_q == pytest.approx(histogram_quantile(q, merged), rel=1e-9)

    p_a, p_b = histogram_quantile(q, a), histogram_quantile(q, b)
    # the Latency panel: the fleet's quantile with every replica selected, one replica's own
    # quantile with that replica selected (its histogram alone, nothing of the other)
    panel = ("Latency p50 / p95 / p99 per model", {"p50": "A", "p99": "C"}[quantile])
    assert _one(query(prom, panel_query(*panel), t)) == pytest.approx(fleet_q, rel=1e-9)
    for pod, own in (("replica-a", p_a), ("replica-b", p_b)):
        shown = _one(query(prom, panel_query(*panel, instance=fleet["instance"][pod]), t))
        assert shown == pytest.approx(own, rel=1e-9), pod
    assert p_b >= SLOW_S  # replica B waits 60 ms for every batch
    if quantile == "p50":  # the fast replica's majority sets the fleet's median...
        assert fleet_q < p_b and fleet_q < (p_a + p_b) / 2  # ...not the average of the two medians
    else:  # ...and the slow replica's share sets the tail
        assert fleet_q >= SLOW_S


@pytest.mark.slow
def test_dashboard_request_rate_sums_replicas(fleet: dict) -> None:
    record = "model:h2h_requests:rate1m"
    expr = _rule(record)
    m = re.fullmatch(r"sum by \(model\) \((rate\(.+\))\)", expr)
    assert m, expr
    t = _eval_time(fleet, record)
    fleet_rate = _one(query(fleet["prom"], expr, t))
    assert _one(query(fleet["prom"], record, t)) > 0  # its value: promtool, as for the quantiles
    per = {
        s["metric"]["instance"]: s["value"]
        for s in query(fleet["prom"], f"sum by (model, instance) ({m.group(1)})", t)
        if s["metric"]["model"] == MODEL
    }
    a, b = (per[fleet["instance"][p]] for p in ("replica-a", "replica-b"))
    assert a > b > 0
    assert fleet_rate == pytest.approx(a + b, rel=1e-9)
    # the Traffic row's request-rate panel: the sum with every replica selected, and exactly one
    # replica's rate with that replica selected

    def shown(instance: str | None) -> float:
        got = query(fleet["prom"], panel_query("Request rate by model and status", "A", instance), t)
        (s,) = [s for s in got if s["metric"]["model"] == MODEL]  # all answers were 200s
        assert s["metric"]["status"] == "200"
        return s["value"]

    assert shown(None) == pytest.approx(a + b, rel=1e-9)
    assert shown(fleet["instance"]["replica-a"]) == pytest.approx(a, rel=1e-9)
    assert shown(fleet["instance"]["replica-b"]) == pytest.approx(b, rel=1e-9)


@pytest.mark.slow
def test_per_replica_queue_depth_and_adapter_metric(fleet: dict) -> None:
    prom, at, inst = fleet["prom"], fleet["at"], fleet["instance"]
    for name in ("h2h_queue_depth", "h2h_inflight_requests"):
        series = query(prom, f'{name}{{model="{MODEL}"}}', at)
        assert sorted(s["metric"]["instance"] for s in series) == sorted(inst.values()), name
        (seen,) = query(
            prom, f'max_over_time({name}{{model="{MODEL}", instance="{inst["replica-b"]}"}}[1m])', at
        )
        assert seen["value"] >= 1, f"{name} never seen above 0 on the slow replica"
    # the dashboard's queue panel: one queue-depth series per model and replica
    (panel,) = [p for p in iter_panels(dashboard()["panels"]) if p["title"] == "Queue depth and in-flight"]
    shown = query(prom, substitute(panel["targets"][0]["expr"]), at)
    assert {(s["metric"]["model"], s["metric"]["instance"]) for s in shown} == {
        (m, i) for m in ("mha-tiny", "sha-tiny") for i in inst.values()
    }
    # what prometheus-adapter answers the HPA: one value per pod, B's in-flight average above 0
    values = yaml.safe_load(ADAPTER_VALUES.read_text())
    (rule,) = [r for r in values["rules"]["custom"] if r["name"]["as"] == "h2h_inflight_requests"]
    q = adapter_query(rule, f'namespace="{NAMESPACE}",pod=~"replica-a|replica-b"', "pod")
    per_pod = {s["metric"]["pod"]: s["value"] for s in query(prom, q, at)}
    assert set(per_pod) == set(REPLICAS) and per_pod["replica-b"] > 0, per_pod


@pytest.mark.slow
def test_dashboard_replica_selector_and_panels(fleet: dict) -> None:
    d = dashboard()
    (var,) = [v for v in d["templating"]["list"] if v["name"] == "instance"]
    assert var["type"] == "query" and var["multi"] and var["includeAll"] and var["allValue"] == ".*"
    m = re.fullmatch(r"label_values\((.+),\s*instance\)", var["query"]["query"])
    assert m, var["query"]
    listed = query(fleet["prom"], f"count by (instance) ({substitute(m.group(1))})", fleet["at"])
    assert sorted(s["metric"]["instance"] for s in listed) == sorted(fleet["instance"].values())

    (row,) = [p for p in d["panels"] if p["type"] == "row" and p["title"] == "Replicas"]
    panels = [p for p in d["panels"] if p["gridPos"]["y"] > row["gridPos"]["y"]]
    assert len(panels) == 3
    b = fleet["instance"]["replica-b"]
    for p in panels:
        for t in p["targets"]:
            got = query(fleet["prom"], substitute(t["expr"]), fleet["at"])
            assert sorted(s["metric"]["instance"] for s in got) == sorted(fleet["instance"].values()), p[
                "title"
            ]
            got = query(fleet["prom"], on_replica(t["expr"], b), fleet["at"])
            assert [s["metric"]["instance"] for s in got] == [b], p["title"]
    # with one replica selected, no panel of any provisioned dashboard shows the other one
    for file, p, t in provisioned_targets():
        got = query(fleet["prom"], on_replica(t["expr"], b), fleet["at"])
        assert {s["metric"].get("instance", b) for s in got} <= {b}, (file, p["title"], t["refId"])


def provisioned_targets() -> list[tuple[str, dict, dict]]:
    """(dashboard file, panel, target) for every query target of every provisioned dashboard."""
    return [
        (file, p, t)
        for file, d in provisioned_dashboards().items()
        for p in iter_panels(d["panels"])
        for t in p.get("targets") or []
    ]


# what this fleet cannot show: it is driven below its queue bound (every answer a 200), and no
# NVML here; tests/deploy/test_deploy.py's live test and the container test drive 429s
NO_DATA_HERE = re.compile(r'status="429"|\bh2h_rejected_total\b|' + GPU_METRIC.pattern)


@pytest.mark.slow
def test_every_panel_returns_data_for_the_fleet_and_each_replica(fleet: dict) -> None:
    """Every panel of every provisioned dashboard has a finite value with every replica selected
    and with each one alone: a panel naming a metric nobody exports fails here."""
    checked = 0
    for file, p, t in provisioned_targets():
        if NO_DATA_HERE.search(t["expr"]):
            continue
        for instance in (None, *fleet["instance"].values()):
            got = query(fleet["prom"], on_replica(t["expr"], instance), fleet["at"])
            assert any(math.isfinite(s["value"]) for s in got), (file, p["title"], t["refId"], instance, got)
        checked += 1
    assert checked >= 30, checked
