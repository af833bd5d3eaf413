"""Layering the service and the load tester rely on: neither may pull in torch, nor the training
and export packages (what they share with those lives in the torch-free `contract` package); the
GPU round's PyTorch tools live in `torchbench`, which nothing below it imports."""

from __future__ import annotations

import ast
import importlib
import io
import re
import subprocess
import sys
import tokenize
from collections import defaultdict
from pathlib import Path

from pydantic_settings import BaseSettings

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


# What a front process and the supervisor import (service.front_process.main's imports, the
# supervisor's module, the front's app built on an EngineLink), and whether ONNX Runtime came with it.
FRONT_PROBE = """
import sys
{plant}
import service.supervisor, service.front_process, service.engine_process, service.__main__
from service.app import create_app
from service.front.link import EngineLink
from service.http.server import serve
from service.metrics import FrontMetrics, families
from service.settings import ServiceSettings
settings = ServiceSettings()
create_app(settings, engine=EngineLink(settings, "ipc:///nonexistent"), metrics=FrontMetrics())
print("onnxruntime" in sys.modules)
"""


def _front_loads_onnxruntime(plant: str = "") -> bool:
    out = subprocess.run(
        [sys.executable, "-c", FRONT_PROBE.format(plant=plant)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=ROOT,
    )
    return out.stdout.strip().splitlines()[-1] == "True"


def test_fronts_and_supervisor_import_no_onnxruntime() -> None:
    """Only the engine process needs ONNX Runtime: a front or the supervisor that loads it costs
    its memory (about 40 MB each) for nothing. The seam they share is service.messages."""
    assert not _front_loads_onnxruntime()
    assert _front_loads_onnxruntime("import service.engine.core"), "the probe must see a planted import"


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


def test_variant_file_names_are_stated_once() -> None:
    """The variant files (model.onnx, model.gpu.onnx, ...) are spelled as string literals in
    contract/manifest.py alone; export, the service and the load tester name them through it."""
    names = {"model.onnx", "model.opt.onnx", "model.fp16.onnx", "model.gpu.onnx"}
    holders = sorted(
        str(p.relative_to(ROOT))
        for pkg in (*PACKAGES, "scripts")
        for p in (ROOT / pkg).rglob("*.py")
        if names & _string_constants(p)
    )
    assert holders == ["contract/manifest.py"], holders


# Bottom-up: each package imports only the ones before it (docs/architecture.md draws the same).
PACKAGES = ("contract", "models", "export", "service", "loadtest", "torchbench", "demo")
TORCH_FREE = ("contract", "service", "loadtest")
TORCH_SIDE = {"torch", "safetensors", "models", "export", "torchbench"}


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


def _folder(name: str, modules: dict[str, Path]) -> str:
    """The package (folder) a module lives in; a package's __init__ is its own folder."""
    return name if modules[name].name == "__init__.py" else name.rpartition(".")[0]


def folder_graph(graph: dict[str, set[str]], modules: dict[str, Path]) -> dict[str, set[str]]:
    """Folder -> folders its modules import, leaving out imports between a folder and the folders
    inside it (a package's CLI uses its sub-packages, which use its shared modules)."""
    out: dict[str, set[str]] = defaultdict(set)
    for name, deps in graph.items():
        a = _folder(name, modules)
        out[a]
        for dep in deps:
            b = _folder(dep, modules)
            if not (a == b or a.startswith(b + ".") or b.startswith(a + ".")):
                out[a].add(b)
                out[b]
    return dict(out)


def test_no_import_cycles_between_folders() -> None:
    """Nor does one package (folder) import another that imports it back: sub-packages of one
    package and the top-level packages each read bottom-up."""
    modules = _module_names()
    graph = {name: _imports(path, name, modules) for name, path in modules.items()}
    folders = folder_graph(graph, modules)
    assert "contract" in folders["loadtest.report"], folders["loadtest.report"]
    assert _cycle(folders) is None, " -> ".join(_cycle(folders) or [])


def _top_level_imports(path: Path) -> set[str]:
    """The top-level packages `path` imports anywhere in its body (lazy imports in functions
    count: a deferred torch import still pulls torch into a torch-free program when it runs)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found


def layer_breaches(root: Path = ROOT) -> list[str]:
    """Every import that breaks the layering: a package importing one after it in PACKAGES, or a
    torch-free package's module importing torch, models/, export/ or torchbench/."""
    out = []
    for i, pkg in enumerate(PACKAGES):
        later = set(PACKAGES[i + 1 :]) | (TORCH_SIDE if pkg in TORCH_FREE else set())
        for path in sorted((root / pkg).rglob("*.py")):
            out += [f"{path.relative_to(root)} imports {m}" for m in sorted(_top_level_imports(path) & later)]
    return out


def test_each_package_imports_only_the_ones_below_it() -> None:
    """contract, service and loadtest never import torch, models/, export/ or torchbench/, not even
    inside a function; models/ no longer reaches into the load tester (its rows are contract's);
    torchbench (the GPU round's PyTorch tools) is imported by no package, the round runs it as
    `python -m torchbench.<module>`."""
    assert layer_breaches() == []


def test_the_layer_check_sees_a_planted_torch_import(tmp_path: Path) -> None:
    """A copy of loadtest/ with one deferred torch import planted fails the check."""
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
    plan = tmp_path / "loadtest" / "plan.py"
    plan.write_text("def f():\n    import torch  # planted\n")
    assert layer_breaches(tmp_path) == ["loadtest/plan.py imports torch"]


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


def _says_why(lines: list[str], lineno: int) -> bool:
    """A comment on the import's line, or on the line above the run of imports (blank lines
    between them included) it belongs to."""
    if "#" in lines[lineno - 1]:
        return True
    i = lineno - 2
    while i >= 0 and (not lines[i].strip() or lines[i].strip().startswith(("import ", "from "))):
        i -= 1
    return i >= 0 and lines[i].strip().startswith("#")


def _function_imports(path: Path) -> list[int]:
    """Lines of the imports inside a function of `path` with no comment on that line or the
    line above saying why (a heavy optional dependency is the one reason to defer an import)."""
    lines = path.read_text().splitlines()
    bare = []
    for fn in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(fn):
                if isinstance(node, ast.Import | ast.ImportFrom) and not _says_why(lines, node.lineno):
                    bare.append(node.lineno)
    return sorted(set(bare))


def test_imports_are_at_the_top_unless_a_comment_says_why() -> None:
    """The import graph reads from each module's head: an import inside a function is a deliberate
    deferral of a heavy optional dependency (torch, matplotlib, pynvml, uvicorn), said in a comment."""
    bare = {
        f"{path.relative_to(ROOT)}:{n}" for path in _module_names().values() for n in _function_imports(path)
    }
    assert not bare, sorted(bare)


def _texts(path: Path) -> list[tuple[str, int]]:
    """The help and description texts stated in `path`, as written (an f-string by its source)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg == "helps":
                    out.append(("helps= (a second description of the flags)", node.lineno))
                elif kw.arg in ("help", "description") and isinstance(kw.value, ast.Constant | ast.JoinedStr):
                    text = kw.value.value if isinstance(kw.value, ast.Constant) else ast.unparse(kw.value)
                    out.append((str(text), node.lineno))
    return out


def duplicate_texts(paths: list[Path]) -> dict[str, list[str]]:
    where: dict[str, list[str]] = defaultdict(list)
    for path in paths:
        for text, line in _texts(path):
            where[text].append(f"{path.relative_to(ROOT)}:{line}")
    return {t: w for t, w in where.items() if len(w) > 1 or t.startswith("helps=")}


def test_each_flag_is_described_once() -> None:
    """A flag's help is its settings field's description, written once: a flag several programs
    take shares one (contract/flags.py), and no table of help texts overrides the fields."""
    paths = [*_module_names().values(), *(ROOT / "scripts").glob("*.py")]
    assert duplicate_texts(paths) == {}


def _programs() -> dict[str, type]:
    """Every settings class a program hands to settings_flags/settings_parser, by module:class."""
    found = {}
    for name, path in _module_names().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") in (
                "settings_flags",
                "settings_parser",
            ):
                arg = node.args[1 if node.func.id == "settings_flags" else 0]  # type: ignore[attr-defined]
                if isinstance(arg, ast.Name) and name != "contract.cli":
                    found[f"{name}:{arg.id}"] = getattr(importlib.import_module(name), arg.id)
    return found


def test_every_program_reads_its_flags_from_the_environment_too() -> None:
    """One rule: every program takes each flag from the command line or, failing that, from
    H2H_<PROGRAM>_<FLAG> (the service: H2H_<FLAG>); --help names the variable."""
    programs = _programs()
    assert {
        "service.__main__:ServiceSettings",
        "loadtest.cli:LoadtestSettings",
        "demo.run:DemoSettings",
    } <= set(programs)
    wrong = {
        k: c
        for k, c in programs.items()
        if not issubclass(c, BaseSettings) or not str(c.model_config.get("env_prefix", "")).startswith("H2H_")
    }
    assert not wrong, sorted(wrong)


def test_tests_mirror_the_packages() -> None:
    """A package's tests live in tests/<package>/ (the deploy/ folder's in tests/deploy/); only the
    checks across the whole project (this file, the docs) stay at tests/."""
    tests = ROOT / "tests"
    misplaced = [
        str(p.relative_to(tests))
        for p in tests.rglob("test_*.py")
        if p.parent != tests and p.relative_to(tests).parts[0] not in (*PACKAGES, "deploy")
    ]
    at_top = sorted(p.name for p in tests.glob("test_*.py"))
    assert not misplaced and at_top == ["test_docs.py", "test_structure.py"], (misplaced, at_top)


def _prose(path: Path) -> list[tuple[int, str]]:
    """The docstrings and comments of `path`, with their first line numbers."""
    src = path.read_text()
    out = [
        (t.start[0], t.string)
        for t in tokenize.generate_tokens(io.StringIO(src).readline)
        if t.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body[0] if node.body else None
            if (
                isinstance(body, ast.Expr)
                and isinstance(body.value, ast.Constant)
                and isinstance(body.value.value, str)
            ):
                out.append((body.lineno, body.value.value))
    return out


def _top_names(path: Path) -> set[str]:
    """What a module defines or imports at any depth (a class's methods included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            out.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            out.update((a.asname or a.name).split(".")[0] for a in node.names)
    return out


FILE_SUFFIXES = {"log", "json", "py", "md", "csv", "png", "txt"}


def stale_references(modules: dict[str, Path]) -> list[str]:
    """Dotted names of ours in docstrings and comments (`service.http.protocol`, `service.api.v1.PROTOCOL`)
    that name no module, or nothing that module defines: what a move or rename left behind."""
    names: dict[str, set[str]] = {}
    pattern = re.compile(rf"\b((?:{'|'.join(PACKAGES)})(?:\.[A-Za-z_][A-Za-z_0-9]*)+)")
    out = []
    for path in sorted(modules.values()):
        for line, text in _prose(path):
            for ref in pattern.findall(text):
                parts = ref.split(".")
                k = len(parts)
                while k and ".".join(parts[:k]) not in modules:
                    k -= 1
                if k == len(parts) or (k and parts[k] in FILE_SUFFIXES):
                    continue
                owner = ".".join(parts[:k])
                if not k or parts[k] not in names.setdefault(owner, _top_names(modules[owner])):
                    out.append(f"{path.relative_to(ROOT)}:{line}: {ref}")
    return out


# issue 36 rewrites these files: fixed on top of it once it lands
def test_docstrings_and_comments_name_what_exists() -> None:
    assert stale_references(_module_names()) == []


def test_every_logger_is_named_after_its_module() -> None:
    """A module's own logger is `logging.getLogger(__name__)`: a log line's name is where it was
    written (another library's logger, quieted by name, is no module's own)."""
    named = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in _module_names().values()
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Call)
        and ast.unparse(node.value.func) == "logging.getLogger"
        and ast.unparse(node.value) != "logging.getLogger(__name__)"
    ]
    assert named == [], named
