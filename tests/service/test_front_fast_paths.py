"""The front's per-request shortcuts answer what the general code answers: token-id rows checked
in pure Python (lists) equal the numpy checks (arrays take those), refusals still name the
field, the v1 body parsed without JsonInt's per-token call equals the full parse, and the
post-processing's top-k equals a stable sort of the softmax."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from service.api.schemas import PredictRequest, PredictRequestInts
from service.errors import InvalidInput
from service.front import inputs, outputs
from service.messages import BatchResult

ENTRY: Any = SimpleNamespace(
    manifest=SimpleNamespace(max_sequence_length=8, vocab_size=50, labels=["a", "b", "c", "d"])
)


def _both(ids: list[list[int]], mask: list[list[int]] | None) -> tuple[Any, Any]:
    fast = inputs.check_ids(ENTRY, ids, mask, 32)
    slow = inputs.check_ids(
        ENTRY, [np.array(r) for r in ids], None if mask is None else [np.array(m) for m in mask], 32
    )
    return fast, slow


def test_plain_rows_equal_the_numpy_checks() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        rows = int(rng.integers(1, 4))
        lens = rng.integers(1, 9, size=rows)
        ids = [rng.integers(0, 50, size=n).tolist() for n in lens]
        kept = [int(rng.integers(1, n + 1)) for n in lens]
        mask = (
            None if rng.random() < 0.3 else [[1] * k + [0] * (n - k) for k, n in zip(kept, lens, strict=True)]
        )
        (fi, fm), (si, sm) = _both(ids, mask)
        assert [r.tolist() for r in fi] == [r.tolist() for r in si]
        assert [r.tolist() for r in fm] == [r.tolist() for r in sm]
        assert all(r.dtype == np.int64 for r in fi)


@pytest.mark.parametrize(
    ("ids", "mask", "field"),
    [
        ([[1, 2, 50]], None, "input_ids.0.2"),
        ([[1, -1]], None, "input_ids.0.1"),
        ([list(range(9))], None, "input_ids.0"),
        ([[1, 2, 3]], [[0, 1, 1]], "attention_mask.0.0"),
        ([[1, 2, 3]], [[1, 2, 1]], "attention_mask.0.1"),
        ([[1, 2, 3]], [[0, 0, 0]], "attention_mask.0"),
        ([[1, 2, 3]], [[1, 1]], "attention_mask.0"),
    ],
)
def test_rows_the_shortcut_leaves_are_refused_by_name(
    ids: list[list[int]], mask: list[list[int]] | None, field: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        inputs.check_ids(ENTRY, ids, mask, 32)
    assert err.value.field == field


def test_the_integer_body_parses_as_the_full_one() -> None:
    body = b'{"input_ids": [[1, 2, 3]], "attention_mask": [[1, 1, 0]], "top_k": 2}'
    assert (
        PredictRequestInts.model_validate_json(body).model_dump()
        == PredictRequest.model_validate_json(body).model_dump()
    )
    with pytest.raises(ValueError):  # 3.0 is JSON's integer too: the full parse takes it
        PredictRequestInts.model_validate_json(b'{"input_ids": [[1, 3.0]]}')
    assert PredictRequest.model_validate_json(b'{"input_ids": [[1, 3.0]]}').input_ids == [[1, 3]]


@pytest.mark.parametrize("top_k", [1, 2, 4, 10])
def test_top_k_is_the_stable_sort_of_the_softmax(top_k: int) -> None:
    logits = np.array([[0.5, 2.0, 2.0, -1.0], [3.0, 1.0, 0.0, 3.0]], dtype=np.float32)
    result = BatchResult(logits, np.ones((2, 3), dtype=np.float32), 0.0, 0.0, 2, 4)
    got = outputs.predictions(ENTRY, result, top_k, embedding=True)
    z = np.exp(logits.astype(np.float64) - logits.max(axis=1, keepdims=True))
    probs = z / z.sum(axis=1, keepdims=True)
    for r, p in enumerate(got):
        want = np.argsort(-probs[r], kind="stable")[: min(top_k, 4)].tolist()
        assert [t["label_id"] for t in p["top_k"]] == want
        assert p["label"] == "abcd"[want[0]] and p["score"] == pytest.approx(probs[r, want[0]])
        assert p["embedding"] == [1.0, 1.0, 1.0]
