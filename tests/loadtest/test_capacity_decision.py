"""The which-model verdict tested as a decision: a seeded noisy fake server whose true capacities
are set, the interleaved rounds and their stability rule, the SHA/MHA interval over paired
rounds, and the one rule (loadtest.report.decide) over many seeds."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from contract.results import CapacityResults, CapacityRow, RoundRow, SweepRow
from loadtest.capacity.rounds import (
    Round,
    StabilityRule,
    capacity_ratio,
    interleaved,
    near_ceiling,
    next_spec,
)
from loadtest.capacity.runner import ratios
from loadtest.capacity.search import Probe, SearchResult, SearchSpec, search, steady
from loadtest.report.decide import decide

MODELS = {"mha": ("mha-x", 4, 4), "sha": ("sha-x", 16, 1)}
SEEDS = range(200)


def noisy_server(capacity: float, rng: np.random.Generator, sigma: float = 0.1, busy: float = 0.05):
    """A probe passes when its rate is within this window's capacity: the true one times
    lognormal noise (sigma), and 0.6x in a 'busy second' (probability `busy` per window)."""

    def probe(rate: float) -> Probe:
        now = capacity * math.exp(rng.normal(0.0, sigma)) * (0.6 if rng.random() < busy else 1.0)
        ok = rate <= now
        return Probe(rate, ok, "ok" if ok else "p99 too high", p99_ms=10.0 if ok else 500.0)

    return probe


def measured(true: dict[str, float], seed: int, rule: StabilityRule | None = None, **noise: float):
    """Every model's rounds against its noisy fake, searched as the runner searches."""
    rng = np.random.default_rng(seed)
    servers = {a: steady(noisy_server(c, rng, **noise)) for a, c in true.items()}
    found: dict[str, list[SearchResult]] = {a: [] for a in true}

    def measure(arch: str, r: int) -> Round:
        first = SearchSpec(
            50.0, start_rate=0.5 * true[arch] * math.exp(rng.normal(0, 0.2)), max_probes=6, tolerance=0.1
        )
        res = search(servers[arch], next_spec(first, found[arch][-1] if found[arch] else None))
        found[arch].append(res)
        return Round(
            res.capacity_rps, res.failed_above.rate if res.failed_above else None, None, len(res.probes)
        )

    return interleaved(list(true), measure, rule or StabilityRule())


