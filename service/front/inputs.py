"""Validation and tokenisation, the front's share of a request before the engine sees it: rows
counted against the batch limit, texts tokenised (or refused above the model's length unless
truncation is asked), token ids and masks checked against the model.

Refusals are raised as service.errors (InvalidInput naming the field), never as HTTP statuses:
each API says them in its protocol.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from contract import tensors
from service.catalog import Model
from service.errors import InvalidInput

Encoded = tuple[list[np.ndarray], list[int], list[bool]]  # ids per row, tokens kept, whether cut


def _ids_row(row: Sequence[int] | np.ndarray, max_len: int, vocab: int, where: str) -> np.ndarray:
    """One row of token ids as int64, or the refusal that names what is wrong with it."""
    try:
        ids = np.asarray(row, dtype=np.int64)
    except (OverflowError, ValueError, TypeError):
        j = next((j for j, x in enumerate(row) if not -(2**63) <= x < 2**63), None)
        raise InvalidInput(
            "token ids must be 64-bit integers", where if j is None else f"{where}.{j}"
        ) from None
    if ids.ndim != 1 or ids.size == 0:
        raise InvalidInput("each row needs at least one token", where)
    if ids.size > max_len:
        raise InvalidInput(f"sequence of {ids.size} tokens is above the model's maximum of {max_len}", where)
    bad = np.flatnonzero((ids < 0) | (ids >= vocab))
    if bad.size:
        j = int(bad[0])
        raise InvalidInput(f"token id {int(ids[j])} is outside the vocabulary [0, {vocab})", f"{where}.{j}")
    return ids


def _mask_row(row: Sequence[int] | np.ndarray, ids: np.ndarray, where: str) -> np.ndarray:
    try:
        mask = np.asarray(row, dtype=np.int64)
    except (OverflowError, ValueError):
        raise InvalidInput("mask values must be 0 or 1", where) from None
    if mask.shape != ids.shape:
        raise InvalidInput(f"attention_mask row has {mask.size} values, input_ids row has {ids.size}", where)
    bad = np.flatnonzero((mask != 0) & (mask != 1))
    if bad.size:
        raise InvalidInput("mask values must be 0 or 1", f"{where}.{int(bad[0])}")
    if not mask.any():
        raise InvalidInput("a row's mask needs at least one 1", where)
    # Fused attention (model.opt.onnx, model.gpu.onnx) reads each row's length, not its mask: a
    # row must be its tokens then padding, or the answer would depend on the variant served.
    gap = np.flatnonzero(mask[: int(np.flatnonzero(mask)[-1])] == 0)
    if gap.size:
        raise InvalidInput("mask must be 1s then 0s (padding only at the end)", f"{where}.{int(gap[0])}")
    return mask


def check_rows(rows: int, limit: int, field: str) -> None:
    if rows == 0:
        raise InvalidInput("empty batch: give at least one row", field)
    if rows > limit:
        raise InvalidInput(f"batch of {rows} rows is above the limit of {limit}", field)


def tokenize(entry: Model, texts: Sequence[str]) -> list[list[str]]:
    """Each text's tokens by the model's tokenizer: the costly part of encoding, which
    /v1/compare does once per tokenizer rather than once per model."""
    return [entry.tokenizer.tokenize(text) for text in texts]


def encode_texts(
    entry: Model,
    texts: Sequence[str],
    max_rows: int,
    field: str = "texts",
    truncate: bool = False,
    tokens: list[list[str]] | None = None,
) -> Encoded:
    """Token ids per text, the tokens each row keeps, and whether it was cut; `tokens`: the
    texts already tokenized by this model's tokenizer.

    A text longer than the model's maximum is refused (naming the row and its token count)
    unless the request says `truncate` (TEI's rule): silently cutting a 500 KB text to 64
    tokens answered a question nobody asked.
    """
    check_rows(len(texts), max_rows, field)
    tok, m = entry.tokenizer, entry.manifest
    limit = min(tok.max_length, m.max_sequence_length)
    rows, kept, cut = [], [], []
    for i, words in enumerate(tokenize(entry, texts) if tokens is None else tokens):
        n = len(words)
        if n > limit and not truncate:
            raise InvalidInput(
                f"text has {n} tokens, above the model's maximum of {limit}; shorten it or "
                'send "truncate": true',
                f"{field}.{i}",
            )
        row = np.asarray(tok.ids(words, limit), dtype=np.int64)
        rows.append(row)
        kept.append(len(row))
        cut.append(n > limit)
    return rows, kept, cut


def _plain_row(
    row: Sequence[int] | np.ndarray, mask: Sequence[int] | np.ndarray | None, max_len: int, vocab: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """The usual row (a list of ints in the vocabulary, its mask absent or 1s then 0s), trimmed,
    with its mask; None for anything else, which the full checks then take (and name). In pure
    Python: numpy's per-call cost is most of a short row's checks."""
    if type(row) is not list or not 0 < len(row) <= max_len:
        return None
    try:
        if not (min(row) >= 0 and max(row) < vocab):
            return None
    except TypeError:  # not numbers
        return None
    n = len(row)
    if mask is None:
        kept = n
    else:
        if type(mask) is not list or len(mask) != n:
            return None
        kept = mask.count(1)
        if kept == 0 or kept + mask.count(0) != n or (kept < n and mask.index(0) != kept):
            return None
    ids = np.array(row[:kept] if kept < n else row, dtype=np.int64)
    return ids, np.ones(kept, dtype=np.int64)


def check_ids(
    entry: Model,
    input_ids: Sequence[Sequence[int]] | np.ndarray,
    attention_mask: Sequence[Sequence[int]] | np.ndarray | None,
    max_rows: int,
    ids_field: str = tensors.INPUT_IDS,
    mask_field: str = tensors.ATTENTION_MASK,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Validate token ids (+ mask) against the model; rows trimmed of trailing padding."""
    m = entry.manifest
    check_rows(len(input_ids), max_rows, ids_field)
    if attention_mask is not None and len(attention_mask) != len(input_ids):
        raise InvalidInput(
            f"attention_mask has {len(attention_mask)} rows, input_ids has {len(input_ids)}", mask_field
        )
    ids_rows, mask_rows = [], []
    for i, row in enumerate(input_ids):
        plain = _plain_row(
            row, None if attention_mask is None else attention_mask[i], m.max_sequence_length, m.vocab_size
        )
        if plain is not None:
            ids_rows.append(plain[0])
            mask_rows.append(plain[1])
            continue
        ids = _ids_row(row, m.max_sequence_length, m.vocab_size, f"{ids_field}.{i}")
        mask = (
            np.ones_like(ids)
            if attention_mask is None
            else _mask_row(attention_mask[i], ids, f"{mask_field}.{i}")
        )
        end = int(np.flatnonzero(mask)[-1]) + 1
        ids_rows.append(ids[:end])
        mask_rows.append(mask[:end])
    return ids_rows, mask_rows
