"""The service's process tree (`python -m service`) cleans up after itself: its processes are named
(h2h-supervisor, h2h-engine, h2h-front-N) and the fronts' summed series keep their HELP, the supervisor killed with -9 takes the engine and every
front with it and frees the port, the next start removes the run folder it left, SIGTERM is
honoured at any moment (engine loading at start-up or in a restart, a front being replaced), and
engine deaths count against the limit only within the restart window.

A child is caught mid-start by its name: it is titled first thing in its entry, then frozen with
SIGSTOP while the supervisor is told to stop, then let go; no sleep decides what happens first."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from loadtest.processes import children, running
from service import process_tree, supervisor
from service.settings import ServiceSettings
from tests.conftest import start_service, wait_until

ENV = {"H2H_PROVIDER": "cpu", "H2H_INTRA_OP_THREADS": "1", "H2H_SHUTDOWN_GRACE_S": "30"}
GRACE_S = 30.0  # long: the slow-body test holds a request open across SIGTERM


def ours(pid: int) -> list[int]:
    """The service's own children (h2h-*; not multiprocessing's resource tracker, which leaves on
    its own once the supervisor has gone)."""
    return [k for k, name in children(pid).items() if name.startswith("h2h-")]


def named(pid: int, title: str, *, besides: int | None = None, timeout: float = 60) -> int:
    """The child of `pid` named `title` (not `besides`), as soon as it appears."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [k for k, name in children(pid).items() if name == title and k != besides]
        if found:
            return found[0]
        time.sleep(0.005)
    raise AssertionError(f"no child {title} of {pid} within {timeout} s: {children(pid)}")


