"""Prometheus metrics, names and labels as in docs/serving.md.

The front counts requests (`FrontMetrics`: count, latency, the refusals it decides itself); the
engine counts everything about queues, batches, models and the GPU (`EngineMetrics`, also the
batcher's observer). Each has its own registry; /metrics is the two merged (`exposition`), a
sample that both count (a refusal reason) summed, so every request is counted once however
many processes the service runs in. With several fronts, each front's series live in
prometheus_client's multiprocess files and are summed across fronts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from service.errors import Rejection
from service.runtime import nvml

if TYPE_CHECKING:
    from service.runtime.cuda_graphs import GraphMemory

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
    30.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
LENGTH_BUCKETS = (4, 8, 16, 32, 64, 128, 256, 512, 1024)
FRACTION_BUCKETS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0)
UNKNOWN_MODEL = "_unknown"  # a model name that is not loaded (never the name itself)
NO_MODEL = "_none"  # routes about no single model: /v1/compare, health, model lists


class GpuCollector(Collector):
    """GPU utilisation and memory at scrape time, read through service.runtime.nvml (the one NVML probe).

    Yields nothing without NVML; when a read fails the cause is logged once (until reads work
    again) and the scrape goes on without the GPU series, rather than failing /metrics.
    """

    def __init__(self, read: Callable[[], tuple[nvml.Usage, ...] | None] = nvml.usage) -> None:
        self._read = read
        self._failing = False  # the current run of failures was logged
        self._absent_said = False  # "no NVML" was logged

    def _usage(self) -> tuple[nvml.Usage, ...] | None:
        try:
            gpus = self._read()
        except Exception as exc:  # noqa: BLE001 - any NVML error: no GPU series this scrape
            if not self._failing:
                log.warning("GPU metrics: NVML read failed, no GPU series until it works", exc_info=exc)
            self._failing = True
            return None
        self._failing = False
        if gpus is None and not self._absent_said:
            log.info("GPU metrics: NVML is not available on this host; no GPU series")
            self._absent_said = True
        return gpus

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gpus = self._usage()
        if gpus is None:
            return
        util = GaugeMetricFamily("h2h_gpu_utilization_ratio", "GPU utilisation 0..1 (NVML)", labels=["gpu"])
        used = GaugeMetricFamily("h2h_gpu_memory_used_bytes", "GPU memory used (NVML)", labels=["gpu"])
        total = GaugeMetricFamily("h2h_gpu_memory_total_bytes", "GPU memory total (NVML)", labels=["gpu"])
        for i, gpu in enumerate(gpus):
            util.add_metric([str(i)], gpu.utilization)
            used.add_metric([str(i)], float(gpu.memory_used))
            total.add_metric([str(i)], float(gpu.memory_total))
        yield from (util, used, total)


def _rejected(registry: CollectorRegistry) -> Counter:
    return Counter(
        "h2h_rejected",
        "Rejections: " + ", ".join(Rejection),
        ["model", "reason"],
        registry=registry,
    )


class FrontMetrics:
    """What the HTTP front counts: every request once (count and latency by model, route and
    status), and every rejection once, the engine's included, as it answers it (h2h_rejected by
    service.errors.Rejection, labelled with the URL's model)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "h2h_requests", "HTTP requests answered", ["model", "route", "status"], registry=r
        )
        self.request_duration = Histogram(
            "h2h_request_duration_seconds",
            "End-to-end latency in the server",
            ["model", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rejected_c = _rejected(r)
        self._request_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def rejected(self, model: str, reason: Rejection) -> None:
        self.rejected_c.labels(model, reason.value).inc()

    def observe_request(self, model: str, route: str, status: int, seconds: float) -> None:
        # labelled children resolved once: `labels()` takes a lock and builds a key each call
        key = (model, route, status)
        pair = self._request_series.get(key)
        if pair is None:
            s = str(status)
            pair = self._request_series[key] = (
                self.requests.labels(model, route, s),
                self.request_duration.labels(model, route, s),
            )
        pair[0].inc()
        pair[1].observe(seconds)


class EngineMetrics:
    """What the engine counts: queues, batches, models, CUDA graphs, the GPU; also the batcher's
    Observer."""

    def __init__(self, *, gpu: bool = True) -> None:
        r = self.registry = CollectorRegistry()
        self.queue_wait_h = self._per_model_histogram(
            "h2h_queue_wait_seconds", "Time a request waited in the batcher queue", LATENCY_BUCKETS
        )
        self.compute = self._per_model_histogram(
            "h2h_compute_seconds", "ONNX Runtime run time of each batch", LATENCY_BUCKETS
        )
        self.batch_size = self._per_model_histogram(
            "h2h_batch_size", "Rows per executed batch", BATCH_BUCKETS
        )
        self.sequence_length = self._per_model_histogram(
            "h2h_sequence_length", "Padded sequence length per executed batch", LENGTH_BUCKETS
        )
        self.padding_fraction = self._per_model_histogram(
            "h2h_padding_fraction", "Padded share of tokens per executed batch", FRACTION_BUCKETS
        )
        self.tokens = Counter("h2h_tokens", "Real (non-padding) tokens processed", ["model"], registry=r)
        self.queue_depth_g = Gauge("h2h_queue_depth", "Rows waiting in the queue", ["model"], registry=r)
        self.inflight = Gauge(
            "h2h_inflight_requests", "Requests accepted and not yet answered", ["model"], registry=r
        )
        self.batch_failures = Counter(
            "h2h_batch_failures",
            "Batches that failed (model run, padding, bookkeeping); their requests got 500",
            ["model"],
            registry=r,
        )
        self.model_ready = Gauge(
            "h2h_model_ready",
            "1 when the model serves, 0 when it failed to load or its batcher stopped",
            ["model"],
            registry=r,
        )
        self.model_info = Gauge(
            "h2h_model_info",
            "Static facts about each loaded model (value 1)",
            ["model", "arch", "layers", "heads", "provider", "variant"],
            registry=r,
        )
        self.cuda_graphs = Gauge(
            "h2h_cuda_graphs", "CUDA graphs captured for the model (CUDA only)", ["model"], registry=r
        )
        self.cuda_graph_bytes = Gauge(
            "h2h_cuda_graph_bytes",
            "Device bytes of the buffers bound to the model's CUDA graphs (ORT's arena not included)",
            ["model"],
            registry=r,
        )
        self._series: dict[str, _ModelSeries] = {}
        if gpu:
            r.register(GpuCollector())

    def _per_model_histogram(self, name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
        """A histogram labelled by model alone: the batcher's observations are all per model."""
        return Histogram(name, doc, ["model"], buckets=buckets, registry=self.registry)

    # labelled children, resolved once: `labels()` takes a lock and builds a key on every call,
    # which the profile showed on the hot path
    def _model(self, model: str) -> _ModelSeries:
        series = self._series.get(model)
        if series is None:
            series = self._series[model] = _ModelSeries(self, model)
        return series

    # batcher Observer ---------------------------------------------------------------------
    def accepted(self, model: str) -> None:
        self._model(model).inflight.inc()

    def answered(self, model: str) -> None:
        self._model(model).inflight.dec()

    def queue_depth(self, model: str, rows: int) -> None:
        self._model(model).queue_depth.set(rows)

    def queue_wait(self, model: str, seconds: float) -> None:
        self._model(model).queue_wait.observe(seconds)

    def batch(self, model: str, *, rows: int, padded_length: int, real_tokens: int, compute_s: float) -> None:
        m = self._model(model)
        m.compute.observe(compute_s)
        m.batch_size.observe(rows)
        m.sequence_length.observe(padded_length)
        total = rows * padded_length
        m.padding_fraction.observe(1.0 - real_tokens / total if total else 0.0)
        m.tokens.inc(real_tokens)

    def batch_failed(self, model: str) -> None:
        self.batch_failures.labels(model).inc()

    # CUDA graphs ----------------------------------------------------------------------------
    def watch_graphs(self, model: str, memory: Callable[[], GraphMemory]) -> None:
        """Report `model`'s captured graphs and their bound bytes, read at scrape time."""
        self.cuda_graphs.labels(model).set_function(lambda: memory().graphs)
        self.cuda_graph_bytes.labels(model).set_function(lambda: memory().bound_bytes)


class _ModelSeries:
    """One model's labelled children of the per-model metrics."""

    def __init__(self, m: EngineMetrics, model: str) -> None:
        self.inflight = m.inflight.labels(model)
        self.queue_depth = m.queue_depth_g.labels(model)
        self.queue_wait = m.queue_wait_h.labels(model)
        self.compute = m.compute.labels(model)
        self.batch_size = m.batch_size.labels(model)
        self.sequence_length = m.sequence_length.labels(model)
        self.padding_fraction = m.padding_fraction.labels(model)
        self.tokens = m.tokens.labels(model)


def families(registry: Any) -> list[Metric]:
    """The metric families a registry (or any collector) yields now."""
    return list(registry.collect())


def with_help(fams: list[Metric], help_texts: dict[str, str]) -> list[Metric]:
    """`fams` with each family's HELP from `help_texts` (by family name): the multiprocess
    collector that sums the fronts reads files that keep no HELP and says "Multiprocess metric"
    for every family."""
    for f in fams:
        f.documentation = help_texts.get(f.name, f.documentation)
    return fams


class _Merged:
    """A collector yielding fixed families (generate_latest takes any object with collect)."""

    def __init__(self, fams: list[Metric]) -> None:
        self._fams = fams

    def collect(self) -> Iterator[Metric]:
        return iter(self._fams)


def merge(*sources: Iterable[Metric]) -> list[Metric]:
    """Families from several processes as one: same-named families joined, a sample present in
    more than one (same name and labels) summed."""
    merged: dict[str, Metric] = {}
    values: dict[str, dict[tuple, Sample]] = {}
    for fams in sources:
        for f in fams:
            if f.name not in merged:
                merged[f.name] = Metric(f.name, f.documentation, f.type, f.unit)
                values[f.name] = {}
            seen = values[f.name]
            for s in f.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                was = seen.get(key)
                seen[key] = s if was is None else was._replace(value=was.value + s.value)
    for name, m in merged.items():
        m.samples = list(values[name].values())
    return list(merged.values())


def exposition(*sources: Iterable[Metric]) -> bytes:
    """The Prometheus text of the merged families."""
    return generate_latest(_Merged(merge(*sources)))  # type: ignore[arg-type]
