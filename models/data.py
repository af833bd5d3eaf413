"""WordNet 3.0 supersense classification: gloss definition -> lexicographer file.

Data comes from Debian's `wordnet-base` package (/usr/share/wordnet), never from a hub.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

DEFAULT_WORDNET_DIR = Path("/usr/share/wordnet")
POS_FILES = ("noun", "verb", "adj", "adv")

# lexnames(5WN): lexicographer file number -> name. The 45 supersense classes.
LEXNAMES: tuple[str, ...] = (
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
)


class WordNetMissingError(FileNotFoundError):
    """Raised with an actionable message when the WordNet files are not installed."""


@dataclass(frozen=True)
class Example:
    text: str
    label: int
    key: str  # "<pos>:<offset>", stable across runs


@dataclass(frozen=True)
class Splits:
    train: list[Example]
    validation: list[Example]
    test: list[Example]
    labels: tuple[str, ...] = LEXNAMES


def definition_of(gloss: str) -> str:
    """The definition part of a gloss: everything before the first quoted example."""
    cut = gloss.find('; "')
    text = gloss if cut < 0 else gloss[:cut]
    if text.startswith('"'):  # a gloss that is only an example has no definition
        return ""
    return text.strip().rstrip(";").strip()


def parse_data_file(path: Path) -> list[Example]:
    """Parse one `data.<pos>` file; skips the license header (lines starting with spaces)."""
    pos = path.name.split(".", 1)[1]
    out: list[Example] = []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.startswith(" ") or not line.strip():
                continue
            head, sep, gloss = line.partition(" | ")
            fields = head.split()
            if not sep or len(fields) < 4:
                raise ValueError(f"{path}:{lineno}: not a WordNet data line")
            lexfile = int(fields[1])
            if not 0 <= lexfile < len(LEXNAMES):
                raise ValueError(f"{path}:{lineno}: lexicographer file {lexfile} out of range")
            text = definition_of(gloss.strip())
            if text:
                out.append(Example(text=text, label=lexfile, key=f"{pos}:{fields[0]}"))
    return out


def load_wordnet(wordnet_dir: str | Path = DEFAULT_WORDNET_DIR) -> list[Example]:
    root = Path(wordnet_dir)
    missing = [p for p in POS_FILES if not (root / f"data.{p}").is_file()]
    if missing:
        raise WordNetMissingError(
            f"WordNet data files missing in {root} ({', '.join('data.' + m for m in missing)}): "
            "install them with `sudo apt-get install wordnet-base` or pass --wordnet-dir"
        )
    examples: list[Example] = []
    for pos in POS_FILES:
        examples.extend(parse_data_file(root / f"data.{pos}"))
    return examples


def split(examples: list[Example], seed: int = 13, val_frac: float = 0.1, test_frac: float = 0.1) -> Splits:
    """Deterministic shuffle-and-cut; the order of the input does not matter."""
    ordered = sorted(examples, key=lambda e: e.key)
    random.Random(seed).shuffle(ordered)
    n = len(ordered)
    n_val, n_test = int(n * val_frac), int(n * test_frac)
    return Splits(
        train=ordered[n_val + n_test :],
        validation=ordered[:n_val],
        test=ordered[n_val : n_val + n_test],
    )


def data_fingerprint(splits: Splits) -> str:
    """sha256 of every split's keys, labels and texts: accuracy records compare only on equal data."""
    h = hashlib.sha256()
    for name, part in (("train", splits.train), ("validation", splits.validation), ("test", splits.test)):
        h.update(f"{name}:{len(part)}\n".encode())
        for e in part:
            h.update(f"{e.key}\t{e.label}\t{e.text}\n".encode())
    return h.hexdigest()
