"""Layering the service and the load tester rely on: neither may pull in torch."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import service.app, service.__main__, loadtest.cli, loadtest.bench_overhead, loadtest.capacity_cli
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "onnx", "safetensors"})
print(",".join(heavy))
"""


def test_service_and_loadtest_import_no_torch() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "", out.stdout
