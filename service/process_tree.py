"""The service's processes as an operator sees them: named, gone with their supervisor, and leaving
no run folder behind for long.

- Names: `ps`/`top` show `h2h-supervisor`, `h2h-engine` and `h2h-front-N` (setproctitle, as vLLM
  titles its processes) instead of three identical `python -c from multiprocessing.spawn ...`.
- Parent death: each child asks the kernel for SIGKILL when the supervisor dies, by any signal
  (prctl PR_SET_PDEATHSIG). A supervisor killed with -9 (or by a process manager that signals
  only the main pid) would otherwise leave the engine and fronts serving as orphans on the port
  with nobody to restart them. SIGKILL, not SIGTERM: a drain needs the supervisor's ordering
  (fronts, then engine), which no longer exists; what matters then is that the port is free
  at once for the next start. A supervisor that is SIGTERMed drains as before: the children
  exit first and the signal never fires.
- Run folders: each supervisor's folder records its owner (pid and start time); the next start
  removes the folders whose owner is dead, which a killed supervisor could not remove itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
from pathlib import Path

import setproctitle

from contract.atomic import write_text

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
RUN_PREFIX = "h2h-"
OWNER = "owner"  # the file in a run folder naming the supervisor that made it


def name(title: str) -> None:
    """This process's name in ps/top (its command line and its kernel `comm`)."""
    setproctitle.setproctitle(title)


def die_with_parent() -> None:
    """SIGKILL for this process when the process that spawned it dies. Exits at once when that
    process died before the request reached the kernel (the signal would never come)."""
    parent = multiprocessing.parent_process()
    expected = parent.pid if parent is not None else os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning(
            "prctl(PR_SET_PDEATHSIG) failed (errno %d): this process may outlive its supervisor",
            ctypes.get_errno(),
        )
    if os.getppid() != expected:
        log.error("the supervisor (pid %s) died before this process started; exiting", expected)
        os._exit(1)


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc), None when it is gone: a pid
    with another start time is a reused pid, not the owner."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def make_run_folder() -> Path:
    """A new private run folder under the temporary directory, owned by this process."""
    rundir = Path(tempfile.mkdtemp(prefix=RUN_PREFIX))
    write_text(rundir / OWNER, f"{os.getpid()} {_start_time(os.getpid())}\n")
    return rundir


def owner_alive(rundir: Path) -> bool:
    """Whether the supervisor that made `rundir` still runs (True when unknown: kept)."""
    try:
        pid, started = (rundir / OWNER).read_text().split()
        return _start_time(int(pid)) == started
    except (OSError, ValueError):
        return True


def remove_stale_run_folders(parent: Path | None = None) -> list[Path]:
    """Remove this user's run folders whose owner is dead (and no other); returns them."""
    parent = Path(parent or tempfile.gettempdir())
    removed = []
    for d in parent.glob(f"{RUN_PREFIX}*"):
        with contextlib.suppress(OSError):
            if d.is_dir() and not d.is_symlink() and d.stat().st_uid == os.getuid() and not owner_alive(d):
                shutil.rmtree(d)
                removed.append(d)
                log.info("removed %s, left by a supervisor that is no longer running", d)
    return removed
