"""Prometheus metrics, names and labels as in docs/architecture.md, on a per-app registry."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
LENGTH_BUCKETS = (4, 8, 16, 32, 64, 128, 256, 512, 1024)
FRACTION_BUCKETS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0)
UNKNOWN_MODEL = "_unknown"  # a model name that is not loaded (never the name itself)
NO_MODEL = "_none"  # routes about no single model: /v1/compare, health, model lists


class GpuCollector(Collector):
    """NVML utilisation and memory at scrape time; yields nothing when NVML is unavailable."""

    def __init__(self) -> None:
        self._nvml = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
        except Exception:
            self._nvml = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        nv = self._nvml
        if nv is None:
            return
        try:
            util = GaugeMetricFamily(
                "h2h_gpu_utilization_ratio", "GPU utilisation 0..1 (NVML)", labels=["gpu"]
            )
            used = GaugeMetricFamily("h2h_gpu_memory_used_bytes", "GPU memory used (NVML)", labels=["gpu"])
            total = GaugeMetricFamily("h2h_gpu_memory_total_bytes", "GPU memory total (NVML)", labels=["gpu"])
            for i in range(nv.nvmlDeviceGetCount()):
                h = nv.nvmlDeviceGetHandleByIndex(i)
                mem = nv.nvmlDeviceGetMemoryInfo(h)
                rates = nv.nvmlDeviceGetUtilizationRates(h)
                util.add_metric([str(i)], rates.gpu / 100.0)
                used.add_metric([str(i)], float(mem.used))
                total.add_metric([str(i)], float(mem.total))
        except Exception:
            return
        yield from (util, used, total)


class Metrics:
    """All server metrics; also the batcher's Observer."""

    def __init__(self, *, gpu: bool = True) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "h2h_requests", "HTTP requests answered", ["model", "route", "status"], registry=r
        )
        self.request_duration = Histogram(
            "h2h_request_duration_seconds", "End-to-end latency in the server",
            ["model", "route", "status"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.queue_wait_h = Histogram(
            "h2h_queue_wait_seconds", "Time a request waited in the batcher queue", ["model"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.compute = Histogram(
            "h2h_compute_seconds", "ONNX Runtime run time of each batch", ["model"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_size = Histogram(
            "h2h_batch_size", "Rows per executed batch", ["model"], buckets=BATCH_BUCKETS, registry=r
        )
        self.sequence_length = Histogram(
            "h2h_sequence_length", "Padded sequence length per executed batch", ["model"],
            buckets=LENGTH_BUCKETS, registry=r,
        )  # fmt: skip
        self.padding_fraction = Histogram(
            "h2h_padding_fraction", "Padded share of tokens per executed batch", ["model"],
            buckets=FRACTION_BUCKETS, registry=r,
        )  # fmt: skip
        self.tokens = Counter("h2h_tokens", "Real (non-padding) tokens processed", ["model"], registry=r)
        self.queue_depth_g = Gauge("h2h_queue_depth", "Rows waiting in the queue", ["model"], registry=r)
        self.inflight = Gauge(
            "h2h_inflight_requests", "Requests accepted and not yet answered", ["model"], registry=r
        )
        self.rejected_c = Counter(
            "h2h_rejected", "Rejections: queue_full, timeout, shutting_down", ["model", "reason"], registry=r
        )
        self.model_ready = Gauge(
            "h2h_model_ready", "1 when the model serves, 0 when it failed to load", ["model"], registry=r
        )
        self.model_info = Gauge(
            "h2h_model_info", "Static facts about each loaded model (value 1)",
            ["model", "arch", "layers", "heads", "provider", "variant"], registry=r,
        )  # fmt: skip
        if gpu:
            r.register(GpuCollector())

    # batcher Observer ---------------------------------------------------------------------
    def accepted(self, model: str) -> None:
        self.inflight.labels(model).inc()

    def answered(self, model: str) -> None:
        self.inflight.labels(model).dec()

    def rejected(self, model: str, reason: str) -> None:
        self.rejected_c.labels(model, reason).inc()

    def queue_depth(self, model: str, rows: int) -> None:
        self.queue_depth_g.labels(model).set(rows)

    def queue_wait(self, model: str, seconds: float) -> None:
        self.queue_wait_h.labels(model).observe(seconds)

    def batch(self, model: str, *, rows: int, padded_length: int, real_tokens: int, compute_s: float) -> None:
        self.compute.labels(model).observe(compute_s)
        self.batch_size.labels(model).observe(rows)
        self.sequence_length.labels(model).observe(padded_length)
        total = rows * padded_length
        self.padding_fraction.labels(model).observe(1.0 - real_tokens / total if total else 0.0)
        self.tokens.labels(model).inc(real_tokens)

    # HTTP -----------------------------------------------------------------------------------
    def observe_request(self, model: str, route: str, status: int, seconds: float) -> None:
        s = str(status)
        self.requests.labels(model, route, s).inc()
        self.request_duration.labels(model, route, s).observe(seconds)
