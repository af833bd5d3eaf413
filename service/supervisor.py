"""`python -m service`: one engine process and W front processes, supervised.

- The engine (service.engine.server) loads the models first; only once it answers does the
  supervisor bind the HTTP port and start the fronts (service.front_process), which share that
  one listening socket: nothing listens before the models are loaded, as before the split.
- The engine dying (kill -9, a crash): every front answers 503 not-ready at once (each watches
  the engine's process), the supervisor starts a new engine, and the fronts serve again when it
  answers. More than `engine_restarts` deaths within a minute: the service exits 1 for its
  orchestrator to decide.
- A front dying is replaced (the others keep serving meanwhile).
- SIGTERM or SIGINT: the listening socket is closed here, every front drains (new requests on
  open connections get 503 + Connection: close, accepted ones are answered, then it closes its
  copy of the socket: new connections are refused), then the engine drains and exits; the
  supervisor exits 0 when every process did. It is honoured at any moment: while the engine
  loads (at start-up or in a restart, checked every 0.2 s) and while a front is replaced; a
  child the signal finds still starting up dies of it at once, having served nothing.
- The supervisor dying by any signal (kill -9 included) takes every child with it at once
  (service.process_tree: the parent-death signal), so the port is free for the next start,
  which also removes the run folder the dead one left.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import time
from multiprocessing.connection import wait
from multiprocessing.context import SpawnProcess
from types import FrameType

from service import engine_process, process_tree
from service import front_process as front
from service.settings import ServiceSettings

log = logging.getLogger(__name__)

SPAWN = multiprocessing.get_context("spawn")
RESTART_WINDOW_S = 60.0
POLL_S = 0.2  # how soon a SIGTERM is noticed while waiting on children


def bind(settings: ServiceSettings) -> socket.socket:
    """The HTTP listening socket every front accepts on (as uvicorn's own workers share one)."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class Supervisor:
    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.json = settings.model_dump_json()
        process_tree.remove_stale_run_folders()
        self.rundir = process_tree.make_run_folder()
        self.endpoint = str(self.rundir / "engine.sock")  # the engine's Unix socket (service.transport)
        self.metrics_dir = self.rundir / "metrics"
        self.metrics_dir.mkdir()
        self.engine: SpawnProcess | None = None
        self.fronts: dict[int, SpawnProcess] = {}
        self.sock: socket.socket | None = None
        self.stopping = False
        self.engine_ready = False  # the engine answers (and handles SIGUSR1)
        self.deaths: list[float] = []

    def _start_engine(self) -> bool:
        """A new engine process; True once it has loaded the models and answers, False if it
        exited first or SIGTERM came meanwhile (`stopping`: the caller drains)."""
        parent, child = SPAWN.Pipe(duplex=False)
        self.engine_ready = False
        self.engine = SPAWN.Process(
            target=engine_process.main, args=(self.json, self.endpoint, child), name="h2h-engine"
        )
        self.engine.start()
        child.close()
        log.info("engine starting (pid %d)", self.engine.pid)
        while not self.stopping:
            ready = wait([parent, self.engine.sentinel], timeout=POLL_S)
            if parent in ready and parent.poll():
                log.info("engine %d ready", parent.recv())
                self.engine_ready = True
                return True
            if ready:
                log.error("the engine exited before it was ready (exit code %s)", self.engine.exitcode)
                return False
        log.info("stopping while the engine (pid %d) loads", self.engine.pid)
        return False

    def _start_front(self, index: int) -> None:
        args = (self.json, self.endpoint, self.sock, str(self.metrics_dir), index)
        p = SPAWN.Process(target=front.main, args=args, name=f"h2h-front-{index}")
        p.start()
        self.fronts[index] = p
        log.info("front %d started (pid %d)", index, p.pid)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self.stopping = True

    def run(self) -> int:
        process_tree.name("h2h-supervisor")
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        log.info("run folder %s", self.rundir)
        try:
            if not self._start_engine():
                return self._drain() if self.stopping else 1
            self.sock = bind(self.settings)
            for i in range(self.settings.front_count()):
                self._start_front(i)
            code = self._watch()
            return max(code, self._drain())
        finally:
            shutil.rmtree(self.rundir, ignore_errors=True)

    def _watch(self) -> int:
        """Restart what dies until SIGTERM (0) or too many engine deaths (1)."""
        while not self.stopping:
            assert self.engine is not None
            procs = [self.engine, *self.fronts.values()]
            wait([p.sentinel for p in procs], timeout=POLL_S)
            if self.stopping:
                break
            if not self.engine.is_alive() and not self._engine_died():
                return 0 if self.stopping else 1
            for i, p in list(self.fronts.items()):
                if not p.is_alive():
                    log.error("front %d (pid %d) exited with %s; starting another", i, p.pid, p.exitcode)
                    self._start_front(i)
        return 0

    def _engine_died(self) -> bool:
        assert self.engine is not None
        now = time.monotonic()
        self.deaths = [t for t in self.deaths if now - t < RESTART_WINDOW_S] + [now]
        log.error("the engine (pid %d) exited with %s", self.engine.pid, self.engine.exitcode)
        if len(self.deaths) > self.settings.engine_restarts:
            log.error("%d engine deaths within %.0f s: giving up", len(self.deaths), RESTART_WINDOW_S)
            return False
        return self._start_engine()

    def _drain(self) -> int:
        """Fronts first (their accepted requests still reach the engine), then the engine."""
        if self.sock is not None:
            self.sock.close()
        grace = self.settings.shutdown_grace_s + 5.0
        code = 0
        if self.engine is not None and self.engine_ready and self.engine.is_alive():
            os.kill(self.engine.pid, signal.SIGUSR1)  # queued work runs now, not after its window
        for p in self.fronts.values():
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)
        for p in self.fronts.values():
            p.join(grace)
            code = max(code, _exit_code(p))
        if self.engine is not None and self.engine.is_alive():
            os.kill(self.engine.pid, signal.SIGTERM)
            self.engine.join(grace)
            code = max(code, _exit_code(self.engine))
        return code


def _exit_code(p: SpawnProcess) -> int:
    """0 for a clean exit. SIGTERM's own death counts as clean: it is what a child gets from our
    SIGTERM before it has set up its handler, i.e. while still starting, having served nothing."""
    if p.is_alive():
        log.error("%s (pid %d) did not exit in time; killed", p.name, p.pid)
        p.kill()
        return 1
    return 0 if p.exitcode in (0, -signal.SIGTERM) else 1


def run(settings: ServiceSettings) -> int:
    return Supervisor(settings).run()
