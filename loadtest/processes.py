"""The one process toolkit: a free loopback port, a server started with its output in a log file,
a wait until it is ready (or a clear failure with the log's tail), and a stop with SIGTERM that
collects the exit code.

Every program that runs a server as a child uses it: the tests (tests/conftest.py), the
benchmarks (loadtest/bench/), `make demo` (demo/) and the GPU report
(loadtest.gpu.round). It imports neither torch nor the service, so any of them can.

    with processes.serving(["-m", "service", "--model-repository", "repo"], ready_path="/v2/health/ready") as srv:
        httpx.get(srv.base + "/v2/models")
    srv.returncode   # 0: the service drained and exited on SIGTERM
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]  # this tree: where `python -m service` is started from


class NotReady(RuntimeError):
    """A server exited or did not become ready in time; the message ends with its log's tail."""


def free_port() -> int:
    """A loopback TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(log: Path | None, chars: int = 4000) -> str:
    if log is None or not log.is_file():
        return ""
    return log.read_text(errors="replace")[-chars:]


def tree_env(root: Path = ROOT, **env: str) -> dict[str, str]:
    """os.environ plus `env`, with `root` first on PYTHONPATH so a child imports the tree under
    test (packages installed with `pip --target` on PYTHONPATH stay visible)."""
    path = os.pathsep.join([str(root.resolve()), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**os.environ, "PYTHONPATH": path, **env}


def start(
    args: Sequence[str], log: Path, *, cwd: Path = ROOT, env: dict[str, str] | None = None, drop: str = "\0"
) -> subprocess.Popen:
    """`python *args` (this interpreter) with stdout and stderr in `log`; `env` adds to os.environ,
    without the variables whose names start with `drop` (a benchmark drops the server's H2H_)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, *args],
            cwd=cwd,
            env={k: v for k, v in {**os.environ, **(env or {})}.items() if not k.startswith(drop)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_until(
    what: str, check: Callable[[], bool], timeout: float, proc: subprocess.Popen, log: Path | None = None
) -> None:
    """Poll `check` (its exceptions mean "not yet") until true; NotReady with the log's tail when
    `proc` exits or `timeout` passes, so a server that never comes up says why instead of hanging."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise NotReady(f"{what}: process exited with code {proc.returncode}\n{log_tail(log)}")
        with contextlib.suppress(Exception):
            if check():
                return
        if time.monotonic() >= deadline:
            raise NotReady(f"{what}: not within {timeout:g} s\n{log_tail(log)}")
        time.sleep(0.2)


def answers_200(url: str) -> Callable[[], bool]:
    """A readiness check for wait_until: `url` answers HTTP 200."""
    return lambda: httpx.get(url, timeout=2.0).status_code == 200


def stop(proc: subprocess.Popen, grace: float = 15.0) -> int:
    """SIGTERM (the service drains and exits 0), SIGKILL after `grace` seconds; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@dataclass
class Server:
    """A server process on loopback: its base URL, its log, and (once stopped) its exit code."""

    proc: subprocess.Popen
    base: str
    log: Path
    returncode: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process and its live descendants (a service's engine and
        fronts), all their threads, from /proc."""
        return sum(_cpu_ticks(pid) for pid in tree(self.pid)) / os.sysconf("SC_CLK_TCK")


def _child_pids(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def tree(pid: int) -> list[int]:
    """`pid` and its descendants alive now."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += _child_pids(p)
    return out


def running(pid: int) -> bool:
    """Whether `pid` runs: not gone, and not a zombie waiting for its parent to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def children(pid: int) -> dict[int, str]:
    """`pid`'s running child processes and their names (command lines, from /proc): a service's
    are h2h-engine and h2h-front-N (service.process_tree)."""
    out = {}
    for k in _child_pids(pid):
        with contextlib.suppress(OSError):
            name = Path(f"/proc/{k}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if running(k):
                out[k] = name.strip()
    return out


def rss_mb(pid: int) -> float:
    """Resident memory of `pid` in MB (0 when it ended meanwhile)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    kb = next((int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmRSS:")), 0)
    return round(kb / 1024, 1)


def maps_onnxruntime(pid: int) -> bool:
    """Whether `pid` has ONNX Runtime's library mapped (it imported onnxruntime)."""
    try:
        return "onnxruntime" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # ended meanwhile
        return 0
    return int(fields[11]) + int(fields[12])


@contextlib.contextmanager
def serving(
    args: Sequence[str],
    *,
    ready_path: str,
    port: int | None = None,
    log: Path | None = None,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
    grace: float = 30.0,
    drop: str = "\0",
) -> Iterator[Server]:
    """`python *args --port N` on `port` (default a free one), yielded once `ready_path` answers 200; stopped with
    SIGTERM on the way out (its exit code in `.returncode`). Without `log`, a temporary file holds
    the output. NotReady (with the log's tail) if it exits first or `timeout` passes."""
    with tempfile.TemporaryDirectory() as tmp:
        port = port or free_port()
        log = log or Path(tmp) / "server.log"
        proc = start([*args, "--port", str(port)], log, cwd=cwd, env=env, drop=drop)
        server = Server(proc, f"http://127.0.0.1:{port}", log)
        try:
            wait_until(f"server at {server.base}", answers_200(server.base + ready_path), timeout, proc, log)
            yield server
        finally:
            server.returncode = stop(proc, grace)


def service_args(repo: Path, *flags: str) -> list[str]:
    """`python -m service` arguments on loopback over `repo` (add "--port N", or use serving())."""
    return ["-m", "service", "--model-repository", str(Path(repo).resolve()), "--host", "127.0.0.1", *flags]
