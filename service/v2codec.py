"""KServe v2 inference bodies: JSON tensors and Triton's binary tensor extension.

Request: with header `Inference-Header-Content-Length: N` the body is N bytes of JSON then
the raw little-endian bytes of every input that carries `parameters.binary_data_size`, in
input order. Response: outputs asked for in binary (per output `parameters.binary_data`, or
request-level `parameters.binary_data_output`) go after the JSON the same way.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

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


class V2Error(ValueError):
    """Bad request body: answered 400 {"error": ...}."""


@dataclass
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: list[tuple[str, bool]] | None  # (name, binary) when the request names outputs
    binary_output: bool  # request-level default
    parameters: dict[str, Any] = field(default_factory=dict)


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


def parse_request(body: bytes, header_length: str | None) -> InferRequest:
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
    try:
        req = json.loads(head.decode("utf-8"))
    except UnicodeDecodeError:
        raise V2Error("request JSON is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise V2Error(f"malformed JSON: {exc}") from None
    if not isinstance(req, dict):
        raise V2Error("request must be a JSON object")
    params = _params(req)
    if not isinstance(params, dict):
        raise V2Error("parameters must be an object")
    raw_inputs = req.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise V2Error("inputs must be a non-empty list")
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for k, t in enumerate(raw_inputs):
        where = f"inputs[{k}]"
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise V2Error(f"{where}: each input needs a name")
        name = t["name"]
        where = f"input {name[:64]!r}"
        if name in inputs:
            raise V2Error(f"{where}: given twice")
        datatype = t.get("datatype")
        if not isinstance(datatype, str) or datatype not in DTYPES:
            raise V2Error(f"{where}: datatype {str(datatype)[:16]!r} is not supported")
        shape = _shape(t.get("shape"), where)
        tparams = _params(t)
        if not isinstance(tparams, dict):
            raise V2Error(f"{where}: parameters must be an object")
        size = tparams.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise V2Error(f"{where}: binary_data_size must be a non-negative integer")
            dt = DTYPES[datatype]
            if size != math.prod(shape) * dt.itemsize:
                raise V2Error(f"{where}: binary_data_size {size} does not match shape {shape} of {datatype}")
            if offset + size > len(rest):
                raise V2Error(f"{where}: body ends before its {size} binary bytes")
            arr = np.frombuffer(rest[offset : offset + size], dtype=dt).reshape(shape)
            offset += size
        elif "data" in t:
            arr = _from_json_data(t["data"], datatype, shape, where)
        else:
            raise V2Error(f"{where}: needs data or parameters.binary_data_size")
        inputs[name] = arr
    if offset != len(rest):
        raise V2Error(f"{len(rest) - offset} binary bytes after the last input")
    outputs = None
    if req.get("outputs") is not None:
        if not isinstance(req["outputs"], list):
            raise V2Error("outputs must be a list")
        outputs = []
        for k, o in enumerate(req["outputs"]):
            if not isinstance(o, dict) or not isinstance(o.get("name"), str):
                raise V2Error(f"outputs[{k}]: each output needs a name")
            if any(o["name"] == seen for seen, _ in outputs):
                raise V2Error(f"output {o['name'][:64]!r}: asked twice")
            op = _params(o)
            if not isinstance(op, dict):
                raise V2Error(f"outputs[{k}]: parameters must be an object")
            if op.get("classification"):
                raise V2Error("the classification extension is not supported")
            default = _flag(params, "binary_data_output", False)
            outputs.append((o["name"], _flag(op, "binary_data", default)))
    rid = req.get("id")
    if rid is not None and not isinstance(rid, str):
        raise V2Error("id must be a string")
    return InferRequest(
        id=rid, inputs=inputs, outputs=outputs,
        binary_output=_flag(params, "binary_data_output", False), parameters=params,
    )  # fmt: skip


def encode_response(
    head: dict[str, Any], outputs: list[tuple[str, np.ndarray, bool]]
) -> tuple[bytes, dict[str, str]]:
    """JSON (+ binary tail). Returns the body and the extra headers it needs."""
    tensors, tail = [], []
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
        tensors.append(t)
    body = orjson.dumps({**head, "outputs": tensors})
    if not tail:
        return body, {"content-type": "application/json"}
    return body + b"".join(tail), {
        HEADER: str(len(body)),
        "content-type": "application/octet-stream",
    }
