"""Which variant of a model to serve: the best one whose parity is proven on the provider it runs on.

Export proves every variant on CPU. An fp16 variant's CPU result does not vouch for CUDA (CPU
runs its operators through fp32 kernels), so its manifest marks it pending there and ships the
reference batches; the first start on that provider measures it (contract.reference, the rule
export uses) before serving it. Preference, best first: on CUDA the fused fp16 variant
(model.gpu.onnx), then the manifest's default (fp32); elsewhere the default. A variant that
cannot be proven is never served silently: without H2H_VARIANT the next one is served and the
reason logged once; a variant named by H2H_VARIANT is refused unless H2H_ALLOW_UNPROVEN is set.

Sessions are opened through a callable the caller passes in (service.engine.repository), so the rules
here are tested with fake sessions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal, Protocol, TypeVar

import numpy as np

from contract import reference
from contract.manifest import CUDA_PROVIDER, GPU_FILE, Manifest, Variant

log = logging.getLogger(__name__)


Status = Literal["proven", "proven-at-start", "unproven"]
R = TypeVar("R", bound="Runtime")


class Runtime(Protocol):
    """What selection needs of a loaded session (service.runtime.session.OrtModel)."""

    provider: str

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class UnprovenVariant(ValueError):
    """The variant H2H_VARIANT names has no parity proof on the provider; one line for the log."""


@dataclass(frozen=True)
class Served:
    """The variant a model serves and how its parity stands on the provider that runs it."""

    variant: str
    provider: str
    status: Status  # proven at export / measured at this start / served unproven (allowed)
    max_abs_logits: float | None = None  # of the measurement behind the status
    tolerance: float | None = None
    measured_on: str | None = None
    fallback: str | None = None  # why a preferred variant is not the one served

    def as_dict(self) -> dict:
        return asdict(self)


def pending(v: Variant) -> list[str]:
    """Providers on which `v` still has to prove parity. Manifests written before the field
    existed measured only on CPU: their fp16 variants are pending on CUDA."""
    if v.parity_pending is not None:
        return v.parity_pending
    return [CUDA_PROVIDER] if v.precision == "fp16" else []


def preference(m: Manifest, provider: str, requested: str | None) -> list[str]:
    """Variants to try, best first. A requested variant the model lacks is ignored (logged)."""
    if requested and requested in m.variants:
        return [requested]
    if requested:
        log.warning("%s: no variant %s, choosing among %s", m.name, requested, ", ".join(m.variants))
    best = [GPU_FILE] if provider == CUDA_PROVIDER and GPU_FILE in m.variants else []
    return list(dict.fromkeys([*best, m.default_variant]))


def prove(
    m: Manifest, variant: str, runtime: Runtime, batches: Callable[[], list[reference.Batch]]
) -> Served:
    """The variant's standing on `runtime.provider`: proven at export, or measured now against
    the reference batches (export's tolerance and rule). Raises UnprovenVariant with the reason."""
    v, provider = m.variants[variant], runtime.provider
    if provider not in pending(v):
        p = v.parity
        return Served(variant, provider, "proven", p.max_abs_logits, p.tolerance, p.provider)
    if m.reference is None:
        raise UnprovenVariant(
            f"{variant} is pending parity on {provider} and the folder has no reference batches"
        )
    result = reference.measure(batches(), runtime.run, v.parity.tolerance, provider)
    why = reference.failure(result)
    if why:
        raise UnprovenVariant(f"{variant} failed parity on {provider}: {why}")
    return Served(variant, provider, "proven-at-start", result.max_abs_logits, result.tolerance, provider)


def select(
    m: Manifest,
    provider: str,
    requested: str | None,
    allow_unproven: bool,
    open_variant: Callable[[str], R],
    batches: Callable[[], list[reference.Batch]],
) -> tuple[R, Served]:
    """Open and prove variants in order of preference; the first proven one is served.

    `provider`: the one sessions will ask for (a session may still fall back to another; the
    proof is for the provider it actually runs on). Raises UnprovenVariant when the requested
    variant cannot be proven and `allow_unproven` is off.
    """
    explicit = bool(requested and requested in m.variants)
    fallback = None
    for variant in preference(m, provider, requested):
        runtime = open_variant(variant)
        try:
            served = prove(m, variant, runtime, batches)
        except UnprovenVariant as exc:
            if explicit and allow_unproven:
                log.warning("%s: serving %s unproven (H2H_ALLOW_UNPROVEN): %s", m.name, variant, exc)
                return runtime, Served(variant, runtime.provider, "unproven", fallback=str(exc))
            if explicit:
                raise UnprovenVariant(
                    f"H2H_VARIANT={variant}: {exc}; set H2H_ALLOW_UNPROVEN=1 to serve it anyway"
                ) from None
            log.warning("%s: not serving %s: %s", m.name, variant, exc)
            fallback = str(exc)
            continue
        return runtime, Served(**{**served.as_dict(), "fallback": fallback})
    raise UnprovenVariant(f"no variant of {m.name} is proven on {provider}: {fallback}")
