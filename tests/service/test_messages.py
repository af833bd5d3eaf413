"""The seam's one module: every message survives its encoding, arrays cross as their own frames
(never inside the header), refusals keep their class, message, field and Retry-After by a stable
code, and rows split and join back."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Counter

from service import errors, messages
from service.messages import (
    Admit,
    Admitted,
    BatchResult,
    Codec,
    Describe,
    Description,
    Infer,
    Inferred,
    MetricsReply,
    ModelFacts,
    Refused,
    Statistics,
    Stats,
    refusal_of,
)
from service.metrics import families


def _bytes(frames: list) -> list[bytes]:
    return [bytes(f) for f in frames]  # as they arrive from a socket


def test_infer_crosses_with_its_rows_as_side_frames() -> None:
    codec = Codec()
    rows = [np.arange(5, dtype=np.int64), np.arange(3, dtype=np.int64) + 100]
    masks = [np.ones(5, dtype=np.int64), np.array([1, 1, 0], dtype=np.int64)]
    frames = codec.encode(Infer.of("mha", rows, masks, "rid-7"))
    assert len(frames) == 3 and bytes(frames[1]) == np.concatenate(rows).tobytes()
    assert len(frames[0]) < 80, "the ids are not in the header"
    got = codec.request(_bytes(frames))
    assert isinstance(got, Infer) and got.model == "mha" and got.request_id == "rid-7"
    for want, have in zip(rows, got.ids_rows(), strict=True):
        np.testing.assert_array_equal(want, have)
    assert [m.tolist() for m in got.mask_rows() or []] == [m.tolist() for m in masks]
    plain = codec.request(_bytes(codec.encode(Infer.of("mha", rows[:1], None, "-"))))
    assert (
        isinstance(plain, Infer)
        and plain.mask_rows() is None
        and plain.ids_rows()[0].tolist() == [0, 1, 2, 3, 4]
    )


def test_a_result_crosses_with_its_arrays_and_generation() -> None:
    codec = Codec()
    logits = np.arange(6, dtype=np.float32).reshape(2, 3)
    emb = np.ones((2, 4), dtype=np.float32)
    reply = Inferred(generation=4, result=BatchResult(logits, emb, 0.5, 1.25, 8, 16), has_room=False)
    got = codec.reply(_bytes(codec.encode(reply)))
    assert isinstance(got, Inferred) and got.generation == 4 and got.has_room is False
    np.testing.assert_array_equal(got.result.logits, logits)
    assert got.result.embedding.shape == (2, 4) and got.result.embedding.dtype == np.float32
    assert (got.result.queue_ms, got.result.compute_ms, got.result.batch_size) == (0.5, 1.25, 8)


@pytest.mark.parametrize(
    "exc",
    [
        errors.InvalidInput("bad token", "input_ids.0.3"),
        errors.ModelNotReady.of("mha", "loading"),
        errors.Overloaded("queue of mha is full", 3),
        errors.ShuttingDown(2, "stopping"),
        errors.Timeout("no answer in 30 s"),
        errors.InternalError("the batch failed"),
    ],
)
def test_refusals_cross_by_code(exc: errors.ServiceError) -> None:
    codec = Codec()
    got = codec.reply(_bytes(codec.encode(Refused(refusal=refusal_of(exc)))))
    assert isinstance(got, Refused)
    back = got.refusal.error()
    assert type(back) is type(exc)
    assert (back.message, back.field, back.retry_after) == (exc.message, exc.field, exc.retry_after)


def test_an_unknown_code_is_an_internal_error_and_a_subclass_its_parent() -> None:
    assert isinstance(messages.Refusal("from_the_future", "hm").error(), errors.InternalError)
    assert refusal_of(errors.MalformedBody("not JSON", "body")).code == "invalid_input"


def test_the_other_messages_cross() -> None:
    codec = Codec()
    facts = [ModelFacts("a", "failed", 0.1, error="no file"), ModelFacts("b", "ready", 1.0, served={"v": 1})]
    for msg in (Describe(), Admit("mha")):
        assert codec.request(_bytes(codec.encode(msg))) == msg
    registry = CollectorRegistry()
    Counter("h2h_x", "x", ["model"], registry=registry).labels("mha").inc(3)
    replies = [
        Description(generation=2, pid=7, models=facts),
        Admitted(has_room=True, refusal=refusal_of(errors.Overloaded("full", 1))),
        Statistics(stats=Stats(inference_count=4, batch_sizes={2: [2, 900]})),
        Statistics(stats=None),
        MetricsReply(families=messages.families_out(families(registry))),
    ]
    for reply in replies:
        assert codec.reply(_bytes(codec.encode(reply))) == reply
    (fam,) = [f for f in messages.families_in(replies[-1].families) if f.name == "h2h_x"]
    assert [(s.labels, s.value) for s in fam.samples if s.name == "h2h_x_total"] == [({"model": "mha"}, 3.0)]


def test_a_reply_is_not_a_request() -> None:
    codec = Codec()
    with pytest.raises(Exception, match="type"):
        codec.request(_bytes(codec.encode(Statistics(stats=None))))


def test_rows_split_and_join() -> None:
    rows = [np.array([1, 2, 3]), np.array([4]), np.array([5, 6])]
    lengths, flat = messages.join_rows(rows)
    assert lengths == [3, 1, 2] and flat.dtype == np.int64
    assert [r.tolist() for r in messages.split_rows(flat, lengths)] == [[1, 2, 3], [4], [5, 6]]
    assert messages.split_rows(np.array([], dtype=np.int64), []) == []
