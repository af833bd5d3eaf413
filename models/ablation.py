"""Seeded MHA vs SHA comparison: learning-rate sweep, N seeds per variant, summary and plot.

    python -m models.ablation --seeds 5 --lrs 5e-4,1e-3,2e-3,4e-3 --epochs 8 [--variants mha-admin,sha-admin]
    python -m models.ablation --summary-only

For each variant (mha-admin, sha-admin, sha-pre, sha-post) a short sweep trains one seed per
learning rate (--sweep-epochs), picks the rate with the best validation accuracy, then trains
--seeds seeds at that rate for --epochs. Every finished run is appended at once (atomically,
under a lock) to --out (default docs/accuracy.json), so an interrupted ablation resumes where
it stopped: a run already in the records is never retrained. Every run's learning-rate schedule
decays to zero at its last epoch, so runs of different --epochs are different training budgets,
each annealed; the summary (models.study.report: accuracy against budget, each architecture's
budget chosen by validation accuracy, SHA − MHA with a Welch 95% interval, equal training time)
is printed and written beside the records as .md, with a .png. All seeds share one data split.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract import atomic
from contract.accuracy import (
    VARIANTS,
    RecordsError,
    append_record,
    best_lr,
    diverged_record,
    load_records,
    recipe,
    record_from_metrics,
    run_key,
    terms_of,
)
from contract.cli import OneLineArgumentParser, fail, settings_from, settings_parser, validation_message
from contract.flags import ModelPreset
from models.config import PRESETS
from models.data import WordNetMissingError, data_fingerprint, load_wordnet, split
from models.settings import TrainSettings
from models.study.report import summary_markdown


class AblationSettings(BaseSettings):
    """The ablation's options, one field per flag (flags and help are generated from it)."""

    model_config = SettingsConfigDict(env_prefix="H2H_ABLATION_", extra="forbid", protected_namespaces=())

    variants: str = Field(default=",".join(VARIANTS), description="comma list (default: all four)")
    seeds: int = Field(default=3, description="seeds per variant at its chosen rate")
    seed_base: int = Field(default=1, description="seeds are seed-base .. seed-base+seeds-1")
    lrs: str = Field(default="1e-3", description="comma list of learning rates to sweep")
    epochs: int = Field(default=4, description="epochs of each seed run")
    sweep_epochs: int = Field(default=1, description="epochs of each sweep run")
    preset: ModelPreset = "small"
    attn_init: str = Field(default="combined", description="combined or per_head")
    batch_size: int = Field(default=64, description="training batch size")
    dropout: float = Field(default=0.1, description="dropout")
    max_len: int | None = Field(default=None, description="longest sequence (default: the preset's)")
    out: Path = Field(default=Path("docs/accuracy.json"), description="records file (.json)")
    runs: Path = Field(default=Path("runs/ablation"), description="where run folders go")
    device: str = Field(default="auto", description="auto, cpu or cuda")
    threads: int | None = Field(default=None, description="torch threads (default: torch's)")
    wordnet_dir: Path = Field(
        default=TrainSettings.model_fields["wordnet_dir"].default, description="WordNet dict folder"
    )
    summary_only: bool = Field(default=False, description="rewrite the summary from --out, train nothing")
    dry_run: bool = Field(default=False, description="print the runs that would train, train nothing")

    @property
    def variant_list(self) -> list[str]:
        return [v for v in self.variants.split(",") if v]

    @property
    def lr_list(self) -> list[float]:
        """The rates to sweep, sorted (ValueError when --lrs is no comma list of numbers)."""
        return sorted({float(x) for x in self.lrs.split(",") if x.strip()})


def build_parser() -> OneLineArgumentParser:
    return settings_parser(AblationSettings, "python -m models.ablation", __doc__.split("\n\n")[0])


def parse_args(argv: list[str] | None) -> AblationSettings:
    """Flags, checked as a whole before any training starts (each problem: one line, exit 2)."""
    p = build_parser()
    a = settings_from(AblationSettings, p.parse_args(argv))
    unknown = [v for v in a.variant_list if v not in VARIANTS]
    if unknown or not a.variant_list:
        p.error(f"--variants: unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(VARIANTS)}")
    try:
        a.lr_list  # noqa: B018  (parsing is the check)
    except ValueError:
        p.error(f"--lrs: not a comma list of numbers: {a.lrs!r}")
    if not a.lr_list or not all(0 < lr < 1 for lr in a.lr_list):
        p.error(f"--lrs: every rate must be in (0, 1), got {a.lrs!r}")
    for flag in ("seeds", "epochs", "sweep_epochs"):
        if getattr(a, flag) < 1:
            p.error(f"--{flag.replace('_', '-')}: must be at least 1")
    if a.out.suffix != ".json":
        p.error(f"--out: the records file must end in .json, got {a.out}")
    return a


# flags that pass to every run's TrainSettings under their own names
RUN_FLAGS = ("preset", "batch_size", "attn_init", "dropout", "max_len", "device", "threads", "wordnet_dir")


