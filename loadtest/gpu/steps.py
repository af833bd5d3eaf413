"""The round's bookkeeping: the budget, one record per step, the reuse of results an earlier run
left complete, and the exit code those records imply."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# a step that did its job, or had nothing to do here (no such variant, no CUDA, no gpu tests)
DONE = ("ok", "reused")
OUT_OF_TIME = "skipped: out of time"
EXIT_OK, EXIT_FAILED, EXIT_UNFINISHED = 0, 1, 4


def python_m(module: str, *args: str, **flags: object) -> list[str]:
    """`python -m module args --flag value ...`, the flags in keyword order (`a_b` is `--a-b`, and a
    flag given True stands alone), so each step's command reads as one call."""
    cmd = [sys.executable, "-m", module, *args]
    for key, value in flags.items():
        flag = "--" + key.replace("_", "-")
        cmd += [flag] if value is True else [flag, str(value)]
    return cmd


def complete(path: Path) -> bool:
    """A step's result file, whole: results.json / capacity.json whose meta has `elapsed_s` (written
    last, when the step finished), or a JSON marked complete. Unreadable or cut short: False."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict):
        return False
    return data.get("complete") is True or (data.get("meta") or {}).get("elapsed_s") is not None


def unfinished(status: str) -> bool:
    """Not started, or stopped, because the budget was spent: a rerun does it."""
    return status.endswith("out of time")


def passed(status: str) -> bool:
    """A step that ran, was reused, or was skipped for want of something it needs (not of time)."""
    return status in DONE or (status.startswith("skipped") and not unfinished(status))


def exit_code(steps: list[dict[str, Any]]) -> int:
    """0: every step that could run ran; 1: a step failed; 4: none failed but some ran out of time
    (the same command again does only those)."""
    if any(not passed(s["status"]) and not unfinished(s["status"]) for s in steps):
        return EXIT_FAILED
    return EXIT_UNFINISHED if any(unfinished(s["status"]) for s in steps) else EXIT_OK


@dataclass
class Run:
    """The budget, the record of every step, and what an earlier run already finished."""

    budget_s: float
    logs: Path
    t0: float = field(default_factory=time.monotonic)
    steps: list[dict[str, Any]] = field(default_factory=list)
    earlier: dict[str, dict[str, Any]] = field(default_factory=dict)  # step name -> its last record

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.t0)

    def record(self, name: str, status: str, seconds: float, **extra: Any) -> bool:
        log = self.logs / f"{name}.log"
        if status.startswith("failed") and log.is_file():  # the committed results.json says why
            extra["log_tail"] = log.read_text(errors="replace").splitlines()[-20:]
        self.steps.append({"name": name, "status": status, "seconds": round(seconds, 1), **extra})
        print(
            f"[{time.monotonic() - self.t0:5.0f} s] {name}: {status} ({seconds:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
        return passed(status)

    def reuse(self, name: str, **extra: Any) -> bool:
        """Record a step whose results an earlier run left complete (with that run's seconds)."""
        before = self.earlier.get(name, {})
        status = str(before.get("status", ""))
        if status.startswith(("reused", "failed earlier")):
            said = {k: before[k] for k in ("earlier_status", "earlier_seconds") if k in before}
        else:
            said = {f"earlier_{k}": before[k] for k in ("status", "seconds") if k in before}
        failed = str(said.get("earlier_status", "")).startswith("failed")
        return self.record(name, "failed earlier (reused)" if failed else "reused", 0.0, **extra, **said)

    def step(
        self,
        name: str,
        cmd: list[str],
        *,
        env: dict[str, str] | None = None,
        ok_codes: tuple = (0,),
        done: list[Path] | None = None,
    ) -> bool:
        """Run one command with what is left of the budget; its output goes to logs/<name>.log.
        With `done` (its result files), a step whose results are all complete is reused instead."""
        if done and all(complete(f) for f in done):
            return self.reuse(name)
        left = self.left()
        if left < 5:
            return self.record(name, OUT_OF_TIME, 0.0)
        t = time.monotonic()
        with (self.logs / f"{name}.log").open("w") as log:
            try:
                rc = subprocess.run(
                    cmd,
                    cwd=ROOT,
                    env={**os.environ, **(env or {})},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=left,
                ).returncode
            except subprocess.TimeoutExpired:
                return self.record(name, "failed: out of time", time.monotonic() - t, command=" ".join(cmd))
        status = "ok" if rc in ok_codes else f"failed: exit {rc}"
        if rc == 5 and name == "gpu-tests":
            status = "skipped: no gpu tests"
        return self.record(name, status, time.monotonic() - t, command=" ".join(cmd))
