"""The process toolkit (loadtest/processes.py) every test, benchmark and script starts servers with."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from loadtest import processes


def test_free_port_is_bindable() -> None:
    port = processes.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_serving_yields_a_ready_server_and_collects_its_exit_code(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    args = ["-m", "loadtest.bench.bare_app", "--host", "127.0.0.1"]
    with processes.serving(args, ready_path="/openapi.json", log=log, env=processes.tree_env()) as srv:
        assert httpx.get(srv.base + "/openapi.json").status_code == 200
        assert srv.returncode is None and srv.cpu_seconds() > 0
    # bare uvicorn shuts down on SIGTERM and re-raises it (the service exits 0 instead)
    assert srv.returncode == srv.proc.poll() == -signal.SIGTERM
    assert log.is_file()  # the app logs only warnings: the file is there, empty


def test_a_server_that_dies_says_why_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "dead.log"
    args = ["-c", "import sys; print('no model repository here', file=sys.stderr); sys.exit(3)"]
    with (
        pytest.raises(processes.NotReady, match="exited with code 3") as err,
        processes.serving(args, ready_path="/", log=log, timeout=30),
    ):
        pass
    assert "no model repository here" in str(err.value)


def test_a_server_that_never_answers_times_out_and_is_stopped(tmp_path: Path) -> None:
    t0 = time.monotonic()
    with (
        pytest.raises(processes.NotReady, match="not within 0.5 s"),
        processes.serving(["-c", "import time; time.sleep(60)"], ready_path="/", timeout=0.5, grace=5),
    ):
        pass
    assert time.monotonic() - t0 < 20  # stopped with SIGTERM, not waited out


def test_stop_returns_the_exit_code_and_kills_after_the_grace(tmp_path: Path) -> None:
    ignores = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    log = tmp_path / "stubborn.log"
    proc = processes.start(["-c", ignores], log)
    processes.wait_until("started", lambda: "up" in log.read_text(), 30, proc, log)
    assert processes.stop(proc, grace=0.5) == -9  # SIGTERM ignored: killed
    assert processes.stop(proc) == -9  # already stopped: the same code, nothing sent
