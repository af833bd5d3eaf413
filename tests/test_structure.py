"""Layering the service and the load tester rely on: neither may pull in torch, nor the training
and export packages (what they share with those lives in the torch-free `contract` package)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import sys
import service.app, service.__main__, loadtest.cli, loadtest.bench.overhead, loadtest.capacity.cli
import loadtest.bench.cuda_io, loadtest.sweep.inproc, contract.manifest, contract.tokenizer, contract.cli
import loadtest.profile.cli, loadtest.profile.runner
top = {m.split(".")[0] for m in sys.modules}
print(",".join(sorted(top & {"torch", "onnx", "safetensors", "models", "export"})))
"""


def test_service_and_loadtest_import_no_torch() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "", out.stdout


def _string_constants(path: Path) -> set[str]:
    return {n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant)}


def test_onnx_tensor_names_are_stated_once() -> None:
    """The graph's input and output names appear as string literals in contract/tensors.py
    alone; every other module (the v1 JSON fields of the same names too) names them through it."""
    sources = [
        p
        for pkg in ("contract", "models", "export", "service", "loadtest", "scripts")
        for p in (ROOT / pkg).rglob("*.py")
    ]
    holders = sorted(
        str(p.relative_to(ROOT)) for p in sources if {"logits", "embedding"} & _string_constants(p)
    )
    assert holders == ["contract/tensors.py"], holders
