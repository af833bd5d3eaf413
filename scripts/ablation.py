"""Train the norm-placement ablation and print one Markdown table.

    python scripts/ablation.py --preset small --out runs/ablation [--epochs 2] [--device auto]

Variants: MHA with Admin, SHA with Admin, SHA with Pre-LN, SHA with Post-LN (no Admin). The
paper's claim is SHA-Admin >= MHA, and that deep Post-LN without Admin trains worse or not at
all. A diverged run is reported as such instead of stopping the table.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydantic import ValidationError  # noqa: E402

from models import atomic  # noqa: E402
from models.cliargs import OneLineArgumentParser, fail, validation_message  # noqa: E402
from models.data import WordNetMissingError  # noqa: E402
from models.settings import TrainSettings  # noqa: E402
from models.train import train  # noqa: E402

VARIANTS = [("mha", "admin"), ("sha", "admin"), ("sha", "pre"), ("sha", "post")]


def main() -> int:
    p = OneLineArgumentParser(prog="ablation.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="small")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("runs/ablation"))
    p.add_argument("--device", default="auto")
    p.add_argument("--wordnet-dir", type=Path, default=TrainSettings().wordnet_dir)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--variants", default=",".join(f"{a}-{n}" for a, n in VARIANTS),
                   help="comma list of arch-norm, e.g. sha-pre,sha-post (default: all four)")  # fmt: skip
    a = p.parse_args()
    known = {f"{x}-{y}": (x, y) for x, y in VARIANTS}
    names = [v for v in a.variants.split(",") if v]
    unknown = [v for v in names if v not in known]
    if unknown or not names:
        p.error(f"--variants: unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(known)}")
    chosen = [known[v] for v in names]
    try:  # every variant's settings checked before hours of training start
        settings = [
            TrainSettings(arch=arch, norm=norm, preset=a.preset, epochs=a.epochs, out=a.out, device=a.device,
                          wordnet_dir=a.wordnet_dir, seed=a.seed, name=f"{arch}-{a.preset}-{norm}-e{a.epochs}")
            for arch, norm in chosen
        ]  # fmt: skip
    except ValidationError as exc:
        fail(validation_message(exc))
    rows = []
    for s in settings:
        try:
            m = train(s)
        except WordNetMissingError as exc:
            fail(str(exc))
        except FloatingPointError as exc:
            rows.append({"arch": s.arch, "norm": s.norm, "diverged": str(exc)})
            continue
        rows.append({k: m[k] for k in ("arch", "norm", "layers", "heads", "params", "validation_accuracy",
                                       "test_accuracy", "train_time_s", "device")})  # fmt: skip
    tag = "_".join(names)
    atomic.write_json(a.out / f"ablation-{a.preset}-e{a.epochs}-{tag}.json", rows)
    print(
        f"| model | norm | layers x heads | params | val acc | test acc | train time ({rows[0].get('device', '?')}) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if "diverged" in r:
            print(f"| {r['arch'].upper()} | {r['norm']} | | | diverged | diverged | |")
        else:
            print(f"| {r['arch'].upper()} | {r['norm']} | {r['layers']}L-{r['heads']}H | {r['params']:,} | "
                  f"{r['validation_accuracy']:.4f} | {r['test_accuracy']:.4f} | {r['train_time_s']:.0f}s |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
