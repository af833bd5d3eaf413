"""What a killed supervisor leaves behind: `python -m service` (W fronts) is started, answers, and
its supervisor alone is killed with -9, as a process manager that signals only the main pid
would; then, per round:

  children gone    seconds from the kill until the engine and every front have exited
  port free        seconds from the kill until the port can be bound again
  folder removed   whether the next start removed the run folder the killed one left

The next round's start is that next start. Prints one JSON object (every round, and the worst).

  python -m loadtest.bench.supervisor_kill --repo model_repository --model mha-small --rounds 5
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.cli import settings_from, settings_parser
from contract.flags import ModelRepository
from loadtest import processes


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/v2/health/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _start(args: SupervisorKillSettings, port: int, log: Path) -> subprocess.Popen:
    flags = ["--models", args.model, "--fronts", str(args.fronts), "--port", str(port)]
    proc = processes.start(processes.service_args(args.repo, *flags), log)
    processes.wait_until("ready", lambda: _ready(f"http://127.0.0.1:{port}"), 120, proc, log)
    return proc


def _kill(proc: subprocess.Popen, port: int, log: Path) -> dict:
    """kill -9 of the supervisor alone; the figures of what followed."""
    kids = processes.children(proc.pid)
    found = re.search(r"run folder (\S+)", log.read_text())
    killed = time.monotonic()
    os.kill(proc.pid, signal.SIGKILL)
    gone = port_free = None
    while time.monotonic() - killed < 10 and (gone is None or port_free is None):
        now = time.monotonic() - killed
        if gone is None and not any(processes.running(k) for k in kids):
            gone = round(now, 4)
        if port_free is None and _bindable(port):
            port_free = round(now, 4)
        time.sleep(0.001)
    proc.wait(10)
    return {
        "children": sorted(kids.values()),
        "children_gone_s": gone,
        "port_free_s": port_free,
        "run_folder": found.group(1) if found else None,
    }


class SupervisorKillSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="H2H_BENCH_SUPERVISOR_KILL_", extra="forbid")

    repo: ModelRepository = Path("model_repository")
    model: str = Field(default="mha-small", description="the model (folder) to serve")
    fronts: int = Field(default=2, ge=1, description="front processes")
    rounds: int = Field(default=5, ge=1, description="starts killed")


def main(argv: list[str] | None = None) -> None:
    p = settings_parser(SupervisorKillSettings, "bench_supervisor_kill", __doc__.splitlines()[0])
    args = settings_from(SupervisorKillSettings, p.parse_args(argv))
    port = processes.free_port()
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds + 1):
            log = Path(tmp) / f"service-{i}.log"
            proc = _start(args, port, log)  # the next start after the previous round's kill
            if rounds:
                rounds[-1]["folder_removed_by_next_start"] = not Path(rounds[-1]["run_folder"]).exists()
            if i == args.rounds:
                processes.stop(proc)
                break
            rounds.append(_kill(proc, port, log))
    worst = {k: max(r[k] for r in rounds) for k in ("children_gone_s", "port_free_s")}
    json.dump({"rounds": rounds, "worst": worst}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
