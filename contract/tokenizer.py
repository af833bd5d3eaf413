"""Word-level tokenizer built from the training split and saved beside the model.

Pure Python (no torch, no numpy) so the service tokenizes with exactly the code that
built the vocabulary.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from contract import atomic

PAD, UNK = "[PAD]", "[UNK]"
TOKEN_PATTERN = r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]"


class Tokenizer:
    """Lower-cases, splits on words and punctuation, maps unknown words to [UNK]."""

    def __init__(self, vocab: list[str], max_length: int = 64, pattern: str = TOKEN_PATTERN) -> None:
        if vocab[:2] != [PAD, UNK]:
            raise ValueError("vocabulary must start with [PAD], [UNK]")
        if len(set(vocab)) != len(vocab):
            raise ValueError("vocabulary has duplicate entries")
        self.vocab = list(vocab)
        self.index = {tok: i for i, tok in enumerate(self.vocab)}
        self.max_length = max_length
        self.pattern = pattern
        self._re = re.compile(pattern)
        self.pad_id, self.unk_id = 0, 1

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @classmethod
    def build(
        cls, texts: Iterable[str], *, min_freq: int = 2, max_size: int = 30000, max_length: int = 64
    ) -> Tokenizer:
        """Vocabulary of the words seen at least `min_freq` times, most frequent first."""
        counts = Counter(tok for t in texts for tok in re.findall(TOKEN_PATTERN, t.lower()))
        words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        return cls([PAD, UNK, *words[: max_size - 2]], max_length=max_length)

    def tokenize(self, text: str) -> list[str]:
        return self._re.findall(text.lower())

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """Token ids, truncated to `max_length` (default: the model's)."""
        return self.ids(self.tokenize(text), max_length)

    def ids(self, tokens: list[str], max_length: int | None = None) -> list[int]:
        """`encode` of text already tokenized (the service counts a text's tokens before encoding)."""
        limit = max_length or self.max_length
        return [self.index.get(tok, self.unk_id) for tok in tokens[:limit]] or [self.unk_id]

    def encode_batch(
        self, texts: list[str], max_length: int | None = None
    ) -> tuple[list[list[int]], list[list[int]]]:
        """Right-padded ids and attention masks, padded to the longest row."""
        rows = [self.encode(t, max_length) for t in texts]
        width = max(len(r) for r in rows)
        ids = [r + [self.pad_id] * (width - len(r)) for r in rows]
        mask = [[1] * len(r) + [0] * (width - len(r)) for r in rows]
        return ids, mask

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.vocab[i] for i in ids if i != self.pad_id)

    def to_dict(self) -> dict:
        return {
            "type": "word-level",
            "lowercase": True,
            "pattern": self.pattern,
            "max_length": self.max_length,
            "pad_token": PAD,
            "unk_token": UNK,
            "vocab": self.vocab,
        }

    def save(self, path: str | Path) -> None:
        atomic.write_text(path, json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("type") != "word-level" or not isinstance(data.get("vocab"), list):
            raise ValueError(f"{path}: not a headtohead word-level tokenizer")
        return cls(data["vocab"], max_length=int(data["max_length"]), pattern=data["pattern"])
