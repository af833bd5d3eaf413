"""The two overhead ratios the project tracks, against a running service:

  latency:    service p50 at batch 1 (HTTP, concurrency 1) minus in-process p50 at batch 1, in ms
  throughput: service max throughput / in-process max throughput, in sequences (rows) per second

In-process max: best of batch 1, 2, 4, ... up to the service's max_batch_size run back to back.
Service max: best of (batch 1 at concurrency 2 x max_batch_size, the batcher does the batching)
and (batch max_batch_size at concurrency 2).

  python -m loadtest.bench_overhead --url http://127.0.0.1:8000 --repo model_repository --model mha
"""

from __future__ import annotations

import asyncio
import json
import sys

from loadtest import http_client as hc
from loadtest.inproc import InprocModel
from loadtest.stats import summarize
from loadtest.sweep import PlanError, repo_models, resolve
from models.cliargs import OneLineArgumentParser, fail


async def _http(url: str, model: str, body: bytes, conc: int, duration: float) -> hc.LoadResult:
    async with hc.make_client(conc, 30.0) as client:
        await hc.closed_loop(client, hc.predict_url(url, model), body, conc, 0.5)  # warm-up
        return await hc.closed_loop(client, hc.predict_url(url, model), body, conc, duration)


def main(argv: list[str] | None = None) -> None:
    p = OneLineArgumentParser(prog="bench_overhead", description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--repo", default="model_repository")
    p.add_argument("--model", default="mha", help="model name or arch alias (mha/sha)")
    p.add_argument("--seq", type=int, default=16)
    p.add_argument("--duration", type=float, default=3.0, help="seconds per HTTP measurement")
    a = p.parse_args(argv)
    url = a.url.rstrip("/")
    from pathlib import Path

    try:
        avail = repo_models(Path(a.repo))
        (name,) = resolve([a.model], avail, f"repository {a.repo}")
        hc.check_ready(url)
    except (PlanError, hc.ServiceUnreachable) as exc:
        fail(str(exc))
    info = avail[name]
    seq = min(a.seq, info.max_sequence_length)
    max_batch = int(hc.model_config(url, name).get("max_batch_size") or 32)

    m = InprocModel(info.dir, provider="auto")
    in_b1 = summarize(m.time_shape(1, seq).seconds)["p50_ms"]
    in_best, b = 0.0, 1
    while b <= max_batch:
        p50 = summarize(m.time_shape(b, seq).seconds)["p50_ms"]
        in_best = max(in_best, b / (p50 / 1e3))
        b *= 2
    provider = m.provider
    del m

    res1 = asyncio.run(_http(url, name, hc.predict_body(1, seq, info.vocab_size), 1, a.duration))
    http_b1 = summarize(res1.latencies)["p50_ms"]
    best_http, errors = 0.0, res1.error_count
    for rows, conc in ((1, 2 * max_batch), (max_batch, 2)):
        r = asyncio.run(_http(url, name, hc.predict_body(rows, seq, info.vocab_size), conc, a.duration))
        errors += r.error_count
        best_http = max(best_http, r.ok * rows / r.window_s)
    if http_b1 is None:
        fail(f"no successful request to {url} ({errors} errors)")
    out = {
        "model": name, "seq": seq, "provider_inproc": provider,
        "inproc_p50_b1_ms": round(in_b1, 4), "service_p50_b1_ms": round(http_b1, 4),
        "overhead_p50_b1_ms": round(http_b1 - in_b1, 4),
        "inproc_max_rows_per_s": round(in_best, 1), "service_max_rows_per_s": round(best_http, 1),
        "throughput_ratio": round(best_http / in_best, 4), "errors": errors,
    }  # fmt: skip
    print(f"{name} seq {seq}: service p50 at batch 1 - in-process p50 = {http_b1:.2f} - {in_b1:.2f} "
          f"= {http_b1 - in_b1:.2f} ms")  # fmt: skip
    print(f"{name} seq {seq}: service max throughput / in-process max = {best_http:,.0f} / {in_best:,.0f} "
          f"rows/s = {best_http / in_best:.3f}")  # fmt: skip
    print(json.dumps(out))
    sys.exit(0)


if __name__ == "__main__":
    main()
