"""Parse the grid flags and hold the presets.

List syntax (ints or floats):
  "1,2,4"            exactly these
  "1..64"            doubling from the first to the last: 1,2,4,...,64
  "16,32,...,512"    continue the first two terms' pattern up to the last term: geometric
                     (x2 here) when that lands on the last term, else arithmetic
                     ("100,200,...,500" is +100); anything else is an error
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MAX_LIST = 64
# the syntax above in one line, for the help of every flag that takes a list
GRID_HELP = "comma list '1,2,4', doubling range '1..64', or pattern '16,32,...,512'"


class GridError(ValueError):
    """A malformed grid flag; the message is one line meant for the user."""


def _num(tok: str, kind: type) -> float:
    try:
        v = kind(tok)
    except ValueError:
        raise GridError(f"{tok!r} is not a{'n integer' if kind is int else ' number'}") from None
    if v <= 0:
        raise GridError(f"{tok!r} must be positive")
    return v


def _expand(a: float, b: float, last: float, kind: type, geometric: bool) -> list | None:
    out, x = [a], a
    while True:
        x = x * (b / a) if geometric else x + (b - a)
        if x > last * (1 + 1e-9):
            break
        out.append(kind(round(x, 9)))
        if len(out) > MAX_LIST:
            raise GridError(f"'{a},{b},...,{last}' expands to more than {MAX_LIST} values")
    return out if math.isclose(out[-1], last) else None


def _continue(a: float, b: float, last: float, kind: type) -> list:
    """a, b, ..., last: geometric when that reaches `last` exactly, else arithmetic."""
    if b <= a:
        raise GridError(f"'{a},{b},...' must increase")
    for geometric in (True, False):
        out = _expand(a, b, last, kind, geometric)
        if out is not None:
            return out
    raise GridError(f"'{a},{b},...,{last}' does not land on {last} (x{b / a:g} or +{b - a:g})")


def parse_list(text: str, kind: type = int) -> list:
    """Sorted, de-duplicated values from the CLI syntax above; GridError on bad input."""
    text = text.strip().replace(" ", "")
    if not text:
        raise GridError("empty list")
    if ".." in text and "..." not in text:
        lo_s, _, hi_s = text.partition("..")
        lo, hi = _num(lo_s, kind), _num(hi_s, kind)
        if hi < lo:
            raise GridError(f"{text!r}: end is below start")
        out, x = [], lo
        while x <= hi * (1 + 1e-9):
            out.append(kind(x))
            x *= 2
            if len(out) > MAX_LIST:
                raise GridError(f"{text!r} expands to more than {MAX_LIST} values")
        return out
    toks = text.split(",")
    if "..." in toks:
        i = toks.index("...")
        if i < 2 or i != len(toks) - 2 or toks.count("...") > 1:
            raise GridError(f"{text!r}: write 'a,b,...,z' (two terms, '...', the last term)")
        head = [_num(t, kind) for t in toks[:i]]
        last = _num(toks[-1], kind)
        seq = _continue(head[-2], head[-1], last, kind)
        vals = head[:-2] + seq
    else:
        vals = [_num(t, kind) for t in toks]
    return sorted(set(vals))


def parse_names(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise GridError("no model names given")
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class Preset:
    models: list[str]
    batch: list[int]
    seq: list[int]
    concurrency: list[int]
    rates: list[float] = field(default_factory=list)
    mode: str = "both"
    duration: float = 3.0
    # smaller grid used when the in-process provider is the CPU (a GPU grid would take hours)
    cpu_batch: list[int] | None = None
    cpu_seq: list[int] | None = None
    http_batch: list[int] | None = None  # http subset (defaults to `batch`)
    http_seq: list[int] | None = None


PRESETS: dict[str, Preset] = {
    # `python -m loadtest sweep`: about 1-2 minutes with the small models on 2 CPU cores.
    "default": Preset(
        models=["mha", "sha"],
        batch=[1, 4, 16, 32],
        seq=[16, 64],
        concurrency=[1, 8],
        rates=[],
        mode="both",
        duration=2.0,
        http_batch=[1, 16],
    ),
    # The paper's pair (BERT-base size, random init): 12L-12H vs 144L-1H.
    "paper": Preset(
        models=["mha-base-random", "sha-base-random"],
        batch=[1, 2, 4, 8, 16, 32, 64],
        seq=[16, 32, 64, 128, 256, 512],
        concurrency=[1, 4, 16],
        rates=[],
        mode="inproc",
        duration=5.0,
        # batch 32 takes the CPU grid to 4,096 tokens per batch, where the SHA/MHA ratio's trend shows
        cpu_batch=[1, 4, 16, 32],
        cpu_seq=[16, 64, 128],
        http_batch=[1, 8, 32],
        http_seq=[32, 128, 512],
    ),
    # Tests: seconds.
    "tiny": Preset(
        models=["mha", "sha"],
        batch=[1, 4],
        seq=[8, 16],
        concurrency=[1, 4],
        rates=[],
        mode="both",
        duration=0.5,
    ),
}