def settings_for(a: AblationSettings, variant: str, lr: float, seed: int, epochs: int) -> TrainSettings:
    arch, norm = VARIANTS[variant]
    name = f"{variant}-{a.preset}-{a.attn_init}-e{epochs}-lr{lr:g}-s{seed}"
    same = {k: getattr(a, k) for k in RUN_FLAGS}
    run = {"epochs": epochs, "lr": lr, "seed": seed}
    return TrainSettings(arch=arch, norm=norm, out=a.runs, name=name, **run, **same)


def terms(a: AblationSettings, epochs: int, data_sha256: str) -> dict[str, Any]:
    """The equal-terms fields of a run (contract.accuracy.TERMS), known before it trains.

    `patience` stays None: the ablation no longer stops early, and its key must equal the one
    the records of earlier fixed-epoch runs carry, so they are never retrained.
    """
    max_len = a.max_len or PRESETS[a.preset].max_len
    settings = settings_for(a, next(iter(VARIANTS)), 1e-3, a.seed_base, epochs).model_dump()
    return {
        "preset": a.preset,
        "epochs": epochs,
        "patience": None,
        "attn_init": a.attn_init,
        "batch_size": a.batch_size,
        "max_len": max_len,
        "dropout": a.dropout,
        "data_sha256": data_sha256,
        "recipe": recipe(settings),
    }


def cpu_name() -> str:
    """The CPU model, so timings from different machines are never read as one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class Runner:
    """Trains a run unless the records already hold it; appends each new record at once."""

    def __init__(self, a: AblationSettings, data_sha256: str) -> None:
        self.a, self.data_sha256 = a, data_sha256
        self.records = load_records(a.out)
        self.done = {run_key(r) for r in self.records}
        self.planned: list[str] = []

    def ensure(self, variant: str, lr: float, seed: int, epochs: int, phase: str) -> None:
        t = terms(self.a, epochs, self.data_sha256)
        key = run_key({"variant": variant, "lr": lr, "seed": seed, **t})
        if key in self.done:
            return
        s = settings_for(self.a, variant, lr, seed, epochs)
        if self.a.dry_run:
            self.planned.append(
                f"{phase}: {variant} lr {lr:g} seed {seed} epochs {epochs} -> {s.out / s.name}"
            )
            self.done.add(key)
            return
        from models.train import train  # torch is imported only when something trains

        try:
            m = train(s)
            record = record_from_metrics(variant, lr, seed, phase, m)
        except FloatingPointError as exc:
            record = diverged_record(variant, lr, seed, phase, t, str(exc))
        record["cpu"] = cpu_name()
        append_record(self.a.out, record)
        self.records.append(record)
        self.done.add(key)


def run_plan(a: AblationSettings, runner: Runner) -> None:
    """Sweep (when more than one rate is given), then the seeds at each variant's best rate.

    Seeds go round the variants (every variant's first seed, then every second one, ...), so an
    ablation stopped part-way leaves the variants with equal seed counts, give or take one.
    """
    seeds = list(range(a.seed_base, a.seed_base + a.seeds))
    chosen = {}
    for v in a.variant_list:
        if len(a.lr_list) > 1:
            pending = len(runner.planned)
            for lr in a.lr_list:
                runner.ensure(v, lr, seeds[0], a.sweep_epochs, "sweep")
            if len(runner.planned) > pending:  # a dry run whose sweep is not done yet
                runner.planned.append(f"seeds: {v} seeds {seeds} epochs {a.epochs} at the best swept rate")
                continue
            sweep_terms = terms_of(terms(a, a.sweep_epochs, runner.data_sha256))
            chosen[v] = best_lr(runner.records, v, a.lr_list, sweep_terms, seeds[0])
            print(f"{v}: best learning rate {chosen[v]:g} (of {', '.join(f'{x:g}' for x in a.lr_list)})")
        else:
            chosen[v] = a.lr_list[0]
    for seed in seeds:
        for v, lr in chosen.items():
            runner.ensure(v, lr, seed, a.epochs, "seed")


def write_summary(out: Path) -> str:
    """Summary Markdown beside the records, linking the plot drawn beside it (matplotlib is a
    dependency of the project's [all] extra, which training needs anyway)."""
    from models.study.plot import plot_curves  # matplotlib only when a summary is drawn

    records = load_records(out)
    png = out.with_suffix(".png")
    md = summary_markdown(records, png.name if plot_curves(records, png) else None)
    atomic.write_text(out.with_suffix(".md"), md)
    return md


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    try:
        for v in a.variant_list:  # every variant's settings checked before hours of training start
            settings_for(a, v, a.lr_list[0], a.seed_base, a.epochs)
        if not a.summary_only:
            data_sha256 = data_fingerprint(
                split(load_wordnet(a.wordnet_dir), seed=TrainSettings().split_seed)
            )
            runner = Runner(a, data_sha256)
            run_plan(a, runner)
            if a.dry_run:
                print("\n".join(runner.planned) or "nothing to train: every run is in the records")
                return 0
        print(write_summary(a.out))
    except ValidationError as exc:
        fail(validation_message(exc))
    except (WordNetMissingError, RecordsError) as exc:
        fail(str(exc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
