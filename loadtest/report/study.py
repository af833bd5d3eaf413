"""The seeded study's accuracy (docs/accuracy.json) beside the models a report compares.

The models a load report or `make demo` serves are single short runs (the demo trains 2
epochs); the study trains each architecture with several seeds at several budgets and picks
each one's budget by validation accuracy (contract.accuracy). Both are shown, labelled apart,
and every difference reads SHA − MHA.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from contract.accuracy import Claim, RecordsError, Side, chosen_sides, load_records, study_claim

STUDY_PATH = Path(__file__).resolve().parents[2] / "docs" / "accuracy.json"
HEADER = "test acc, seeded study"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Study:
    sides: dict[str, Side]  # variant (e.g. mha-admin) -> its runs at its chosen budget
    claim: Claim | None

    def cell(self, arch: str, norm: str | None) -> str | None:
        """'0.7978 ± 0.0023 (small, 4 epochs, 5 seeds)' for the architecture, None when not studied."""
        side = self.sides.get(f"{arch}-{norm}")
        if side is None:
            return None
        m, _, rest = side.words().partition(" (")
        return f"{m} ({side.runs[0].get('preset')}, {rest}"

    def diff_cell(self) -> str | None:
        """'SHA − MHA -0.30 points [-0.78, +0.18]'"""
        if self.claim is None:
            return None
        return self.claim.words().replace(", 95% interval", "")

    def sentence(self) -> str:
        """One sentence: the study's converged gap, and that the table's own models are short runs."""
        c = self.claim
        if c is None:
            return ""
        return (
            f"In the seeded study (docs/accuracy.json, preset {c.mha.runs[0].get('preset')}, each "
            f"architecture at the training budget its validation accuracy picks: {c.mha.variant} "
            f"{c.mha.epochs} epochs, {c.sha.variant} {c.sha.epochs} epochs, {len(c.mha.runs)} and "
            f"{len(c.sha.runs)} seeds), test accuracy {c.words()}; the models served here are single "
            f"short runs, so their own accuracy says less."
        )


def load_study(path: Path | None = None) -> Study | None:
    """The study from the records file (default: the repository's docs/accuracy.json); None when
    there is none (an image without docs/)."""
    try:
        records = load_records(path or STUDY_PATH)
    except RecordsError as exc:
        log.warning("no seeded study beside the answer: %s", exc)
        return None
    sides = chosen_sides(records)
    return Study(sides, study_claim(records)) if sides else None
