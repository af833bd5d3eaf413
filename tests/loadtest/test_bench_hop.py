"""The hop benchmark measures both transports end to end: each answers every round trip and
reports positive times and CPU per round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.bench import hop


@pytest.mark.parametrize("kind", hop.KINDS)
def test_each_transport_round_trips(kind: str, tmp_path: Path) -> None:
    out = hop.measure(kind, [1, 4], 200, tmp_path)
    assert set(out) == {"c1", "c4"}
    assert all(c["us_per_round_trip"] > 0 and c["client_cpu_us"] >= 0 for c in out.values())
