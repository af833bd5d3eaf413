"""Request and response bodies of the simple JSON API (v1)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

from export.manifest import MODEL_NAME_RE


def _utf8(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text is not valid UTF-8 (lone surrogate)") from None
    return text


Text = Annotated[str, AfterValidator(_utf8)]


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"texts": ["a small domesticated carnivore"], "top_k": 3},
                {"input_ids": [[5, 17, 9]], "attention_mask": [[1, 1, 1]]},
            ]
        },
    )

    texts: list[Text] | None = Field(default=None, description="raw texts, tokenized by the server")
    input_ids: list[list[StrictInt]] | None = Field(default=None, description="token ids per row")
    attention_mask: list[list[StrictInt]] | None = Field(
        default=None, description="1 for real tokens, 0 for padding; same shape as input_ids"
    )
    top_k: StrictInt = Field(default=3, ge=1, le=1000)
    return_embedding: StrictBool = False


class CompareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[Text]
    models: list[str] | None = Field(default=None, description="default: every ready model")
    top_k: StrictInt = Field(default=3, ge=1, le=1000)
    return_embedding: StrictBool = False

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
    embedding: list[float] | None = None


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
    error: str
    field: str | None = None


class ModelSummary(BaseModel):
    name: str
    state: str
    error: str | None = None
    provider: str | None = None
    providers: list[str] = []
    variant: str | None = None
    manifest: dict[str, Any] | None = None


class ModelList(BaseModel):
    models: list[ModelSummary]
