"""Train an MHA or SHA encoder on WordNet supersenses.

    python -m models.train --arch sha --preset small --norm admin [--epochs 8]

Every epoch runs: the learning rate warms up, then decays linearly to zero at the last step, so
a run's --epochs is its training budget and its model is annealed (early stopping is left out on
purpose: a run cut short by it keeps a rate that never decayed). Writes
runs/<arch>-<preset>-<norm>/ (see models.checkpoint) after every epoch, so an interrupted run
keeps its last complete epoch; the final folder holds the weights of the epoch with the best
validation accuracy and their test accuracy.
"""

from __future__ import annotations

import argparse
import math
import platform
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from torch import Tensor

from contract.cli import fail, settings_from, settings_parser
from contract.tokenizer import Tokenizer
from models import admin
from models.checkpoint import save_run
from models.config import ModelConfig, flops_per_token, from_preset
from models.data import LEXNAMES, Example, WordNetMissingError, data_fingerprint, load_wordnet, split
from models.encoder import Encoder, build, count_parameters
from models.settings import TrainSettings

console = Console(stderr=True)


@dataclass
class Encoded:
    ids: list[list[int]]
    labels: list[int]

    @classmethod
    def of(cls, examples: list[Example], tok: Tokenizer) -> Encoded:
        return cls([tok.encode(e.text) for e in examples], [e.label for e in examples])

    def __len__(self) -> int:
        return len(self.ids)


def collate(rows: list[list[int]], labels: list[int], pad_id: int) -> tuple[Tensor, Tensor, Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask, torch.tensor(labels)


def bucketed_batches(
    data: Encoded, batch_size: int, rng: random.Random, pad_id: int
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Shuffle, sort within pools of 50 batches by length, shuffle the batches.

    Sorting inside pools keeps padding low (a few percent) while every epoch still sees
    a different mix of examples in each batch.
    """
    order = list(range(len(data)))
    rng.shuffle(order)
    pool = batch_size * 50
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: len(data.ids[i]))
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    for b in batches:
        yield collate([data.ids[i] for i in b], [data.labels[i] for i in b], pad_id)


@torch.no_grad()
def accuracy(model: Encoder, data: Encoded, device: torch.device, batch_size: int = 256) -> float:
    model.eval()
    order = sorted(range(len(data)), key=lambda i: len(data.ids[i]))
    correct = 0
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        ids, mask, y = collate([data.ids[i] for i in idx], [data.labels[i] for i in idx], model.cfg.pad_id)
        logits, _ = model(ids.to(device), mask.to(device))
        correct += int((logits.argmax(-1).cpu() == y).sum())
    model.train()
    return correct / max(1, len(data))


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        fail("--device cuda asked for, but torch sees no CUDA GPU; use --device cpu")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


@dataclass
class Prepared:
    """Tokenizer, model config and encoded splits: everything a run trains and tests on."""

    tok: Tokenizer
    cfg: ModelConfig
    train: Encoded
    validation: Encoded
    test: Encoded
    data_sha256: str


def prepare(s: TrainSettings) -> Prepared:
    """Load and split WordNet, build the tokenizer and the config, encode every split.

    The tokenizer's max length is set from the config *before* any split is encoded, so
    the model trains on exactly the truncation the saved tokenizer serves with.
    """
    splits = split(load_wordnet(s.wordnet_dir), seed=s.split_seed)
    tok = Tokenizer.build((e.text for e in splits.train), min_freq=s.min_freq, max_size=s.max_vocab)
    cfg: ModelConfig = from_preset(
        s.preset,
        s.arch,
        vocab_size=tok.vocab_size,
        num_labels=len(LEXNAMES),
        norm=s.norm,
        dropout=s.dropout,
        attn_init=s.attn_init,
        max_len=s.max_len,
    )
    tok.max_length = cfg.max_len
    train_data, val_data, test_data = (
        Encoded.of(x, tok) for x in (splits.train, splits.validation, splits.test)
    )
    return Prepared(tok, cfg, train_data, val_data, test_data, data_fingerprint(splits))


def make_optimizer(
    model: Encoder, s: TrainSettings, total_steps: int, device: torch.device, capturable: bool = False
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW (no decay on vectors and omega) with linear warmup then linear decay to 0.

    `capturable`: its step may be captured in a CUDA graph (models.train_cost's graph mode).
    """
    warmup = max(1, int(total_steps * s.warmup_frac))
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "omega" in n]
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "omega" not in n]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=s.lr,
        # one fused kernel instead of ~10 small ops per parameter tensor: the deep SHA model
        # has 4x the tensors of MHA, so the per-tensor loop costs it most
        fused=device.type in ("cpu", "cuda"),
        capturable=capturable,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda step: min((step + 1) / warmup, max(0.0, (total_steps - step) / max(1, total_steps - warmup))),
    )
    return opt, sched


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TextColumn("{task.fields[tps]:,.0f} tok/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


@dataclass
class Fit:
    """What the epoch loop produced: the best epoch's weights and the per-epoch record."""

    best_state: dict[str, Tensor]
    best_val: float
    best_epoch: int
    val_curve: list[float]
    epoch_train_s: list[float]  # cumulative optimizer-step seconds at each epoch's end
    losses: list[tuple[int, float]]
    steps: int
    tokens: int
    epoch_wall_s: list[float] = field(default_factory=list)  # cumulative, validation and saving included


def fit(
    model: Encoder, data: Prepared, s: TrainSettings, device: torch.device, total_steps: int, run_dir: Path
) -> Fit:
    """Train for `total_steps`, validating (and saving the best weights) after each epoch.

    Validation and checkpoint writes are left out of `epoch_train_s`, so equal-wall-clock
    comparisons between models measure training alone; `epoch_wall_s` includes them.
    """
    opt, sched = make_optimizer(model, s, total_steps, device)
    rng = random.Random(s.seed)
    state = {"step": 0, "tokens": 0, "running": 0.0, "seen": 0, "train_s": 0.0}
    losses: list[tuple[int, float]] = []
    out = Fit({}, -1.0, 0, [], [], losses, 0, 0)
    model.train()
    start = time.perf_counter()
    with _progress() as progress:
        task = progress.add_task(
            f"{data.cfg.arch} {data.cfg.label}", total=total_steps, loss=float("nan"), tps=0.0
        )
        for _ in range(s.epochs):
            t0 = time.perf_counter()
            state["running"], state["seen"] = 0.0, 0  # logged losses never span two epochs
            for ids, mask, y in bucketed_batches(data.train, s.batch_size, rng, data.cfg.pad_id):
                _step(model, opt, sched, s, ids.to(device), mask.to(device), y.to(device), state)
                if state["step"] % s.log_every == 0 or state["step"] == total_steps:
                    _log(progress, task, state, losses, s, t0)
                if state["step"] >= total_steps:
                    break
            state["train_s"] += time.perf_counter() - t0
            out.epoch_train_s.append(round(state["train_s"], 3))
            _validate(model, data, device, out, run_dir)
            out.epoch_wall_s.append(round(time.perf_counter() - start, 3))
            if state["step"] >= total_steps:
                break
    out.steps, out.tokens = int(state["step"]), int(state["tokens"])
    return out


def _validate(model: Encoder, data: Prepared, device: torch.device, out: Fit, run_dir: Path) -> None:
    """Validation accuracy after an epoch; a new best is kept in memory and saved (incomplete)."""
    val_acc = accuracy(model, data.validation, device)
    out.val_curve.append(val_acc)
    epoch = len(out.val_curve)
    console.print(f"epoch {epoch}: validation accuracy {val_acc:.4f}")
    if val_acc > out.best_val:
        out.best_val, out.best_epoch = val_acc, epoch
        out.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        partial = {"complete": False, "epoch": epoch, "validation_accuracy": val_acc}
        save_run(run_dir, model.cpu(), data.tok, list(LEXNAMES), partial)
        model.to(device)


def _step(
    model: Encoder,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    s: TrainSettings,
    ids: Tensor,
    mask: Tensor,
    y: Tensor,
    state: dict[str, Any],
) -> None:
    """One optimizer step; raises FloatingPointError when the loss stops being finite."""
    logits, _ = model(ids, mask)
    loss = torch.nn.functional.cross_entropy(logits, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), s.clip_norm)
    opt.step()
    sched.step()
    state["step"] += 1
    state["tokens"] += int(mask.sum())
    loss_value = loss.item()
    if not math.isfinite(loss_value):
        raise FloatingPointError(f"loss became {loss_value} at step {state['step']}: training diverged")
    state["running"] += loss_value
    state["seen"] += 1


