"""Student's t and Welch's interval from the standard library, against published values."""

from __future__ import annotations

import math
import statistics

import pytest

from contract.stats import betainc, mean_std, t_cdf, t_ppf, welch_interval


@pytest.mark.parametrize(
    ("df", "quantile"),
    # two-sided 95% critical values from any t table
    [(1, 12.7062), (2, 4.3027), (3, 3.1824), (4, 2.7764), (10, 2.2281), (30, 2.0423), (1000, 1.9623)],
)
def test_t_quantiles_match_the_table(df: float, quantile: float) -> None:
    assert t_ppf(0.975, df) == pytest.approx(quantile, abs=1e-4)


def test_t_cdf_and_incomplete_beta_known_values() -> None:
    assert betainc(2, 3, 0.4) == pytest.approx(0.5248, abs=1e-12)  # 1 - sum_{k<2} C(4,k) .4^k .6^(4-k)
    assert t_cdf(0.0, 7) == pytest.approx(0.5)
    assert t_cdf(-2.0, 5) == pytest.approx(0.0509697, abs=1e-6)
    assert t_cdf(2.0, 5) + t_cdf(-2.0, 5) == pytest.approx(1.0)
    assert t_ppf(0.975, math.inf) == pytest.approx(1.959964, abs=1e-6)
    with pytest.raises(ValueError):
        t_ppf(0.3, 4)


def test_welch_interval_by_hand() -> None:
    a, b = [0.78, 0.79, 0.80], [0.77, 0.79, 0.785]
    iv = welch_interval(a, b)
    assert iv is not None
    va, vb = statistics.variance(a) / 3, statistics.variance(b) / 3
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)
    half = t_ppf(0.975, df) * math.sqrt(va + vb)
    assert iv.diff == pytest.approx(statistics.fmean(b) - statistics.fmean(a))
    assert (iv.low, iv.high, iv.df) == pytest.approx((iv.diff - half, iv.diff + half, df))
    assert iv.df == pytest.approx(3.99, abs=0.01) and iv.low < 0 < iv.high


def test_welch_interval_edge_cases() -> None:
    assert welch_interval([0.8], [0.7, 0.71]) is None  # one seed has no variance estimate
    same = welch_interval([0.8, 0.8], [0.7, 0.7])
    assert same is not None and same.low == same.high == pytest.approx(-0.1)
    clear = welch_interval([0.70, 0.71, 0.69, 0.70], [0.80, 0.81, 0.79, 0.80])
    assert clear is not None and clear.low > 0.08
    assert mean_std([0.5]) == (0.5, 0.0)
    assert mean_std([1.0, 3.0]) == pytest.approx((2.0, math.sqrt(2.0)))
