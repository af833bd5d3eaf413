"""KServe v2 / Open Inference Protocol bodies (JSON form), for the OpenAPI document.

The infer route parses bodies with `service.api.v2codec` (JSON tensors and Triton's binary tensor
extension, which JSON Schema cannot describe); these models state the same rules for clients
and fuzzers: only `input_ids` (required) and `attention_mask`, integer datatypes, shape
[batch, sequence]. What a schema cannot say (data length = product of shape, equal shapes of the
two inputs, token ids below the vocabulary size, rows per request) is checked and answered 400.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from contract.tensors import ATTENTION_MASK, INPUT_IDS, InputName, OutputName

IntegerType = Literal["INT64", "INT32", "INT16", "INT8", "UINT8", "UINT16", "UINT32"]
BINARY = (
    "Binary tensor extension: with the header `Inference-Header-Content-Length: N` the body is N "
    "bytes of this JSON, then the raw little-endian bytes of each input whose `parameters` has "
    "`binary_data_size`, in input order (content-type application/octet-stream)."
)


class InputParameters(BaseModel):
    model_config = ConfigDict(extra="allow")

    binary_data_size: int | None = Field(
        default=None, ge=0, description="bytes of this tensor after the JSON"
    )


class OutputParameters(BaseModel):
    model_config = ConfigDict(extra="allow")

    binary_data: bool | None = Field(default=None, description="answer this tensor in binary")


class InferInputTensor(BaseModel):
    model_config = ConfigDict(extra="allow")  # unknown keys are ignored, as KServe servers do

    name: InputName
    shape: list[int] = Field(min_length=2, max_length=2, description="[batch, sequence]")
    datatype: IntegerType
    parameters: InputParameters | None = None
    data: list[Any] = Field(
        default=None,  # type: ignore[arg-type]
        description="row-major integers, flat or nested; absent when sent in binary",
    )


class InferRequestedOutput(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: OutputName
    parameters: OutputParameters | None = None


class InferenceRequest(BaseModel):
    """POST /v2/models/{name}/infer (JSON form)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "description": BINARY,
            "example": {
                "inputs": [
                    {"name": INPUT_IDS, "shape": [1, 3], "datatype": "INT64", "data": [5, 17, 9]},
                    {"name": ATTENTION_MASK, "shape": [1, 3], "datatype": "INT64", "data": [1, 1, 1]},
                ]
            },
        },
    )

    id: str | None = None
    parameters: dict[str, Any] | None = Field(
        default=None, description="binary_data_output: true asks every output in binary"
    )
    inputs: list[InferInputTensor] = Field(min_length=1, max_length=2)
    outputs: list[InferRequestedOutput] | None = Field(
        default=None, max_length=2, description="default: every output"
    )


class InferOutputTensor(BaseModel):
    name: OutputName
    shape: list[int]
    datatype: Literal["FP32"]
    parameters: InputParameters | None = None
    data: list[float] | None = Field(default=None, description="absent when answered in binary")


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    parameters: dict[str, Any] = Field(
        description="queue_ms, compute_ms, total_ms, batch_size, padded_length"
    )
    outputs: list[InferOutputTensor]


def infer_openapi() -> dict[str, Any]:
    """`openapi_extra` for the infer routes: JSON and binary request and response bodies."""
    ref = {"$ref": "#/components/schemas/InferenceRequest"}
    binary = {"schema": {"type": "string", "format": "binary"}, "description": BINARY}
    header = {"schema": {"type": "integer"}, "description": "bytes of JSON before the binary outputs"}
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ref}, "application/octet-stream": binary},
        },
        "responses": {
            "200": {
                "content": {"application/octet-stream": binary},
                "headers": {"Inference-Header-Content-Length": header},
            }
        },
    }