def as_results(got: dict[str, list[Round]]) -> CapacityResults:
    rows, rounds = [], []
    for arch, rs in got.items():
        model, layers, heads = MODELS[arch]
        mid = sorted(rs, key=lambda x: x.capacity)[(len(rs) - 1) // 2]
        caps = [x.capacity for x in rs]
        rows.append(
            CapacityRow(
                model=model,
                arch=arch,
                layers=layers,
                heads=heads,
                batch=1,
                seq=16,
                slo_p99_ms=50.0,
                max_error_rate=0.001,
                capacity_rps=statistics.median(caps),
                capacity_rows_per_s=statistics.median(caps),
                failed_above_rps=mid.failed_above,
                rounds=len(rs),
                capacity_lo_rps=min(caps),
                capacity_hi_rps=max(caps),
                probes=sum(x.windows for x in rs),
            )
        )
        rounds += [
            RoundRow(
                model=model,
                batch=1,
                seq=16,
                round=i,
                capacity_rps=x.capacity,
                failed_above_rps=x.failed_above,
            )
            for i, x in enumerate(rs)
        ]
    return CapacityResults(rows=rows, ratios=ratios(rows, rounds), rounds=rounds)


@pytest.mark.parametrize("costlier", ["sha", "mha"])
def test_never_names_the_model_with_30_percent_less_capacity(costlier: str) -> None:
    other = "mha" if costlier == "sha" else "sha"
    named = {}
    for seed in SEEDS:
        v = decide(as_results(measured({costlier: 1000.0, other: 1300.0}, seed)), [], {})
        assert v is not None and v.model != MODELS[costlier][0], (seed, v.sentence)
        named[seed] = v.model
    # and the rule is not mute: at 30% it names the model with more capacity in 89 of these 200
    # runs (the rest say no difference beyond noise), at 2x in every one
    assert sum(m == MODELS[other][0] for m in named.values()) >= 0.4 * len(SEEDS)
    for seed in range(50):
        v = decide(as_results(measured({costlier: 1000.0, other: 2000.0}, seed)), [], {})
        assert v is not None and v.model == MODELS[other][0] and v.signal == "capacity", (seed, v.sentence)


def test_names_no_winner_on_capacity_when_the_capacities_are_equal() -> None:
    for seed in SEEDS:
        v = decide(as_results(measured({"mha": 1000.0, "sha": 1000.0}, seed)), [], {})
        assert v is not None and v.signal != "capacity" and v.model is None, (seed, v.sentence)
        assert v.sentence.startswith("Either: no difference beyond noise in capacity")
        assert "What would settle it: longer probes or more rounds" in v.sentence


def test_the_stability_rule_stops_within_its_bound() -> None:
    rule = StabilityRule(within=0.15, agree=2, min_rounds=2, max_rounds=4)
    used = []
    for seed in SEEDS:
        got = measured({"mha": 1000.0, "sha": 700.0}, seed, rule, sigma=0.25, busy=0.2)
        n = {len(rs) for rs in got.values()}
        assert len(n) == 1 and rule.min_rounds <= n.pop() <= rule.max_rounds
        used.append(len(got["mha"]))
    assert min(used) == 2 and max(used) == 4  # quiet runs stop at two rounds, noisy ones at the bound
    # a quiet server settles in the fewest rounds the rule allows
    assert all(len(measured({"mha": 1000.0}, s, rule, sigma=0.0, busy=0.0)["mha"]) == 2 for s in range(5))


def test_settled_and_the_ratio_interval() -> None:
    rule = StabilityRule(within=0.1, agree=2, min_rounds=2, max_rounds=5)
    assert not rule.settled([100.0])
    assert rule.settled([100.0, 108.0]) and not rule.settled([100.0, 115.0])
    assert rule.settled([50.0, 100.0, 105.0])  # only the last `agree` count
    assert rule.settled([0.0, 0.0]) and rule.settled([None, None])
    sha = [Round(800.0, 880.0), Round(720.0, 790.0)]
    mha = [Round(1000.0, 1100.0), Round(1000.0, 1100.0)]
    iv = capacity_ratio(sha, mha)
    assert iv is not None and iv.n == 2 and iv.value == pytest.approx(0.76)
    assert iv.lo == pytest.approx(720 / 1100) and iv.hi == pytest.approx(880 / 1000) and iv.beyond_noise
    assert iv.words() == "0.76x [0.65, 0.88] over 2 paired rounds"
    # a lower bound (no probe failed) leaves the interval open above: not beyond noise from below
    open_ = capacity_ratio([Round(900.0, None), Round(900.0, None)], mha)
    assert open_ is not None and math.isinf(open_.hi) and not open_.beyond_noise
    # one paired round never counts as beyond noise
    assert not capacity_ratio(sha[:1], mha[:1]).beyond_noise  # type: ignore[union-attr]
    assert near_ceiling([Round(1000.0, 1100.0)], [Round(1150.0, 1250.0)], 0.15)
    assert not near_ceiling([Round(500.0, 550.0)], [Round(1150.0, 1250.0)], 0.15)


def _inproc(model: str, arch: str, p50: float, spread: float = 0.05) -> SweepRow:
    layers, heads = (4, 4) if arch == "mha" else (16, 1)
    return SweepRow(
        model=model,
        arch=arch,
        layers=layers,
        heads=heads,
        batch=1,
        seq=16,
        mode="inproc",
        load="inproc",
        p50_ms=p50,
        blocks=3,
        p50_lo_ms=p50 * (1 - spread),
        p50_hi_ms=p50 * (1 + spread),
    )


def test_model_cost_decides_when_capacity_is_within_noise() -> None:
    cap = as_results(measured({"mha": 1000.0, "sha": 1000.0}, 1))
    costlier_sha = [_inproc("mha-x", "mha", 1.0), _inproc("sha-x", "sha", 1.5)]
    v = decide(cap, costlier_sha, {})
    assert v is not None and v.model == "mha-x" and v.signal == "model cost"
    assert v.sentence.startswith(
        "Serve mha-x, decided by model cost: the capacities do not differ beyond noise"
    )
    assert "SHA's in-process p50 is 1.50x MHA's at batch 1 x seq 16, blocks 1.36-1.66x" in v.sentence
    # overlapping blocks: no cost signal either
    close = [_inproc("mha-x", "mha", 1.0), _inproc("sha-x", "sha", 1.02)]
    assert decide(cap, close, {}).model is None  # type: ignore[union-attr]


def test_capacity_that_contradicts_the_model_cost_is_taken_as_noise() -> None:
    """SHA 'carrying more traffic' while its own in-process p50 is higher beyond noise: a busy
    second, not a finding. The verdict falls to the cost and says why."""
    cap = as_results(measured({"mha": 1000.0, "sha": 1500.0}, 3, sigma=0.0, busy=0.0))
    v = decide(cap, [_inproc("mha-x", "mha", 1.0), _inproc("sha-x", "sha", 1.5)], {})
    assert v is not None and v.model == "mha-x" and v.signal == "model cost"
    assert "the gap contradicts the in-process cost, so it is taken as noise" in v.sentence


def test_accuracy_decides_last_and_turns_a_cost_win_into_a_trade_off() -> None:
    cap = as_results(measured({"mha": 1000.0, "sha": 1000.0}, 2))
    acc = {
        "mha-x": {"test_accuracy": 0.70, "test_examples": 10_000},
        "sha-x": {"test_accuracy": 0.80, "test_examples": 10_000},
    }
    v = decide(cap, [], acc)
    assert v is not None and v.model == "sha-x" and v.signal == "accuracy"
    traded = decide(cap, [_inproc("mha-x", "mha", 1.0), _inproc("sha-x", "sha", 1.5)], acc)
    assert traded is not None and traded.signal == "trade-off" and traded.model == "sha-x"
    assert traded.sentence.startswith("Trade-off: mha-x, decided by model cost")


def test_a_probe_repeats_its_window_until_two_agree_then_takes_the_majority() -> None:
    def windows(*passed: bool):
        seq = iter(passed)
        return lambda rate: Probe(rate, next(seq), "ok")

    assert steady(windows(True, True))(10.0).windows == 2
    flip = steady(windows(True, False, False))(10.0)
    assert not flip.passed and flip.windows == 3 and flip.passes == 1
    majority = steady(windows(False, True, True))(10.0)
    assert majority.passed and majority.windows == 3 and majority.passes == 2


def test_the_table_shows_ranges_windows_the_ceiling_and_the_intervals() -> None:
    from loadtest.report.choose import candidates
    from loadtest.report.markdown import which_model_table

    cap = as_results(measured({"mha": 1000.0, "sha": 700.0}, 4, sigma=0.0, busy=0.0))
    for r in cap.rows:
        r.ceiling_rps, r.ceiling_share = 1100.0, r.capacity_rps / 1100.0
        r.set_by_service = r.arch == "mha"
    cap.ceiling = [
        cap.rows[0].model_copy(update={"model": "service ceiling (null engine)", "capacity_rps": 1100.0})
    ]
    table = which_model_table(candidates(cap.rows, [], {}), [(1, 16)], None, cap).splitlines()
    assert table[2].startswith("| mha-x | MHA 4L-4H | – | – | ") and "[" in table[2]
    assert ", 3 rounds, " in table[2] and "of ceiling |" in table[2]
    assert table[4].startswith("| service ceiling (null engine) | no model |")
    assert table[5].startswith("| SHA vs MHA |")
    ratio = cap.ratios[0]
    assert f"{ratio.sha_over_mha:.2f}x [{ratio.sha_over_mha_lo:.2f}, {ratio.sha_over_mha_hi:.2f}]" in table[5]
    v = decide(cap, [], {})
    assert v is not None and v.signal == "capacity" and v.model == "mha-x"
    assert (
        "capacity here is set by the service, not by the model, for mha-x (mha-x at 87%, sha-x at 62% of "
        in v.sentence
    )
