"""A py-spy profile of a server while a benchmark loads it: the frames with the most self time."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Profile:
    lines: list[str] = field(default_factory=list)


def top_frames(raw: str, n: int = 12) -> list[str]:
    """The `n` frames with the most self samples in py-spy's raw (collapsed) output."""
    self_counts: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        self_counts[stack.split(";")[-1]] += int(count)
    return [f"{c / total:6.1%} {frame}" for frame, c in self_counts.most_common(n)] if total else []


@contextlib.contextmanager
def profile_top(pid: int, seconds: float) -> Iterator[Profile]:
    """py-spy record of `pid` while the block runs; the top self frames land in `.lines`."""
    out = Profile()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        out.lines.append("py-spy is not installed (pip install py-spy): no profile")
        yield out
        return
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "profile.txt"
        cmd = [
            spy,
            "record",
            "-p",
            str(pid),
            "-d",
            str(max(1, int(seconds))),
            "-r",
            "250",
            "-f",
            "raw",
            "-o",
            str(raw),
            "--threads",
            "--nonblocking",
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            yield out
        finally:
            _, err = proc.communicate(timeout=seconds + 60)
            if raw.exists():
                out.lines.extend(top_frames(raw.read_text()))
            else:
                out.lines.append(f"py-spy failed: {err.decode(errors='replace').strip()[:200]}")
