"""KServe v2 inference bodies: JSON tensors and Triton's binary tensor extension.

Request: with header `Inference-Header-Content-Length: N` the body is N bytes of JSON then
the raw little-endian bytes of every input that carries `parameters.binary_data_size`, in
input order. Response: outputs asked for in binary (per output `parameters.binary_data`, or
request-level `parameters.binary_data_output`) go after the JSON the same way.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from contract import tensors
from service.errors import InvalidInput
from service.http.bodies import MAX_JSON_DEPTH, too_deep

HEADER = "Inference-Header-Content-Length"

DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
INTEGER_TYPES = {"INT64", "INT32", "INT16", "INT8", "UINT8", "UINT16", "UINT32"}
NP_TO_V2 = {v: k for k, v in DTYPES.items()}


class V2Error(InvalidInput):
    """A body that breaks the protocol or the model's inputs (v2 answers 400 {"error": ...})."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


@dataclass
class InferRequest:
    """A request whose tensors are the model's: what is left to check is against the model
    itself (rows per request, tokens per row, vocabulary: service.front.inputs.check_ids)."""

    id: str | None
    input_ids: np.ndarray  # int64 [batch, sequence]
    attention_mask: np.ndarray | None  # int64, input_ids' shape
    outputs: list[tuple[str, bool]]  # (name, binary): those asked for, else every output


def _shape(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in value):
        raise V2Error(f"{where}: shape must be a list of integers")
    if any(d < 0 for d in value):
        raise V2Error(f"{where}: shape has a negative dimension")
    return value


def _from_json_data(data: Any, datatype: str, shape: list[int], where: str) -> np.ndarray:
    if not isinstance(data, list):
        raise V2Error(f"{where}: data must be a list")
    try:
        arr = np.asarray(data)
    except (ValueError, OverflowError) as exc:
        raise V2Error(f"{where}: data is not a rectangular list of numbers ({exc})") from None
    if arr.size == 0:
        arr = arr.astype(DTYPES[datatype])
    elif datatype in INTEGER_TYPES and arr.dtype.kind not in "iu":
        raise V2Error(f"{where}: {datatype} data must hold integers only")
    elif datatype == "BOOL" and arr.dtype.kind != "b":
        raise V2Error(f"{where}: BOOL data must hold true/false only")
    elif datatype.startswith("FP") and arr.dtype.kind not in "iuf":
        raise V2Error(f"{where}: {datatype} data must hold numbers only")
    if arr.size != math.prod(shape):
        raise V2Error(f"{where}: data has {arr.size} elements, shape {shape} needs {math.prod(shape)}")
    try:
        out = arr.astype(DTYPES[datatype], casting="unsafe")
        if datatype in INTEGER_TYPES and not np.array_equal(out, arr):
            raise V2Error(f"{where}: values do not fit {datatype}")
    except OverflowError:
        raise V2Error(f"{where}: values do not fit {datatype}") from None
    return out.reshape(shape)


def _params(obj: dict[str, Any]) -> Any:
    """An object's `parameters`: absent or null reads as {}; anything else must be an object."""
    value = obj.get("parameters")
    return {} if value is None else value


def _flag(params: dict[str, Any], key: str, default: bool) -> bool:
    value = params.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise V2Error(f"parameters.{key} must be true or false")
    return value


