"""Capacity under an SLO: the bounded search against fake servers, the pass/fail judgement,
the "which model to serve" answer and its report section and plot."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from contract.results import CapacityResults, CapacityRow, RoundRow
from loadtest.capacity.runner import ratios
from loadtest.capacity.search import Probe, SearchSpec, judge, search
from loadtest.client.load import LoadResult
from loadtest.client.schedule import ScheduleStats, poisson_offsets
from loadtest.report import choose, study
from loadtest.report.decide import decide
from loadtest.report.markdown import which_model_answer, write_report


def threshold_server(capacity: float):
    """A fake server that meets the SLO exactly up to `capacity` req/s; records the rates probed."""
    seen: list[float] = []

    def probe(rate: float) -> Probe:
        seen.append(rate)
        ok = rate <= capacity
        return Probe(rate, ok, "ok" if ok else "p99 too high", p99_ms=10.0 if ok else 500.0)

    return probe, seen


def test_search_doubles_then_bisects_to_the_tolerance():
    probe, seen = threshold_server(730.0)
    r = search(probe, SearchSpec(slo_p99_ms=50, start_rate=100.0, max_probes=12, tolerance=0.1))
    assert seen[:4] == [100.0, 200.0, 400.0, 800.0]  # coarse doubling until the first failure
    assert all(400.0 < x < 800.0 for x in seen[4:])  # then only inside the bracket
    assert r.status == "bracketed" and r.failed_above is not None
    assert 730.0 / 1.1 <= r.capacity_rps <= 730.0 < r.failed_above.rate <= r.capacity_rps * 1.1
    assert len(r.probes) == len(seen) <= 8  # 4 to bracket + 3 halvings of a factor-2 bracket in log space


def test_search_halves_when_the_start_is_too_high():
    probe, seen = threshold_server(90.0)
    r = search(probe, SearchSpec(slo_p99_ms=50, start_rate=1000.0, max_probes=12, tolerance=0.05))
    assert seen[:5] == [1000.0, 500.0, 250.0, 125.0, 62.5]
    assert r.status == "bracketed" and 90.0 / 1.05 <= r.capacity_rps <= 90.0


def test_search_stops_at_the_probe_budget_with_a_lower_bound():
    probe, seen = threshold_server(1e5)
    r = search(probe, SearchSpec(slo_p99_ms=50, start_rate=10.0, max_probes=4))
    assert seen == [10.0, 20.0, 40.0, 80.0] and r.capacity_rps == 80.0
    assert r.status == "probe budget spent" and r.failed_above is None


def test_search_reports_an_unreachable_slo():
    probe, seen = threshold_server(0.0)
    r = search(probe, SearchSpec(slo_p99_ms=1, start_rate=1.0, max_probes=20, min_rate=0.1))
    assert r.capacity_rps == 0.0 and r.best is None and r.status == "SLO missed at the lowest rate"
    assert seen == [1.0, 0.5, 0.25, 0.125]


def test_search_stops_at_the_max_rate():
    probe, _ = threshold_server(1e9)
    r = search(probe, SearchSpec(slo_p99_ms=50, start_rate=300.0, max_rate=1000.0, max_probes=10))
    assert [p.rate for p in r.probes] == [300.0, 600.0, 1000.0]
    assert r.status == "max rate passed" and r.capacity_rps == 1000.0


def _result(latencies_ms: list[float], errors: Counter | None = None, window: float = 2.0) -> LoadResult:
    n = len(latencies_ms) + sum((errors or Counter()).values())
    return LoadResult([x / 1e3 for x in latencies_ms], errors or Counter(), window, ScheduleStats(n, n), 0.01)


def test_judge_counts_429s_and_p99_from_successes():
    spec = SearchSpec(slo_p99_ms=50, max_error_rate=0.01)
    fast = [5.0] * 990
    assert judge(100, _result(fast), spec, 2.0).passed
    p = judge(100, _result(fast, Counter(http_429=10)), spec, 2.0)  # 10 of 1000 = exactly 1%: allowed
    assert p.passed and p.error_rate == pytest.approx(0.01) and p.goodput_rps == pytest.approx(495.0)
    p = judge(100, _result(fast, Counter(http_429=11)), spec, 2.0)
    assert not p.passed and "errors" in p.reason and p.error_kinds == {"http_429": 11}
    p = judge(100, _result(fast[:-20] + [80.0] * 20), spec, 2.0)  # 2% slow: p99 = 80 ms
    assert not p.passed and p.reason == "p99 80.0 ms > 50 ms"
    assert not judge(100, _result([], Counter(ReadTimeout=3)), spec, 2.0).passed


def queue_server(service_s: float, slo_ms: float, seconds: float = 20.0):
    """A fake FIFO server with a fixed service time, driven by Poisson arrivals: latency is
    measured from each arrival (the intended send time), so queueing shows in the p99."""
    spec = SearchSpec(slo_p99_ms=slo_ms, start_rate=10.0, max_probes=12, tolerance=0.05)

    def probe(rate: float) -> Probe:
        arrivals = poisson_offsets(rate, seconds, seed=7)
        free, lat = 0.0, np.empty(len(arrivals))
        for i, t in enumerate(arrivals):
            free = max(free, t) + service_s
            lat[i] = free - t
        return judge(rate, _result(list(lat * 1e3), window=seconds), spec, seconds)

    return probe, spec


def test_search_on_a_queueing_server_lands_below_saturation():
    probe, spec = queue_server(service_s=0.002, slo_ms=20.0)  # saturates at 500 req/s
    r = search(probe, spec)
    assert r.status == "bracketed"
    assert 300.0 < r.capacity_rps < 500.0  # the p99 explodes before the server saturates
    assert probe(r.capacity_rps).passed and not probe(r.failed_above.rate).passed
    tight = search(*queue_server(service_s=0.002, slo_ms=5.0))
    assert tight.capacity_rps < r.capacity_rps  # a tighter SLO leaves less capacity


def _cap_rows(acc_mha: float | None, acc_sha: float | None, cap_mha: float = 600.0, cap_sha: float = 360.0):
    base = {"slo_p99_ms": 50.0, "max_error_rate": 0.001, "status": "bracketed", "probes": 6}
    models = (
        ("mha-x", "mha", 4, 4, cap_mha, 30.0, 3.0, acc_mha),
        ("sha-x", "sha", 16, 1, cap_sha, 40.0, 5.0, acc_sha),
    )
    rows = []
    for seq, scale in ((16, 1.0), (64, 0.5)):
        for model, arch, layers, heads, cap, p99_ms, p50_ms, acc in models:
            rows.append(
                CapacityRow(
                    **base,
                    model=model,
                    arch=arch,
                    layers=layers,
                    heads=heads,
                    batch=1,
                    seq=seq,
                    capacity_rps=cap * scale,
                    capacity_rows_per_s=cap * scale,
                    p99_ms=p99_ms,
                    failed_above_rps=cap * scale * 1.08,
                    p50_c1_ms=p50_ms * (1 + seq / 64),
                    accuracy=acc,
                )
            )
    return rows


def _results(rows: list[CapacityRow], rounds: int = 3, manifests: dict | None = None) -> CapacityResults:
    """The rows as `rounds` interleaved rounds that agree, each bracketed as the row is."""
    rr = [
        RoundRow(
            model=r.model,
            batch=r.batch,
            seq=r.seq,
            round=i,
            capacity_rps=r.capacity_rps,
            failed_above_rps=r.failed_above_rps,
            p50_c1_ms=r.p50_c1_ms,
        )
        for r in rows
        for i in range(rounds)
    ]
    for r in rows:
        r.rounds, r.capacity_lo_rps, r.capacity_hi_rps = rounds, r.capacity_rps, r.capacity_rps
    meta = {"manifests": manifests or {}}
    return CapacityResults(meta=meta, rows=rows, ratios=ratios(rows, rr), rounds=rr)


def _say(rows: list[CapacityRow], manifests: dict | None = None, **kw) -> str:
    v = decide(_results(rows, manifests=manifests, **kw), [], manifests or {})
    assert v is not None
    return v.sentence


def test_recommendation_when_one_model_wins_both():
    assert _say(_cap_rows(0.7858, 0.7646)) == (
        "Serve mha-x, decided by capacity: it carries 1.67x the traffic of sha-x within p99 <= 50 ms at batch 1 "
        "x seq 16: SHA/MHA 0.60x [0.56, 0.65] over 3 paired rounds; mha-x 600 req/s [600-600] vs sha-x 360 req/s "
        "[360-360]; and it is more accurate beyond noise (test accuracy mha-x 0.7858 vs sha-x 0.7646, "
        "SHA − MHA -2.12 points)."
    )


def test_recommendation_names_the_trade_off_and_picks_accuracy():
    text = _say(_cap_rows(0.7646, 0.7858))
    assert text.startswith("Trade-off: mha-x, decided by capacity: it carries 1.67x the traffic of sha-x")
    assert text.endswith(
        "but sha-x is more accurate beyond noise (test accuracy mha-x 0.7646 vs sha-x 0.7858, SHA − MHA +2.12 "
        "points). Serve sha-x unless replicas rather than accuracy are the binding cost."
    )
    # the more accurate model never meets the SLO: serve the one that does
    slow_fails = _say(_cap_rows(0.7646, 0.7858, cap_sha=0.0))
    assert slow_fails == (
        "Serve mha-x, decided by capacity: sha-x misses p99 <= 50 ms at batch 1 x seq 16 at every rate tried, "
        "while mha-x carries 600 req/s."
    )


def test_accuracy_gap_is_judged_against_test_set_noise():
    """With the test-set size, a 0.55-point gap over 11,700 examples is within noise (95% interval
    +-1.06 points) and a 2-point gap is not; without it, 0.1 point is the line."""
    n = {"mha-x": {"test_examples": 11_700}, "sha-x": {"test_examples": 11_700}}
    same = _say(_cap_rows(0.7861, 0.7806), n)
    assert same.endswith(
        "accuracy does not differ beyond noise (test accuracy mha-x 0.7861 vs sha-x 0.7806, "
        "SHA − MHA -0.55 points, 95% interval [-1.61, +0.51] over 11,700 test examples)."
    )
    gap = choose.accuracy_gap(*choose.candidates(_cap_rows(0.78, 0.80), [], n))
    assert gap is not None and gap.better.model == "sha-x" and gap.beyond_noise
    assert gap.low == pytest.approx(0.02 - 1.96 * ((0.78 * 0.22 + 0.8 * 0.2) / 11_700) ** 0.5, abs=1e-4)
    # the same 0.55 points is "beyond noise" only when the test-set size is unknown
    assert choose.accuracy_gap(*choose.candidates(_cap_rows(0.7861, 0.7806), [], {})).beyond_noise


def test_recommendation_without_accuracy_and_without_capacity():
    text = _say(_cap_rows(None, None))
    assert text.startswith("Serve mha-x, decided by capacity") and text.endswith(
        "no test accuracy is recorded."
    )
    assert _say(_cap_rows(0.7, 0.7, 0.0, 0.0)).startswith("No model meets p99 <= 50 ms")
    # accuracy from the manifests when the capacity rows carry none
    m = {"mha-x": {"test_accuracy": 0.8}, "sha-x": {"test_accuracy": 0.8}}
    assert "accuracy does not differ beyond noise (test accuracy mha-x 0.8000 vs sha-x 0.8000" in _say(
        _cap_rows(None, None), m
    )
    # one round: no interval, so capacity decides nothing, and nothing else differs
    one = _say(_cap_rows(0.8, 0.8), rounds=1)
    assert one.startswith("Either: no difference beyond noise in capacity") and "over 1 paired round" in one


def test_recommendation_flags_lower_bounds():
    rows = _cap_rows(0.7858, 0.7646)
    rows[0].failed_above_rps = None  # mha-x b1 s16: every probe passed
    text = _say(rows)
    assert text.endswith("(mha-x: lower bound, every probe passed; raise --max-probes for the limit.)")


def test_capacity_ratios_per_shape():
    r = ratios(_cap_rows(0.78, 0.76))
    assert [(x.seq, round(x.sha_over_mha or 0, 3)) for x in r] == [(16, 0.6), (64, 0.6)]


def test_which_model_section_and_plot_in_the_report(tmp_path, monkeypatch):
    monkeypatch.setattr(study, "STUDY_PATH", tmp_path / "no-study.json")  # the seeded column: below
    rows = _cap_rows(0.7858, 0.7646)
    meta = {"machine": {"cpu": "test cpu", "cores": 2, "gpus": []}, "manifests": {}, "notes": []}
    (tmp_path / "capacity.json").write_text(
        CapacityResults(meta=meta, rows=rows, ratios=ratios(rows)).model_dump_json()
    )
    md = write_report(tmp_path).read_text()
    assert "## Which model to serve" in md and "Serve mha-x, decided by accuracy: it is more accurate" in md
    assert "| mha-x | MHA 4L-4H | 0.7858 | 3.75 | 600, 1 round, 6 windows | 300, 1 round, 6 windows |" in md
    assert "| SHA vs MHA | – | SHA − MHA -2.12 points | 1.67x | 0.60x | 0.60x |" in md
    assert "## Verdict" not in md  # no sweep in this folder
    assert "![Accuracy vs capacity](accuracy_vs_capacity.png)" in md
    png = (tmp_path / "accuracy_vs_capacity.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and not list(tmp_path.glob(".*.tmp"))
    # without accuracy there is no plot, and the report says why
    (tmp_path / "accuracy_vs_capacity.png").unlink()
    rows = _cap_rows(None, None)
    (tmp_path / "capacity.json").write_text(
        CapacityResults(meta=meta, rows=rows, ratios=ratios(rows)).model_dump_json()
    )
    md = write_report(tmp_path).read_text()
    assert (
        "no model has a recorded test accuracy" in md and not (tmp_path / "accuracy_vs_capacity.png").exists()
    )


def _study_records(tests: dict[str, list[float]], epochs: int = 4) -> list[dict]:
    """Seeded-study records (contract.accuracy's format), one per seed, at one budget."""
    return [
        {
            "variant": v,
            "seed": seed,
            "lr": 2e-3,
            "epochs": epochs,
            "preset": "small",
            "data_sha256": "abc",
            "test_accuracy": t,
            "val_accuracy": t + 0.01,
            "val_curve": [t + 0.01],
            "epoch_train_s": [10.0],
            "layers": 4 if v.startswith("mha") else 16,  # the served pair's sizes (mha-x 4L-4H, sha-x 16L-1H)
            "heads": 4 if v.startswith("mha") else 1,
        }
        for v, ts in tests.items()
        for seed, t in enumerate(ts, start=1)
    ]


def test_the_answer_shows_the_seeded_study_beside_the_served_models(tmp_path, monkeypatch):
    """Each served model's own accuracy and its architecture's seeded figure, labelled apart, and
    every gap as SHA − MHA (the served pair's and the study's)."""
    path = tmp_path / "accuracy.json"
    path.write_text(
        json.dumps(_study_records({"mha-admin": [0.80, 0.81, 0.79], "sha-admin": [0.79, 0.80, 0.78]}))
    )
    monkeypatch.setattr(study, "STUDY_PATH", path)
    rows = _cap_rows(0.7858, 0.7646)
    manifests = {m: {"norm": "admin", "test_examples": 11_700} for m in ("mha-x", "sha-x")}
    table, sentence = which_model_answer(CapacityResults(rows=rows), [], manifests)
    lines = table.splitlines()
    assert lines[0].startswith(
        "| model | layers x heads | test acc, this model | test acc, seeded study | p50"
    )
    assert lines[2].startswith("| mha-x | MHA 4L-4H | 0.7858 | 0.8000 ± 0.0100 (small, 4 epochs, 3 seeds) |")
    assert lines[3].startswith("| sha-x | SHA 16L-1H | 0.7646 | 0.7900 ± 0.0100 (small, 4 epochs, 3 seeds) |")
    assert lines[4].startswith(
        "| SHA vs MHA | – | SHA − MHA -2.12 points | SHA − MHA -1.00 points [-3.27, +1.27] |"
    )
    # the verdict weighs the study's accuracy, not the served short runs' own
    assert sentence.startswith("Either: no difference beyond noise in capacity")
    assert (
        "accuracy (seeded study, 4 and 4 epochs, 3 and 3 seeds: SHA − MHA -1.00 points, 95% interval"
        in sentence
    )
    assert "In the seeded study" not in sentence  # the verdict already names it: said once
    # a pre-LN model is not the study's admin variant, and a study too thin to choose a budget adds nothing
    assert (
        "| sha-x | SHA 16L-1H | 0.7646 | – |"
        in which_model_answer(CapacityResults(rows=rows), [], {"sha-x": {"norm": "pre"}})[0]
    )
    path.write_text(json.dumps(_study_records({"mha-admin": [0.8], "sha-admin": [0.79]})))
    table, sentence = which_model_answer(CapacityResults(rows=rows), [], manifests)
    assert "seeded study" not in table and "seeded study" not in sentence


def test_a_broken_study_file_is_logged_and_left_out(tmp_path, caplog):
    bad = tmp_path / "accuracy.json"
    bad.write_text("{")
    assert study.load_study(bad) is None
    assert "no seeded study beside the answer" in caplog.text and "not valid JSON" in caplog.text
    assert study.load_study(tmp_path / "missing.json") is None  # an image without docs/: nothing to say
