"""The servers a benchmark measures, on free loopback ports: the service and the bare FastAPI app
(bare_app.py), started and stopped with the process toolkit (loadtest/processes.py), and the
service's own request counts by status from /metrics.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from loadtest import processes
from loadtest.processes import Server


def start_service(
    repo: Path, models: list[str], root: Path | None = None, flags: Sequence[str] = ()
) -> AbstractContextManager[Server]:
    """`python -m service` from `root` (default this tree) with its default settings and `flags`:
    no H2H_* variable of this shell reaches it, so what a benchmark measures is what it says."""
    root = (root or processes.ROOT).resolve()
    args = processes.service_args(repo, "--models", *models, *flags)
    env = processes.tree_env(root)
    return processes.serving(args, ready_path="/v2/health/ready", cwd=root, env=env, drop="H2H_")


def start_bare_app() -> AbstractContextManager[Server]:
    """The bare FastAPI route (bare_app.py): the framework's own cost, no model behind it."""
    args = ["-m", "loadtest.bench.bare_app", "--host", "127.0.0.1"]
    return processes.serving(args, ready_path="/openapi.json", env=processes.tree_env())


def status_counts(server: Server) -> dict[str, int]:
    """h2h_requests_total summed by status (empty for a server without our metrics)."""
    r = httpx.get(f"{server.base}/metrics", timeout=10.0)
    if r.status_code != 200:
        return {}
    counts: Counter[str] = Counter()
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            if s.name == "h2h_requests_total" and s.labels.get("route", "").endswith(("/predict", "/infer")):
                counts[s.labels["status"]] += int(s.value)
    return dict(counts)