def _split(body: bytes, header_length: str | None) -> tuple[dict[str, Any], memoryview]:
    """The JSON head (an object) and the binary tail of a request body."""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise V2Error(f"{HEADER} must be an integer") from None
        if n < 0 or n > len(body):
            raise V2Error(f"{HEADER} is {n}, the body has {len(body)} bytes")
        head, rest = body[:n], memoryview(body)[n:]
    else:
        head, rest = body, memoryview(b"")
    if too_deep(head):
        raise V2Error(f"malformed JSON: nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        req = json.loads(head.decode("utf-8"))
    except UnicodeDecodeError:
        raise V2Error("request JSON is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise V2Error(f"malformed JSON: {exc}") from None
    if not isinstance(req, dict):
        raise V2Error("request must be a JSON object")
    return req, rest


def _object_params(obj: dict[str, Any], where: str) -> dict[str, Any]:
    params = _params(obj)
    if not isinstance(params, dict):
        raise V2Error(f"{where}parameters must be an object")
    return params


def _input(t: dict[str, Any], where: str, rest: memoryview, offset: int) -> tuple[np.ndarray, int]:
    """One input tensor, from its JSON data or its bytes in the tail at `offset`."""
    datatype = t.get("datatype")
    if not isinstance(datatype, str) or datatype not in DTYPES:
        raise V2Error(f"{where}: datatype {str(datatype)[:16]!r} is not supported")
    shape = _shape(t.get("shape"), where)
    size = _object_params(t, f"{where}: ").get("binary_data_size")
    if size is None:
        if "data" not in t:
            raise V2Error(f"{where}: needs data or parameters.binary_data_size")
        return _from_json_data(t["data"], datatype, shape, where), offset
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise V2Error(f"{where}: binary_data_size must be a non-negative integer")
    dt = DTYPES[datatype]
    if size != math.prod(shape) * dt.itemsize:
        raise V2Error(f"{where}: binary_data_size {size} does not match shape {shape} of {datatype}")
    if offset + size > len(rest):
        raise V2Error(f"{where}: body ends before its {size} binary bytes")
    return np.frombuffer(rest[offset : offset + size], dtype=dt).reshape(shape), offset + size


def _inputs(raw_inputs: Any, rest: memoryview) -> dict[str, np.ndarray]:
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise V2Error("inputs must be a non-empty list")
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for k, t in enumerate(raw_inputs):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise V2Error(f"inputs[{k}]: each input needs a name")
        where = f"input {t['name'][:64]!r}"
        if t["name"] in inputs:
            raise V2Error(f"{where}: given twice")
        inputs[t["name"]], offset = _input(t, where, rest, offset)
    if offset != len(rest):
        raise V2Error(f"{len(rest) - offset} binary bytes after the last input")
    return inputs


def _outputs(raw: Any, binary_default: bool) -> list[tuple[str, bool]] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise V2Error("outputs must be a list")
    outputs: list[tuple[str, bool]] = []
    for k, o in enumerate(raw):
        if not isinstance(o, dict) or not isinstance(o.get("name"), str):
            raise V2Error(f"outputs[{k}]: each output needs a name")
        if any(o["name"] == seen for seen, _ in outputs):
            raise V2Error(f"output {o['name'][:64]!r}: asked twice")
        op = _object_params(o, f"outputs[{k}]: ")
        if op.get("classification"):
            raise V2Error("the classification extension is not supported")
        outputs.append((o["name"], _flag(op, "binary_data", binary_default)))
    return outputs


def _model_inputs(inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """input_ids and the optional attention_mask as int64 [batch, sequence], equal shapes."""
    unknown = set(inputs) - set(tensors.INPUTS)
    if unknown:
        raise V2Error(f"unknown input {sorted(unknown)[0][:64]!r} (inputs: {', '.join(tensors.INPUTS)})")
    if tensors.INPUT_IDS not in inputs:
        raise V2Error(f"input {tensors.INPUT_IDS!r} is required")
    ids, mask = inputs[tensors.INPUT_IDS], inputs.get(tensors.ATTENTION_MASK)
    for name, arr in ((tensors.INPUT_IDS, ids), (tensors.ATTENTION_MASK, mask)):
        if arr is None:
            continue
        if arr.dtype.kind not in "iu":
            raise V2Error(f"input {name!r} must be INT64 (or INT32), got {arr.dtype}")
        if arr.ndim != 2:
            raise V2Error(f"input {name!r} must have shape [batch, sequence], got {list(arr.shape)}")
    if mask is not None and mask.shape != ids.shape:
        raise V2Error(
            f"{tensors.ATTENTION_MASK} shape {list(mask.shape)} differs from {tensors.INPUT_IDS} {list(ids.shape)}"
        )
    return ids.astype(np.int64), None if mask is None else mask.astype(np.int64)


def _model_outputs(asked: list[tuple[str, bool]] | None, binary: bool) -> list[tuple[str, bool]]:
    if asked is None:
        return [(name, binary) for name in tensors.OUTPUTS]
    for name, _ in asked:
        if name not in tensors.OUTPUTS:
            raise V2Error(f"unknown output {name[:64]!r} (outputs: {', '.join(tensors.OUTPUTS)})")
    return asked


def parse_request(body: bytes, header_length: str | None) -> InferRequest:
    """A request body (JSON, or JSON then binary tensors) as the model's inputs and outputs."""
    req, rest = _split(body, header_length)
    params = _object_params(req, "")
    inputs = _inputs(req.get("inputs"), rest)
    binary = _flag(params, "binary_data_output", False)
    outputs = _outputs(req.get("outputs"), binary)
    rid = req.get("id")
    if rid is not None and not isinstance(rid, str):
        raise V2Error("id must be a string")
    ids, mask = _model_inputs(inputs)
    return InferRequest(rid, ids, mask, _model_outputs(outputs, binary))


def encode_response(
    head: dict[str, Any], outputs: list[tuple[str, np.ndarray, bool]]
) -> tuple[bytes, dict[str, str]]:
    """JSON (+ binary tail). Returns the body and the extra headers it needs."""
    described, tail = [], []
    for name, arr, binary in outputs:
        arr = np.ascontiguousarray(arr)
        t: dict[str, Any] = {
            "name": name,
            "datatype": NP_TO_V2[arr.dtype.newbyteorder("<")],
            "shape": list(arr.shape),
        }
        if binary:
            raw = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
            t["parameters"] = {"binary_data_size": len(raw)}
            tail.append(raw)
        else:
            t["data"] = arr.reshape(-1).tolist()
        described.append(t)
    body = orjson.dumps({**head, "outputs": described})
    if not tail:
        return body, {"content-type": "application/json"}
    return body + b"".join(tail), {
        HEADER: str(len(body)),
        "content-type": "application/octet-stream",
    }
