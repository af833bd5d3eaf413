"""export.parity on controlled disagreements: decisive argmax flips fail, near-ties pass.

PyTorch and ONNX Runtime sides are both tiny and hand-made, so the logits each returns are
known exactly: a PyTorch module returning one fixed logit row per input row, and an ONNX graph
broadcasting another fixed row to the batch. The PyTorch side also records what it was fed,
which shows whether the parity batches really contain padded rows.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from contract.manifest import Parity
from export import parity

TOL = 1e-4
D_MODEL = 4
MAX_LEN = 16
VOCAB = 50


class FixedLogits(torch.nn.Module):
    """Every row gets `logits`; records each (input_ids, attention_mask) it is given."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.cfg = SimpleNamespace(max_len=MAX_LEN, vocab_size=VOCAB)
        self.register_buffer("row", torch.tensor(logits, dtype=torch.float32))
        self.fed: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.fed.append((ids.clone(), mask.clone()))
        b = ids.shape[0]
        return self.row.expand(b, -1).clone(), torch.zeros(b, D_MODEL)


def fixed_logits_onnx(path: Path, logits: list[float]) -> Path:
    """ONNX graph with the repository's I/O contract whose logits are `logits` on every row."""
    n = len(logits)
    consts = [
        helper.make_tensor("row", TensorProto.FLOAT, [1, n], logits),
        helper.make_tensor("emb", TensorProto.FLOAT, [1, D_MODEL], [0.0] * D_MODEL),
        helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
        helper.make_tensor("one", TensorProto.INT64, [1], [1]),
        helper.make_tensor("n", TensorProto.INT64, [1], [n]),
        helper.make_tensor("d", TensorProto.INT64, [1], [D_MODEL]),
    ]
    nodes = [
        helper.make_node("Shape", ["input_ids"], ["shape"]),
        helper.make_node("Slice", ["shape", "zero", "one"], ["batch"]),
        helper.make_node("Concat", ["batch", "n"], ["logits_shape"], axis=0),
        helper.make_node("Concat", ["batch", "d"], ["emb_shape"], axis=0),
        helper.make_node("Expand", ["row", "logits_shape"], ["logits"]),
        helper.make_node("Expand", ["emb", "emb_shape"], ["embedding"]),
    ]
    io = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
        for name in ("input_ids", "attention_mask")
    ]
    outs = [
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n]),
        helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", D_MODEL]),
    ]
    graph = helper.make_graph(nodes, "fixed", io, outs, initializer=consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def measure(tmp_path: Path, torch_row: list[float], ort_row: list[float]) -> tuple[Parity, FixedLogits]:
    model = FixedLogits(torch_row)
    onnx_path = fixed_logits_onnx(tmp_path / "model.onnx", ort_row)
    result = parity.measure(model, {"model.onnx": onnx_path}, {"model.onnx": TOL})["model.onnx"]
    return result, model


def test_agreement_passes(tmp_path: Path) -> None:
    p, _ = measure(tmp_path, [0.0, 1.0, 0.5], [0.0, 1.0, 0.5])
    assert p.rows > 0 and p.argmax_agreement == 1.0
    assert (p.near_ties, p.decisive_disagreements, p.max_abs_logits) == (0, 0, 0.0)
    parity.check("agree", p)


def test_decisive_argmax_disagreement_raises(tmp_path: Path) -> None:
    """PyTorch picks class 1 by a margin of 1.0; ONNX Runtime picks class 2."""
    p, _ = measure(tmp_path, [0.0, 1.0, 0.0], [0.0, 0.0, 1.0])
    assert p.argmax_agreement == 0.0
    assert p.near_ties == 0 and p.decisive_disagreements == p.rows > 0
    with pytest.raises(parity.ParityError, match="parity failed"):
        parity.check("decisive", p)


def test_near_tie_flip_does_not_raise(tmp_path: Path) -> None:
    """Top-2 gap 5e-5 (<= 2 x tolerance) and logits within tolerance: a flip is allowed."""
    p, _ = measure(tmp_path, [0.0, 1.0, 1.0 - 5e-5], [0.0, 1.0 - 5e-5, 1.0])
    assert p.argmax_agreement == 0.0  # recorded, not hidden
    assert p.near_ties == p.rows > 0 and p.decisive_disagreements == 0
    assert p.max_abs_logits == pytest.approx(5e-5, rel=0.05) and p.max_abs_logits <= TOL
    parity.check("near-tie", p)


def test_check_raises_on_any_decisive_disagreement() -> None:
    """The argmax rule stands on its own, not only through the logits tolerance."""
    base = dict(max_abs_logits=1e-6, max_abs_embedding=1e-6, tolerance=TOL, shapes=[[2, 3]], rows=2)
    parity.check("ties only", Parity(argmax_agreement=0.5, near_ties=1, decisive_disagreements=0, **base))
    with pytest.raises(parity.ParityError):
        parity.check("one flip", Parity(argmax_agreement=0.5, near_ties=0, decisive_disagreements=1, **base))
    with pytest.raises(parity.ParityError):
        parity.check("over tolerance", Parity(**{**base, "max_abs_logits": 2 * TOL}, argmax_agreement=1.0))


def test_parity_batches_contain_padded_rows(tmp_path: Path) -> None:
    """Every recorded shape with several rows of length > 1 had padded rows in it."""
    p, model = measure(tmp_path, [0.0, 1.0, 0.5], [0.0, 1.0, 0.5])
    assert [list(ids.shape) for ids, _ in model.fed] == p.shapes
    assert p.rows == sum(b for b, _ in p.shapes)
    multi = [(ids, mask) for ids, mask in model.fed if ids.shape[0] > 1 and ids.shape[1] > 1]
    assert len(multi) >= 2  # the default shapes cover padding at more than one length
    for ids, mask in multi:
        lengths = mask.sum(dim=1)
        padded = lengths < ids.shape[1]
        assert padded.any(), f"no padded row in a {list(ids.shape)} parity batch"
        assert (~padded).any(), f"no full-length row in a {list(ids.shape)} parity batch"
        for row in np.flatnonzero(padded.numpy()):
            n = int(lengths[row])
            assert n >= 1 and mask[row, :n].all()  # padding is trailing, at least one real token
            assert (ids[row, n:] == 0).all()  # pad id at the masked positions
    assert any(s == MAX_LEN for _, s in p.shapes)  # the model's maximum length is covered
