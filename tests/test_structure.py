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
import service.http.app, service.__main__, loadtest.cli, loadtest.bench.overhead, loadtest.capacity.cli
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


PACKAGES = ("contract", "models", "export", "service", "loadtest")


def _module_names() -> dict[str, Path]:
    """Every module of every package, by dotted name (a package by its own name, for __init__)."""
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The modules of ours `name` imports anywhere in its body (lazy imports in functions count:
    a cycle they close still ties the two modules together)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m in modules and m != name}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle in `graph` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles() -> None:
    """No module of ours imports, directly or through others, a module that imports it back; so each
    package reads bottom-up and any module can be imported on its own."""
    modules = _module_names()
    graph = {name: _imports(path, name, modules) for name, path in modules.items()}
    assert "loadtest.sweep.run" in graph["loadtest.cli"], "lazy imports inside functions are edges too"
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_every_torch_free_module_imports() -> None:
    """Each module of the torch-free packages imports without error (names moved or misspelt in an
    import that no test reaches fail here, not in a user's run)."""
    names = [n for n in _module_names() if n.split(".")[0] in ("contract", "service", "loadtest")]
    probe = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\n"
    out = subprocess.run(
        [sys.executable, "-c", probe, *names], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr[-2000:]
