"""Request and response bodies of the simple JSON API (v1)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    WithJsonSchema,
    field_validator,
)

from contract.manifest import MODEL_NAME_RE
from contract.tensors import ATTENTION_MASK, INPUT_IDS


def _utf8(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text is not valid UTF-8 (lone surrogate)") from None
    return text


Text = Annotated[str, AfterValidator(_utf8)]


def _integral(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# JSON Schema's "integer" includes 3.0; strings and booleans stay refused
JsonInt = Annotated[StrictInt, BeforeValidator(_integral)]


# Exactly one input kind; attention_mask only with input_ids (what predict enforces).
_ONE_INPUT = [
    {
        "required": ["texts"],
        "not": {"anyOf": [{"required": [INPUT_IDS]}, {"required": [ATTENTION_MASK]}]},
    },
    {"required": [INPUT_IDS], "not": {"required": ["texts"]}},
]


def _no_null_defaults(extra: dict[str, Any]):  # noqa: ANN202
    """json_schema_extra for models whose optional fields are absent, never null: their schema
    must not show `"default": null` (null is refused: the field is left out instead)."""

    def patch(schema: dict[str, Any]) -> None:
        for prop in schema.get("properties", {}).values():
            if "default" in prop and prop["default"] is None:
                del prop["default"]
        schema.update(extra)

    return patch


_HAS_ONE = WithJsonSchema(
    {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 1}, "contains": {"const": 1}}
)
_TRUNCATE = "texts longer than the model's maximum: 422 naming the row and its token count, or cut to the maximum with true"


class PredictRequest(BaseModel):
    """Exactly one of `texts` or `input_ids`. Limits that depend on the server (rows per
    request, tokens per row, vocabulary) are filled into /openapi.json from its settings and
    models; `attention_mask` rows must match `input_ids` rows in length (checked, 422)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=_no_null_defaults(
            {
                "oneOf": _ONE_INPUT,
                "examples": [
                    {"texts": ["a small domesticated carnivore"], "top_k": 3},
                    {INPUT_IDS: [[5, 17, 9]], ATTENTION_MASK: [[1, 1, 1]]},
                ],
            }
        ),
    )

    texts: list[Text] = Field(default=None, min_length=1, description="raw texts, tokenized by the server")  # type: ignore[assignment]
    input_ids: list[Annotated[list[Annotated[JsonInt, Field(ge=0)]], Field(min_length=1)]] = Field(  # type: ignore[assignment]
        default=None, min_length=1, description="token ids per row, each in [0, vocabulary size)"
    )
    attention_mask: list[Annotated[list[Annotated[JsonInt, Field(ge=0, le=1)]], _HAS_ONE]] = Field(  # type: ignore[assignment]
        default=None,
        min_length=1,
        description="1 for real tokens, 0 for padding; same shape as input_ids; each row needs a 1",
    )
    top_k: JsonInt = Field(default=3, ge=1, le=1000)
    return_embedding: StrictBool = False
    truncate: StrictBool = Field(default=False, description=_TRUNCATE)


class PredictRequestInts(PredictRequest):
    """`PredictRequest` for the usual body, whose numbers are all JSON integers: pydantic-core
    checks them without a Python call per token (JsonInt's for 3.0 costs 4x the parse). Not a
    schema of its own: a body it refuses is parsed again as `PredictRequest`, for 3.0 or the error."""

    input_ids: list[Annotated[list[Annotated[StrictInt, Field(ge=0)]], Field(min_length=1)]] = Field(  # type: ignore[assignment]
        default=None, min_length=1
    )
    attention_mask: list[list[Annotated[StrictInt, Field(ge=0, le=1)]]] = Field(default=None, min_length=1)  # type: ignore[assignment]
    top_k: StrictInt = Field(default=3, ge=1, le=1000)


class CompareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_no_null_defaults({}))

    texts: list[Text] = Field(min_length=1)
    models: list[Annotated[str, Field(pattern=MODEL_NAME_RE.pattern)]] = Field(  # type: ignore[assignment]
        default=None, min_length=1, description="default: every ready model"
    )
    top_k: JsonInt = Field(default=3, ge=1, le=1000)
    return_embedding: StrictBool = False
    truncate: StrictBool = Field(default=False, description=_TRUNCATE)

    @field_validator("models")
    @classmethod
    def _names(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError("models must not be empty (omit it for every model)")
        for name in v or []:
            if not MODEL_NAME_RE.fullmatch(name):
                raise ValueError(f"{name[:80]!r} is not a model name")
        return v


class LabelScore(BaseModel):
    label: str
    label_id: int
    score: float


class Prediction(BaseModel):
    label: str
    label_id: int
    score: float
    top_k: list[LabelScore]
    tokens: int = Field(description="tokens of this row the model read")
    truncated: bool = Field(description="whether the text was cut to the model's maximum")
    embedding: list[float] = Field(default=None, description="with return_embedding")  # type: ignore[assignment]


class Timing(BaseModel):
    queue_ms: float
    compute_ms: float
    total_ms: float
    batch_size: int = Field(description="rows in the executed batch, this request's and others'")
    padded_length: int


class PredictResponse(BaseModel):
    model: str
    predictions: list[Prediction]
    timing: Timing


class CompareResponse(BaseModel):
    results: dict[str, PredictResponse]


class ErrorResponse(BaseModel):
    """v1 errors: what is wrong and the request field it is about (dotted path, `name` for the
    model in the URL, `body` for the body as a whole, null when no field is to blame)."""

    error: str
    field: str | None = None


class V2ErrorResponse(BaseModel):
    """KServe v2 errors: `{"error": "..."}`."""

    error: str


class CudaGraphsSummary(BaseModel):
    """The model's captured CUDA graphs: how many, the device bytes of their bound input and output
    buffers, how long capturing took, and how much the process's device memory grew meanwhile
    (NVML: ORT's arena for the graphs' intermediate tensors included; null when NVML cannot tell)."""

    graphs: int
    bound_bytes: int
    capture_s: float
    capture_growth_bytes: int | None = None  # this process's device memory growth while capturing


class ModelSummary(BaseModel):
    name: str
    state: str
    error: str | None = None
    provider: str | None = None
    providers: list[str] = []
    variant: str | None = None
    cuda_graphs: CudaGraphsSummary | None = None
    # the served variant's parity on its provider: status (proven / proven-at-start / unproven),
    # the measurement behind it, and why a preferred variant was not served (service.runtime.variants.Served)
    parity: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None


class ModelList(BaseModel):
    models: list[ModelSummary]
