"""Which models a run measures: the repository's folders or the service's ready models, and the
names a user gives (a folder name, or mha/sha for the single model of that arch) resolved against
them. The sweep, the capacity search and the benchmarks all resolve models here, so a name means
the same thing to every program.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.manifest import load_manifest
from loadtest.client import load as hc

ARCHES = ("mha", "sha")


class PlanError(ValueError):
    """A run cannot be planned as asked: a model or shape the user named does not exist or does
    not fit (one line for the user, exit 2)."""


@dataclass
class ModelInfo:
    name: str
    arch: str
    layers: int
    heads: int
    max_sequence_length: int
    vocab_size: int
    manifest: dict[str, Any]
    dir: Path | None = None
    server_max_batch: int | None = None
    server_provider: str | None = None
    server_variant: str | None = None


def repo_models(repo: Path) -> dict[str, ModelInfo]:
    if not repo.is_dir():
        raise PlanError(f"model repository {repo} is not a folder (--repo)")
    out = {}
    for d in sorted(
        p for p in repo.iterdir() if (p / "manifest.json").is_file() and not p.name.startswith(".")
    ):
        try:
            m = load_manifest(d)
        except Exception as exc:  # a broken folder should not hide the others
            print(f"warning: skipping {d.name}: {str(exc).splitlines()[0]}", file=sys.stderr)
            continue
        out[d.name] = ModelInfo(
            d.name,
            m.arch,
            m.layers,
            m.heads,
            m.max_sequence_length,
            m.vocab_size,
            m.model_dump(mode="json"),
            dir=d,
        )
    return out


def service_models(url: str) -> dict[str, ModelInfo]:
    out = {}
    for s in hc.list_models(url):
        m = s.get("manifest") or {}
        if s.get("state") != "ready" or not m:
            continue
        out[s["name"]] = ModelInfo(
            s["name"],
            m["arch"],
            m["layers"],
            m["heads"],
            m["max_sequence_length"],
            m["vocab_size"],
            m,
            server_provider=s.get("provider"),
            server_variant=s.get("variant"),
        )
    return out


def resolve(names: list[str], available: dict[str, ModelInfo], where: str) -> list[str]:
    """Exact folder names, or an arch alias (mha/sha) meaning the single model of that arch."""
    out = []
    for n in names:
        if n in available:
            out.append(n)
            continue
        if n in ARCHES:
            hits = [k for k, v in available.items() if v.arch == n]
            if len(hits) == 1:
                out.append(hits[0])
                continue
            if hits:
                raise PlanError(f"{n!r} is ambiguous in {where}: {', '.join(hits)} (name one with --models)")
            raise PlanError(f"no {n} model in {where}")
        have = ", ".join(available) or "none"
        raise PlanError(f"no model {n!r} in {where} (have: {have})")
    return list(dict.fromkeys(out))
