"""A py-spy profile of a server while a benchmark loads it (every process of it): the frames with the
most self time, and the samples split by the stage of a request they fall in, per process role."""

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

# A sample's stage: its innermost frame that names one (a frame reads "function (file:line)").
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ORT", ("onnxruntime/", "service/runtime/")),
    ("engine queue + batching", ("service/engine/batcher.py", "service/engine/admission.py")),
    ("engine dispatch", ("service/engine/",)),
    ("messages encode/decode", ("service/messages.py", "msgspec")),
    ("transport", ("service/transport.py", "zmq/")),
    (
        "front: engine client",
        ("service/front/client.py", "service/front/link.py", "service/front/service.py"),
    ),
    ("validation + tokenizing", ("service/front/inputs.py", "contract/tokenizer.py")),
    ("post-processing", ("service/front/outputs.py",)),
    ("response body", ("RawResponse", "orjson")),
    ("body parse + validation", ("service/http/bodies.py", "pydantic", "service/api/")),
    ("routing, admission, metrics", ("service/", "prometheus_client/", "starlette/", "fastapi/")),
    ("HTTP (uvicorn, httptools)", ("uvicorn/", "httptools")),
    ("event loop", ("asyncio/", "uvloop", "selectors.py")),
)
ROLES = (("engine", "service/engine_process.py"), ("front", "service/front_process.py"))


@dataclass
class Profile:
    lines: list[str] = field(default_factory=list)
    stages: dict[str, dict[str, float]] = field(default_factory=dict)  # role -> stage -> share


def stage_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for stage, marks in STAGES:
            if any(m in frame for m in marks):
                return stage
    return "other"


def _role(stack: str) -> str | None:
    for role, mark in ROLES:
        if mark in stack:
            return role
    if "service/supervisor.py" in stack:
        return "supervisor"
    return "service" if "service/__main__.py" in stack else None


def stage_split(raw: str) -> dict[str, dict[str, float]]:
    """Samples by process role (engine, front, one process: "service", the supervisor) and
    stage, as shares of all samples. py-spy's raw lines with --subprocesses --threads name the
    processes, then the thread; a thread's role is read from any of its stacks, and a thread none names (a
    worker: ONNX Runtime's runs) is the engine's."""
    counts: Counter[tuple[str, str]] = Counter()
    roles: dict[str, str] = {}
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread = next((f for f in frames if f.startswith("thread (")), "-")
        role = _role(stack)
        if role is not None:
            roles[thread] = role
        counts[(thread, stage_of(frames))] += int(count)
    total = sum(counts.values())
    out: dict[str, dict[str, float]] = {}
    for (thread, stage), c in counts.items():
        by_stage = out.setdefault(roles.get(thread, "engine"), {})
        by_stage[stage] = round(by_stage.get(stage, 0.0) + c / total, 4)
    return {r: dict(sorted(d.items(), key=lambda kv: -kv[1])) for r, d in sorted(out.items())}


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
    """py-spy record of `pid` and its children while the block runs; the top self frames land in
    `.lines`, the stage split in `.stages`."""
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
            "--subprocesses",
            "--nonblocking",
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            yield out
        finally:
            _, err = proc.communicate(timeout=seconds + 60)
            if raw.exists():
                text = raw.read_text()
                out.lines.extend(top_frames(text))
                out.stages = stage_split(text)
            else:
                out.lines.append(f"py-spy failed: {err.decode(errors='replace').strip()[:200]}")
