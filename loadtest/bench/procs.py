"""Processes a server benchmark needs: the service and the floor app on free loopback ports,
wrk runs against them, their CPU time and /metrics status counts, and a py-spy profile.

Kept apart from the benchmarks so that each of them reads as the measurement it makes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from loadtest.bench.wrk import LUA, parse_wrk

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A server process on loopback: its URL, its CPU time and its own request counts."""

    proc: subprocess.Popen
    base: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process (all its threads), from /proc."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def status_counts(self) -> dict[str, int]:
        """h2h_requests_total summed by status (empty for a server without our metrics)."""
        r = httpx.get(f"{self.base}/metrics", timeout=10.0)
        if r.status_code != 200:
            return {}
        counts: Counter[str] = Counter()
        for fam in text_string_to_metric_families(r.text):
            for s in fam.samples:
                if s.name == "h2h_requests_total" and s.labels.get("route", "").endswith(
                    ("/predict", "/infer")
                ):
                    counts[s.labels["status"]] += int(s.value)
        return dict(counts)


def wait_ready(server: Server, path: str, timeout: float) -> None:
    """Until `path` answers 200; RuntimeError (saying why) if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited with code {server.proc.returncode} before it was ready")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.base + path, timeout=1.0).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"server at {server.base} not ready within {timeout:.0f} s")


@contextlib.contextmanager
def _serve(args: list[str], cwd: Path, ready_path: str, env: dict[str, str]) -> Iterator[Server]:
    port = free_port()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, *args, "--port", str(port)],
            cwd=cwd,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        server = Server(proc, f"http://127.0.0.1:{port}")
        try:
            wait_ready(server, ready_path, 120.0)
            yield server
        finally:
            stop_process(proc, 30.0)


def stop_process(proc: subprocess.Popen, grace: float) -> int:
    """SIGTERM (the service drains and exits 0), a kill after `grace` seconds; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def start_service(repo: Path, models: list[str], root: Path | None = None) -> AbstractContextManager[Server]:
    """`python -m service` from `root` (default this tree) with its default settings."""
    args = [
        "-m",
        "service",
        "--model-repository",
        str(repo.resolve()),
        "--host",
        "127.0.0.1",
        "--models",
        *models,
    ]
    return _serve(args, (root or ROOT).resolve(), "/v2/health/ready", _pythonpath(root or ROOT))


def start_floor() -> AbstractContextManager[Server]:
    return _serve(
        ["-m", "loadtest.bench.bare_app", "--host", "127.0.0.1"], ROOT, "/openapi.json", _pythonpath(ROOT)
    )


def _pythonpath(root: Path) -> dict[str, str]:
    """The tree under test first; packages installed with `pip --target` (PYTHONPATH) stay visible."""
    return {
        "PYTHONPATH": os.pathsep.join([str(root.resolve()), *filter(None, [os.environ.get("PYTHONPATH")])])
    }


def wrk_run(url: str, body: bytes, conc: int, seconds: float) -> dict[str, float]:
    """One wrk run (closed loop, `conc` connections) POSTing `body`; its summary line as numbers."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk, or make install)")
    with tempfile.NamedTemporaryFile("wb", suffix=".json") as fh:
        fh.write(body)
        fh.flush()
        cmd = [
            wrk,
            f"-t{min(2, conc)}",
            f"-c{conc}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "30s",
            "-s",
            str(LUA),
            url,
        ]
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            env={"H2H_WRK_BODY": fh.name, "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
    try:
        return parse_wrk(proc.stdout)
    except ValueError as exc:
        raise RuntimeError(f"{exc}: {(proc.stderr or proc.stdout).strip()[:200]}") from None


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