def _log(
    progress: Progress, task: Any, state: dict[str, Any], losses: list, s: TrainSettings, t0: float
) -> None:
    """Record the mean loss since the last log point and refresh the bar (plain lines off a TTY)."""
    mean = state["running"] / state["seen"]
    step = state["step"]
    losses.append((step, mean))
    tps = state["tokens"] / max(1e-9, state["train_s"] + time.perf_counter() - t0)
    progress.update(task, completed=step, loss=mean, tps=tps)
    if not console.is_terminal and step % (s.log_every * 10) == 0:
        console.print(f"step {step}/{progress.tasks[0].total} loss {mean:.3f} {tps:,.0f} tok/s")
    state["running"], state["seen"] = 0.0, 0


def profile_admin(model: Encoder, data: Prepared, seed: int, device: torch.device) -> list[float]:
    """Admin's omegas from one training batch at initialisation ([] for other norms)."""
    if data.cfg.norm != "admin":
        return []
    rng = random.Random(seed + 1)
    ids, mask, _ = next(bucketed_batches(data.train, min(256, len(data.train)), rng, data.cfg.pad_id))
    return admin.profile(model, ids.to(device), mask.to(device))


def _seeded_device(s: TrainSettings) -> torch.device:
    """Seed both RNGs and fix the thread count before anything is built.

    The model's initial weights come from torch's RNG, so seeding first is what makes two
    runs with one seed (test_training_is_deterministic) start from identical weights.
    """
    random.seed(s.seed)
    torch.manual_seed(s.seed)
    if s.threads:
        torch.set_num_threads(s.threads)
    return pick_device(s.device)


