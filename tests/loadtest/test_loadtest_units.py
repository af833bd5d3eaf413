"""Load tester, pure parts: grid parsing, open-loop scheduler, stats, /metrics diff, report."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from test_loadtest_client import FakeClock

from contract.results import ResultMeta, SweepRow, load, summarize, write
from loadtest.client import promscrape
from loadtest.client.schedule import MonotonicClock, poisson_offsets, run_open_loop
from loadtest.report import analysis
from loadtest.report.markdown import build, verdict, write_report
from loadtest.sweep.grid import GridError, parse_list
from tests.loadtest.conftest import inproc_pair_rows


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("1,2,4", [1, 2, 4]),
        ("1..64", [1, 2, 4, 8, 16, 32, 64]),
        ("16,32,...,512", [16, 32, 64, 128, 256, 512]),
        ("1,2,4,...,64", [1, 2, 4, 8, 16, 32, 64]),
        ("100,200,...,500", [100, 200, 300, 400, 500]),
        ("4,1,4", [1, 4]),
    ],
)
def test_parse_list(text, want):
    assert parse_list(text) == want


@pytest.mark.parametrize("bad", ["", "a", "0", "-1", "1,3,...,8", "1,...,4", "64..1"])
def test_parse_list_rejects(bad):
    with pytest.raises(GridError):
        parse_list(bad)


def test_poisson_offsets_rate_and_shape():
    off = poisson_offsets(200.0, 20.0, seed=3)
    assert np.all(np.diff(off) > 0) and off[0] >= 0 and off[-1] < 20.0
    assert len(off) / 20.0 == pytest.approx(200.0, rel=0.05)
    gaps = np.diff(off)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.1)  # exponential gaps: CV = 1


def test_open_loop_keeps_rate_on_schedule():
    clock, sent = FakeClock(), []
    off = poisson_offsets(100.0, 10.0, seed=1)
    st = asyncio.run(run_open_loop(off, lambda t: sent.append((t, clock.now())), clock))
    assert st.sent == len(off) == len(sent)
    assert st.late == 0 and st.max_lag_s == 0
    assert [round(t - 100.0, 9) for t, _ in sent] == [round(float(o), 9) for o in off]
    assert st.achieved_rate(10.0) == pytest.approx(100.0, rel=0.1)


def test_open_loop_counts_late_sends_and_does_not_slow_down():
    clock, sent = FakeClock(), []
    off = np.arange(100) * 0.01  # 100/s, evenly spaced
    clock.stalls = {10: 0.050}  # the 10th sleep overshoots by 50 ms (a stalled event loop)
    st = asyncio.run(run_open_loop(off, lambda t: sent.append((t, clock.now())), clock, late_after=0.002))
    assert st.sent == 100
    # the stalled send and the ones that were due during the stall go out late, back to back ...
    assert 4 <= st.late <= 6
    assert st.max_lag_s == pytest.approx(0.050, abs=1e-9)
    # ... and intended times never move: the schedule does not stretch to hide the stall
    assert sent[-1][0] - 100.0 == pytest.approx(0.99)
    lags = [now - t for t, now in sent]
    assert sum(lag > 0.002 for lag in lags) == st.late


def test_open_loop_real_clock_never_sends_early_and_keeps_its_schedule():
    """On the real clock: every send at or after its intended time, the intended times exactly
    the schedule's (late sends do not shift later ones), each lag counted as measured here. How
    late sends are depends on the machine's load, so it bounds nothing here: the FakeClock tests
    above pin lateness exactly, and the load tester reports it with every run."""
    clock = MonotonicClock()
    off = poisson_offsets(300.0, 1.0, seed=2)
    seen: list[tuple[float, float]] = []
    st = asyncio.run(run_open_loop(off, lambda t: seen.append((t, clock.now())), clock))
    assert st.sent == len(off) == len(seen)
    assert [t - st.start for t, _ in seen] == pytest.approx(list(off), abs=1e-9)
    lags = [now - t for t, now in seen]
    assert min(lags) >= 0  # never early
    assert all(0 <= counted <= lag for counted, lag in zip(st.lags, lags, strict=True))
    assert st.late == sum(lag > 0.002 for lag in st.lags) and st.max_lag_s == max(st.lags)
    assert st.achieved_rate(1.0) == len(off)  # every planned send went out within its window


def test_summarize():
    s = summarize([0.001 * i for i in range(1, 101)])
    assert s["count"] == 100 and s["p50_ms"] == pytest.approx(50.5) and s["p99_ms"] == pytest.approx(99.01)
    assert summarize([])["p50_ms"] is None


METRICS_BEFORE = """# TYPE h2h_queue_wait_seconds histogram
h2h_queue_wait_seconds_bucket{le="+Inf",model="m"} 10.0
h2h_queue_wait_seconds_count{model="m"} 10.0
h2h_queue_wait_seconds_sum{model="m"} 0.01
h2h_queue_wait_seconds_count{model="other"} 99.0
h2h_queue_wait_seconds_sum{model="other"} 9.0
# TYPE h2h_compute_seconds histogram
h2h_compute_seconds_count{model="m"} 5.0
h2h_compute_seconds_sum{model="m"} 0.05
# TYPE h2h_batch_size histogram
h2h_batch_size_count{model="m"} 5.0
h2h_batch_size_sum{model="m"} 10.0
"""


def test_promscrape_diff():
    after = (
        METRICS_BEFORE.replace('_count{model="m"} 10.0', '_count{model="m"} 30.0')
        .replace('_sum{model="m"} 0.01', '_sum{model="m"} 0.05')
        .replace('h2h_compute_seconds_count{model="m"} 5.0', 'h2h_compute_seconds_count{model="m"} 15.0')
        .replace('h2h_compute_seconds_sum{model="m"} 0.05', 'h2h_compute_seconds_sum{model="m"} 0.25')
        .replace('h2h_batch_size_count{model="m"} 5.0', 'h2h_batch_size_count{model="m"} 15.0')
        .replace('h2h_batch_size_sum{model="m"} 10.0', 'h2h_batch_size_sum{model="m"} 50.0')
    )
    d = promscrape.diff(promscrape.parse(METRICS_BEFORE, "m"), promscrape.parse(after, "m"))
    assert d["server_queue_ms"] == pytest.approx(2.0)  # 40 ms over 20 requests
    assert d["server_compute_ms"] == pytest.approx(20.0)  # 200 ms over 10 batches
    assert d["server_batches"] == 10 and d["server_rows_per_batch"] == pytest.approx(4.0)


def _fixture_points() -> list[SweepRow]:
    """MHA 2L-4H vs SHA 8L-1H: SHA cheaper from batch 16 at seq 16 and from batch 4 at seq 64."""
    grid = {
        (1, 16): 1.6,
        (4, 16): 1.3,
        (16, 16): 0.9,
        (64, 16): 0.8,
        (1, 64): 1.2,
        (4, 64): 0.95,
        (16, 64): 0.7,
        (64, 64): 0.6,
    }
    rows = []
    for row in inproc_pair_rows(
        grid, lambda b, q: 0.5 + 0.01 * b * q, (("mha-x", "mha", 2, 4), ("sha-x", "sha", 8, 1))
    ):
        ms, b, q = row.p50_ms or 0.0, row.batch, row.seq
        row = row.model_copy(
            update={
                "p95_ms": ms * 1.1,
                "p99_ms": ms * 1.2,
                "requests": 50,
                "rps": 1e3 / ms,
                "tokens_per_s": 1e3 / ms * b * q,
            }
        )
        rows.append(row)
        if b in (1, 16):
            h = ms + 3.0
            rows.append(
                row.model_copy(
                    update={
                        "mode": "http",
                        "load": "closed",
                        "p50_ms": h,
                        "p95_ms": h,
                        "p99_ms": h,
                        "rps": 1e3 / h,
                        "tokens_per_s": 1e3 / h * b * q,
                        "server_queue_ms": 2.0,
                    }
                )
            )
    return rows


def test_report_names_the_crossover(tmp_path):
    points = _fixture_points()
    g = analysis.ratio_grid(points)
    c = analysis.crossover(g)
    assert c.per_seq == {16: 16, 64: 4}
    assert c.min_tokens == 256 and c.best[0] == (64, 64)
    text = verdict(points)
    assert "Crossover" in text and "seq 16 from batch 16" in text and "seq 64 from batch 4" in text
    assert "0.60x" in text and "40% cheaper" in text and "adds 3.00 ms" in text
    write(tmp_path, {"machine": {"cpu": "test cpu", "cores": 2, "gpus": []}, "notes": []}, points)
    assert json.loads((tmp_path / "results.json").read_text())["points"][0]["model"] == "mha-x"
    path = write_report(tmp_path)
    md = path.read_text()
    assert "## Verdict" in md and "seq 64 from batch 4" in md and "**0.60**" in md
    for png in ("latency_vs_batch.png", "ratio_heatmap.png", "throughput_vs_concurrency.png", "overhead.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({png})" in md
    assert load(tmp_path).points == points


def test_report_without_crossover():
    points = [p for p in _fixture_points() if p.batch == 1]
    assert "no crossover" in verdict(points)
    assert "# Load test" in build(points, ResultMeta(), [])


@pytest.mark.parametrize("command", ["sweep", "capacity"])
def test_help_states_the_settings_defaults(command):
    """Every "(default X)" in a flag's help is the settings class's own default, so the help
    cannot drift from what a run uses (the --repeats help once said 1000 of a default of 50)."""
    from loadtest.capacity.runner import CapacitySettings
    from loadtest.cli import build_parser
    from loadtest.settings import LoadtestSettings

    settings = {"sweep": LoadtestSettings, "capacity": CapacitySettings}[command]
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    checked = 0
    for action in sub._actions:
        field = settings.model_fields.get(action.dest)
        if field is None or "(default " not in (action.help or "") or "(default: " in action.help:
            continue
        value = field.default
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        assert f"(default {shown})" in action.help or f"(default {shown};" in action.help, action.help
        checked += 1
    assert checked >= 8


@pytest.mark.parametrize(
    "bad", ["https://127.0.0.1:8000", "127.0.0.1:8000", "http://", "ftp://x", "http://h:99999"]
)
def test_every_loadtest_program_refuses_the_same_urls(bad: str) -> None:
    """One rule for the sweep, the capacity search and the wire client: plain http:// with a host
    (the client has no TLS, so https would only fail at the first request)."""
    from pydantic import ValidationError

    from loadtest.capacity.runner import CapacitySettings
    from loadtest.client.wire import request_bytes
    from loadtest.settings import LoadtestSettings

    for settings in (LoadtestSettings, CapacitySettings):
        with pytest.raises(ValidationError, match="http://host"):
            settings(url=bad)
    with pytest.raises(ValueError, match="http"):
        request_bytes(bad + "/v1/x", b"{}")


def test_a_good_url_loses_its_trailing_slash_everywhere() -> None:
    from loadtest.capacity.runner import CapacitySettings
    from loadtest.settings import LoadtestSettings

    assert LoadtestSettings(url="http://10.0.0.5:9000/").url == "http://10.0.0.5:9000"
    assert CapacitySettings(url="http://localhost:8000/").url == "http://localhost:8000"
