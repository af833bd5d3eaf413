"""service.v2codec parses a KServe v2 body into the model's validated request, or refuses it as
InvalidInput (the v2 API answers 400 {"error": ...}); what is left to check is the model's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from contract import tensors
from service.api.v2codec import HEADER, V2Error, parse_request
from service.errors import InvalidInput


def _tensor(name: str, rows: list[list[int]], datatype: str = "INT64") -> dict:
    shape = [len(rows), len(rows[0]) if rows else 0]
    return {"name": name, "shape": shape, "datatype": datatype, "data": [x for r in rows for x in r]}


def _body(*inputs: dict, **extra: object) -> bytes:
    return json.dumps({"inputs": list(inputs), **extra}).encode()


def test_parsed_request_holds_the_models_tensors() -> None:
    req = parse_request(
        _body(
            _tensor(tensors.INPUT_IDS, [[2, 3]], "INT32"), _tensor(tensors.ATTENTION_MASK, [[1, 0]]), id="r"
        ),
        None,
    )
    assert req.id == "r" and req.input_ids.dtype == np.int64 and req.input_ids.tolist() == [[2, 3]]
    assert req.attention_mask is not None and req.attention_mask.dtype == np.int64
    assert req.outputs == [(name, False) for name in tensors.OUTPUTS]  # every output by default
    binary = parse_request(
        _body(_tensor(tensors.INPUT_IDS, [[2]]), parameters={"binary_data_output": True}), None
    )
    assert binary.attention_mask is None and binary.outputs == [(name, True) for name in tensors.OUTPUTS]
    one = parse_request(_body(_tensor(tensors.INPUT_IDS, [[2]]), outputs=[{"name": tensors.LOGITS}]), None)
    assert one.outputs == [(tensors.LOGITS, False)]


def test_binary_inputs() -> None:
    ids = np.array([[5, 6, 7]], dtype="<i8")
    t = {
        "name": tensors.INPUT_IDS,
        "shape": [1, 3],
        "datatype": "INT64",
        "parameters": {"binary_data_size": 24},
    }
    head = json.dumps({"inputs": [t]}).encode()
    req = parse_request(head + ids.tobytes(), str(len(head)))
    assert req.input_ids.tolist() == [[5, 6, 7]] and HEADER == "Inference-Header-Content-Length"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_body(_tensor("x", [[1]])), "unknown input 'x' (inputs: input_ids, attention_mask)"),
        (_body(_tensor(tensors.ATTENTION_MASK, [[1]])), "input 'input_ids' is required"),
        (
            _body(_tensor(tensors.INPUT_IDS, [[1]], "FP32")),
            "input 'input_ids' must be INT64 (or INT32), got float32",
        ),
        (
            _body({"name": tensors.INPUT_IDS, "shape": [2], "datatype": "INT64", "data": [2, 3]}),
            "input 'input_ids' must have shape [batch, sequence], got [2]",
        ),
        (
            _body(_tensor(tensors.INPUT_IDS, [[2, 3]]), _tensor(tensors.ATTENTION_MASK, [[1]])),
            "attention_mask shape [1, 1] differs from input_ids [1, 2]",
        ),
        (
            _body(_tensor(tensors.INPUT_IDS, [[2]]), outputs=[{"name": "nope"}]),
            "unknown output 'nope' (outputs: logits, embedding)",
        ),
        (b'{"inputs": [', None),
    ],
)
def test_refusals_are_invalid_input(body: bytes, message: str | None) -> None:
    with pytest.raises(V2Error) as caught:
        parse_request(body, None)
    assert isinstance(caught.value, InvalidInput) and caught.value.field is None
    if message is not None:
        assert caught.value.message == message