def _total_steps(s: TrainSettings, train_examples: int) -> int:
    """All epochs' steps, cut to --max-steps so a quick run stops mid-epoch on purpose."""
    steps_per_epoch = math.ceil(train_examples / s.batch_size)
    return min(s.max_steps or 10**12, steps_per_epoch * s.epochs)


def _model_facts(model: Encoder, data: Prepared, s: TrainSettings) -> dict[str, Any]:
    """The model's shape, size and cost: the first block of metrics.json, known before training."""
    cfg = data.cfg
    mean_len = sum(len(r) for r in data.train.ids) / len(data.train)
    return {
        "arch": cfg.arch,
        "layers": cfg.layers,
        "heads": cfg.heads,
        "norm": cfg.norm,
        "attn_init": cfg.attn_init,
        "preset": s.preset,
        "max_len": cfg.max_len,
        "params": count_parameters(model),
        "params_body": count_parameters(model, body_only=True),
        "flops_per_token": flops_per_token(cfg),
        "flops_per_token_at_mean_length": flops_per_token(cfg, round(mean_len)),
    }


def _announce(facts: dict[str, Any], data: Prepared, device: torch.device) -> None:
    """One line before training starts, so a wrong preset, vocab or device shows at once."""
    cfg = data.cfg
    console.print(
        f"[bold]{cfg.arch.upper()} {cfg.label}[/] norm={cfg.norm} init={cfg.attn_init} "
        f"params={facts['params']:,} (body {facts['params_body']:,}) "
        f"train/val/test={len(data.train)}/{len(data.validation)}/{len(data.test)} "
        f"vocab={data.tok.vocab_size} max_len={cfg.max_len} device={device}"
    )


def _fit_facts(result: Fit, s: TrainSettings, test_acc: float, train_time: float) -> dict[str, Any]:
    """Accuracy, curves and speed of the finished fit: the middle block of metrics.json."""
    return {
        "validation_accuracy": result.best_val,
        "test_accuracy": test_acc,
        "best_epoch": result.best_epoch,
        "epochs": s.epochs,
        "epochs_run": len(result.val_curve),
        "steps": result.steps,
        "val_curve": result.val_curve,
        "epoch_train_s": result.epoch_train_s,
        "epoch_wall_s": result.epoch_wall_s,
        "train_time_s": round(train_time, 2),
        "tokens_per_s": round(result.tokens / max(1e-9, result.epoch_train_s[-1]), 1),
        "final_loss": result.losses[-1][1] if result.losses else None,
        "first_loss": result.losses[0][1] if result.losses else None,
        "loss_curve": result.losses,
    }


def _provenance(
    s: TrainSettings, data: Prepared, device: torch.device, omegas: list[float]
) -> dict[str, Any]:
    """Data, software and settings the run used: the last block, so a result can be reproduced."""
    return {
        "admin_omegas": omegas,
        "examples": {"train": len(data.train), "validation": len(data.validation), "test": len(data.test)},
        "data_sha256": data.data_sha256,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "settings": s.model_dump(mode="json"),
    }


def train(s: TrainSettings) -> dict[str, Any]:
    """Run one training job end to end; returns the metrics written to metrics.json.

    The final folder holds the best validation epoch's weights, so the test accuracy is
    measured on those rather than on the last epoch's.
    """
    device = _seeded_device(s)
    data = prepare(s)
    model = build(data.cfg).to(device)
    omegas = profile_admin(model, data, s.seed, device)
    facts = _model_facts(model, data, s)
    _announce(facts, data, device)
    run_dir = s.out / s.run_name()
    start = time.perf_counter()
    result = fit(model, data, s, device, _total_steps(s, len(data.train)), run_dir)
    train_time = time.perf_counter() - start

    model.load_state_dict(result.best_state)
    test_acc = accuracy(model, data.test, device)
    metrics: dict[str, Any] = {
        "complete": True,
        **facts,
        **_fit_facts(result, s, test_acc, train_time),
        **_provenance(s, data, device, omegas),
    }
    save_run(run_dir, model.cpu(), data.tok, list(LEXNAMES), metrics)
    console.print(f"test accuracy {test_acc:.4f}  ({train_time:.0f}s)  -> {run_dir}")
    return metrics


def build_parser() -> argparse.ArgumentParser:
    return settings_parser(TrainSettings, "python -m models.train", __doc__.split("\n\n")[0])


def summary_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="MHA vs SHA")
    for col in ("arch", "norm", "layers", "heads", "params", "test acc", "train time"):
        table.add_column(col, justify="right")
    for m in rows:
        table.add_row(
            m["arch"],
            m["norm"],
            str(m["layers"]),
            str(m["heads"]),
            f"{m['params']:,}",
            f"{m['test_accuracy']:.4f}",
            f"{m['train_time_s']:.0f}s",
        )
    return table


def main(argv: list[str] | None = None) -> int:
    settings = settings_from(TrainSettings, build_parser().parse_args(argv))
    try:
        metrics = train(settings)
    except WordNetMissingError as exc:
        fail(str(exc))
    Console().print(summary_table([metrics]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
