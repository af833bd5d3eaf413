"""No body gets a 5xx: every body-taking route, fed arbitrary bytes and JSON of arbitrary shape and
depth up to the body limit through the real ASGI app (tiny models), answers 2xx or a 4xx with a
JSON error body. The bracket bodies nested 100,000 deep once reached the stdlib parser and came
back 500 (RecursionError); they are refused 4xx by service.http.bodies.too_deep now."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.app import INFERENCE_ROUTES, create_app
from service.http.bodies import MAX_JSON_DEPTH, too_deep
from tests.service.test_service_api import AppRunner, settings_for

BODY_LIMIT = 1 << 20
PATHS = sorted(
    {r.path.replace("{name}", "mha-tiny").replace("{version}", "1") for r in INFERENCE_ROUTES}
    | {r.path.replace("{name}", "mha-tiny") for r in INFERENCE_ROUTES if "{version}" not in r.path}
)
DATATYPES = ["INT64", "INT32", "FP32", "BOOL", "UINT8", "BYTES", "", "int64"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=6),
    max_leaves=40,
)
tensor = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["input_ids", "attention_mask", "x"]),
        "shape": st.lists(st.integers(-2, 70), max_size=4) | json_values,
        "datatype": st.sampled_from(DATATYPES) | json_values,
        "data": st.lists(st.integers(-5, 5000), max_size=70) | json_values,
    },
    optional={"parameters": st.dictionaries(st.sampled_from(["binary_data_size", "x"]), json_values)},
)
shaped = st.one_of(
    st.fixed_dictionaries({"texts": st.lists(st.text(max_size=30), max_size=4) | json_values}),
    st.fixed_dictionaries({"input_ids": st.lists(st.lists(st.integers(-3, 5000), max_size=8), max_size=3)}),
    st.fixed_dictionaries(
        {"inputs": st.lists(tensor, max_size=3) | json_values},
        optional={"outputs": json_values, "parameters": json_values, "id": json_values, "top_k": json_values},
    ),
    json_values,
)


@st.composite
def nested(draw: st.DrawFn) -> bytes:
    """Brackets (and objects) nested to any depth that fits in the body limit."""
    depth = draw(st.integers(0, BODY_LIMIT // 8))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'{"texts":', b"}")]))
    closed = draw(st.booleans())
    return opener * depth + (closer * depth if closed else b"")


bodies = st.one_of(
    st.binary(max_size=512),
    shaped.map(lambda v: json.dumps(v).encode()),
    nested(),
)


@pytest.fixture(scope="module")
def runner(tiny_repo: Path):  # noqa: ANN201
    r = AppRunner(create_app(settings_for(tiny_repo, max_body_bytes=BODY_LIMIT), gpu_metrics=False))
    yield r
    r.close()


def _assert_2xx_or_4xx_json(r, what: str) -> None:  # noqa: ANN001
    assert r.status_code < 300 or 400 <= r.status_code < 500, (r.status_code, r.text[:300], what[:200])
    if r.status_code >= 400:
        assert isinstance(r.json().get("error"), str), r.text[:300]


@pytest.mark.parametrize("path", PATHS)
def test_nested_brackets_100000_deep_are_a_4xx(runner: AppRunner, path: str) -> None:
    r = runner.post(
        path, content=b"[" * 100_000 + b"]" * 100_000, headers={"content-type": "application/json"}
    )
    assert 400 <= r.status_code < 500, r.text[:300]
    assert "nested deeper than" in r.json()["error"]


def test_depth_limit_counts_brackets_outside_strings_only() -> None:
    assert not too_deep(b'{"texts": ["' + b"[" * 1000 + b'"]}')
    assert not too_deep(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
    assert too_deep(b"[" * (MAX_JSON_DEPTH + 1))
    assert too_deep(b'"\\"' + b"[" * (MAX_JSON_DEPTH + 1))  # an escaped quote does not end the scan


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), body=bodies, content_type=st.sampled_from(["application/json", None]))
def test_any_body_gets_a_2xx_or_a_4xx_with_a_json_error(
    runner: AppRunner, path: str, body: bytes, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    _assert_2xx_or_4xx_json(runner.post(path, content=body, headers=headers), repr(body))


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    json_part=shaped.map(lambda v: json.dumps(v).encode()),
    tail=st.binary(max_size=64),
    cut=st.integers(-5, 600),
)
def test_any_binary_v2_body_gets_a_2xx_or_a_4xx_with_a_json_error(
    runner: AppRunner, json_part: bytes, tail: bytes, cut: int
) -> None:
    headers = {"content-type": "application/octet-stream", "Inference-Header-Content-Length": str(cut)}
    r = runner.post("/v2/models/mha-tiny/infer", content=json_part + tail, headers=headers)
    _assert_2xx_or_4xx_json(r, repr(json_part + tail))
