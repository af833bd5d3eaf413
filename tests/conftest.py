"""Shared fixtures: the committed WordNet fixture and tiny trained runs built from it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from loadtest import processes
from loadtest.processes import free_port, stop, wait_until  # noqa: F401  (the tests' process toolkit)

if TYPE_CHECKING:
    from models.settings import TrainSettings
    from service.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_WORDNET = Path(__file__).parent / "fixtures" / "wordnet"


@pytest.fixture(scope="session")
def wordnet_dir() -> Path:
    return FIXTURE_WORDNET


def tiny_train_settings(out: Path, **kw: Any) -> TrainSettings:
    """Tiny-preset settings on the committed fixture (batch 16, every word in the vocabulary):
    the base the training tests vary, so each names only what it changes."""
    from models.settings import TrainSettings

    base: dict[str, Any] = dict(
        preset="tiny", batch_size=16, wordnet_dir=FIXTURE_WORDNET, out=out, min_freq=1
    )
    return TrainSettings(**{**base, **kw})


def cpu_service_settings(repo: Path, **kw: Any) -> ServiceSettings:
    """One-thread CPU settings over `repo` (batches of up to 8, 1 ms queue delay): the base the
    in-process service tests vary, so each names only what it changes."""
    from service.settings import ServiceSettings

    base: dict[str, Any] = dict(
        model_repository=repo,
        provider="cpu",
        intra_op_threads=1,
        inter_op_threads=1,
        max_batch_size=8,
        max_queue_delay_ms=1.0,
    )
    return ServiceSettings(**{**base, **kw})


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny MHA (2L-4H) and SHA (8L-1H, Admin) runs trained 30 steps on the fixture.

    Session-scoped: every test that needs a trained checkpoint shares these two.
    """
    from models.train import train

    out = tmp_path_factory.mktemp("runs")
    runs = {}
    for arch in ("mha", "sha"):
        s = tiny_train_settings(out, arch=arch, norm="admin", epochs=1, max_steps=30, seed=1)
        train(s)
        runs[arch] = out / s.run_name()
    return runs


@pytest.fixture(scope="session")
def tiny_repo(tiny_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository with `mha-tiny` and `sha-tiny` exported from `tiny_runs` (fp32 only).

    Session-scoped, shared by the export, service and loadtest tests.
    """
    from export.api import export_run

    repo = tmp_path_factory.mktemp("model_repository")
    for arch, run_dir in tiny_runs.items():
        export_run(run_dir, repo, name=f"{arch}-tiny")
    return repo


def start_service(repo: Path, env: dict[str, str], log: Path, *flags: str) -> tuple[subprocess.Popen, str]:
    """`python -m service` on a free loopback port, its output in `log`, not waited for (each test
    waits for what it needs with wait_until): the live tests run the real CLI, as the container
    does. Returns the process and its host:port."""
    port = free_port()
    proc = processes.start([*processes.service_args(repo, *flags), "--port", str(port)], log, env=env)
    return proc, f"127.0.0.1:{port}"


@pytest.fixture(scope="session")
def tiny_random_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-init pair (`mha-tiny-random` 2L-4H, `sha-tiny-random` 8L-1H) with model.onnx
    and the fused model.opt.onnx: the profile and the PyTorch reference run on it."""
    from export.api import export_random
    from export.settings import ExportOptions

    repo = tmp_path_factory.mktemp("random_repository")
    for arch in ("mha", "sha"):
        export_random("tiny", arch, repo, options=ExportOptions(optimize=True))
    return repo