def _ready(hostport: str) -> bool:
    try:
        return httpx.get(f"http://{hostport}/v2/health/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def started(tiny_repo: Path, tmp_path: Path) -> Iterator:  # noqa: ANN201
    procs: list[subprocess.Popen] = []

    def start(*flags: str, wait: bool = True) -> tuple[subprocess.Popen, str, Path]:
        log = tmp_path / f"service-{len(procs)}.log"
        shape = () if "--fronts" in flags else ("--fronts", "1")  # the engine process, on any host
        proc, hostport = start_service(tiny_repo, ENV, log, "--models", "mha-tiny", *shape, *flags)
        procs.append(proc)
        if wait:
            wait_until("service ready", lambda: _ready(hostport), 90, proc, log)
        return proc, hostport, log

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def _stops_cleanly(proc: subprocess.Popen, log: Path) -> float:
    """Seconds from SIGTERM to the supervisor's exit, asserting exit 0 and no child left."""
    kids = ours(proc.pid)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(GRACE_S + 10) == 0, log.read_text()[-3000:]
    took = time.monotonic() - sent
    assert not [k for k in kids if running(k)], kids
    return took


def test_processes_are_named_and_die_with_a_killed_supervisor(started) -> None:  # noqa: ANN001
    proc, hostport, log = started("--fronts", "2")
    names = {k: name for k, name in children(proc.pid).items() if k in ours(proc.pid)}
    assert sorted(names.values()) == ["h2h-engine", "h2h-front-0", "h2h-front-1"], children(proc.pid)
    assert Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")[0].strip() == b"h2h-supervisor"
    text = httpx.get(f"http://{hostport}/metrics").text  # the fronts' series summed, with their own HELP
    assert "# HELP h2h_requests_total HTTP requests answered" in text and "Multiprocess metric" not in text
    rundir = Path(re.search(r"run folder (\S+)", log.read_text()).group(1))
    assert (rundir / "owner").is_file()

    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    deadline = time.monotonic() + 10
    while any(running(k) for k in names) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not [k for k in names if running(k)], names
    port = int(hostport.rsplit(":", 1)[1])
    with socket.socket() as s:  # the port is free: nobody listens on it any more
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
    assert rundir.is_dir()  # nobody removed it: the next start does

    again, _, log2 = started("--port", str(port))
    assert not rundir.exists(), log2.read_text()[-2000:]
    _stops_cleanly(again, log2)


@pytest.mark.parametrize("moment", ["engine start-up", "engine restart", "front replacement"])
def test_sigterm_is_honoured_at_any_moment(started, moment: str) -> None:  # noqa: ANN001
    proc, _, log = started(wait=moment != "engine start-up")
    if moment == "engine start-up":
        child = named(proc.pid, "h2h-engine")  # loading the models; no front exists yet
    elif moment == "engine restart":
        old = named(proc.pid, "h2h-engine")
        os.kill(old, signal.SIGKILL)
        child = named(proc.pid, "h2h-engine", besides=old)
    else:
        old = named(proc.pid, "h2h-front-0")
        os.kill(old, signal.SIGKILL)
        child = named(proc.pid, "h2h-front-0", besides=old)
    os.kill(child, signal.SIGSTOP)  # caught starting, it stays so until the supervisor is told to stop
    try:
        kids = ours(proc.pid)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # the supervisor's SIGTERM to `child` is pending on it now, or soon
    finally:
        os.kill(child, signal.SIGCONT)
    assert proc.wait(GRACE_S + 10) == 0, log.read_text()[-3000:]
    assert not [k for k in kids if running(k)], kids
    if moment != "front replacement":
        assert "stopping while the engine" in log.read_text(), log.read_text()[-3000:]


def _deaths(limit: int, at: list[float], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[bool]:
    """What the supervisor decides at engine deaths at the times `at` (restart or give up)."""
    monkeypatch.setattr(process_tree.tempfile, "tempdir", str(tmp_path))
    sup = supervisor.Supervisor(ServiceSettings(model_repository=tmp_path, engine_restarts=limit))
    sup.engine = SimpleNamespace(pid=12345, exitcode=-9)
    sup._start_engine = lambda: True  # type: ignore[method-assign]
    clock = iter(at)
    monkeypatch.setattr(supervisor.time, "monotonic", lambda: next(clock))
    return [sup._engine_died() for _ in at]


def test_engine_deaths_count_within_the_restart_window_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    window = supervisor.RESTART_WINDOW_S
    assert _deaths(1, [100.0, 100.0 + window / 2], monkeypatch, tmp_path) == [True, False]
    assert _deaths(1, [100.0, 100.0 + window + 1], monkeypatch, tmp_path) == [True, True]
    # limit 2: the first death has left the window by the third, not the second by the fourth
    assert _deaths(2, [0.0, window * 0.8, window * 1.2, window * 1.7], monkeypatch, tmp_path) == [
        True,
        True,
        True,
        False,
    ]


def test_next_start_removes_only_run_folders_whose_owner_is_dead(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    folders = {}
    for what, owner in (("dead", f"{dead.pid} 1"), ("alive", None), ("reused", f"{os.getpid()} 1")):
        folders[what] = tmp_path / f"h2h-{what}"
        folders[what].mkdir()
        if owner:
            (folders[what] / "owner").write_text(owner)
    (tmp_path / "h2h-unknown").mkdir()  # no owner recorded: kept
    (tmp_path / "h2h-file").write_text("")  # not a folder
    mine = process_tree.make_run_folder()
    try:
        os.replace(mine / "owner", folders["alive"] / "owner")  # this process's own record
    finally:
        mine.rmdir()
    removed = process_tree.remove_stale_run_folders(tmp_path)
    assert sorted(p.name for p in removed) == ["h2h-dead", "h2h-reused"]  # same pid, other start time
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h2h-alive", "h2h-file", "h2h-unknown"]


def _until_read(port: int, client_port: int, timeout: float = 30) -> None:
    """Until the server's end of the connection 127.0.0.1:client_port -> :port has nothing left
    to read (/proc/net/tcp's rx_queue): whoever accepted it has read what was sent."""
    want = (f"0100007F:{port:04X}", f"0100007F:{client_port:04X}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            f = line.split()
            if (f[1], f[2]) == want and f[4].split(":")[1] == "00000000":
                return
        time.sleep(0.01)
    raise AssertionError(f"the server did not read the request from port {client_port}")


def test_sigterm_answers_a_request_whose_body_is_still_arriving_and_stops_the_engine_last(
    started,  # noqa: ANN001
) -> None:
    """Headers and half the body are in a front when SIGTERM comes; the rest arrives a second
    later: the answer is 200, and the engine exits only after every front has."""
    proc, hostport, log = started("--fronts", "2")
    kids = {k: name for k, name in children(proc.pid).items() if name.startswith("h2h-")}
    body = b'{"texts": ["a small domesticated carnivore"]}'
    host, port = hostport.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as s:
        head = f"POST /v1/models/mha-tiny/predict HTTP/1.1\r\nHost: {hostport}\r\n"
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        s.sendall(head.encode() + body[:10])
        _until_read(int(port), s.getsockname()[1])  # a front has the request (its headers)...
        time.sleep(0.2)  # ...and its app has started on it, before SIGTERM
        proc.send_signal(signal.SIGTERM)
        exited: dict[int, float] = {}
        end = time.monotonic() + 1.0
        while time.monotonic() < end:  # the body is late: its front and the engine wait for it
            exited.update({k: time.monotonic() for k in kids if k not in exited and not running(k)})
            time.sleep(0.01)
        engine = next(k for k, name in kids.items() if name == "h2h-engine")
        assert engine not in exited and len(exited) < len(kids) - 1, (
            exited,
            kids,
        )  # the request's front waits
        s.sendall(body[10:])
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    deadline = time.monotonic() + GRACE_S + 10
    while len(exited) < len(kids) and time.monotonic() < deadline:
        exited.update({k: time.monotonic() for k in kids if k not in exited and not running(k)})
        time.sleep(0.005)
    assert proc.wait(10) == 0, log.read_text()[-3000:]
    fronts = [t for k, t in exited.items() if k != engine]
    assert len(fronts) == 2 and exited[engine] >= max(fronts), (exited, kids)
