"""WordNet parsing on the committed fixture, splits, tokenizer round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract.tokenizer import Tokenizer
from models.data import LEXNAMES, WordNetMissingError, definition_of, load_wordnet, parse_data_file, split


def test_lexnames_are_the_45_supersenses() -> None:
    assert len(LEXNAMES) == 45 and LEXNAMES[5] == "noun.animal" and LEXNAMES[44] == "adj.ppl"


def test_definition_drops_examples() -> None:
    gloss = 'having the necessary means or skill; "able to swim"; "she was able to program"'
    assert definition_of(gloss) == "having the necessary means or skill"
    assert definition_of("an entity that has physical existence") == "an entity that has physical existence"
    assert definition_of('"only an example"') == ""


def test_parse_fixture(wordnet_dir: Path) -> None:
    examples = load_wordnet(wordnet_dir)
    assert len(examples) > 500
    by_key = {e.key: e for e in examples}
    assert len(by_key) == len(examples)  # keys are unique
    assert {e.key.split(":")[0] for e in examples} == {"noun", "verb", "adj", "adv"}
    assert all(e.text and 0 <= e.label < 45 for e in examples)
    # The license header (lines starting with spaces) is not data.
    assert not any("Princeton" in e.text for e in examples)
    # Verbs carry verb.* labels, adverbs adv.all.
    assert all(LEXNAMES[e.label].startswith("verb.") for e in examples if e.key.startswith("verb:"))
    assert all(LEXNAMES[e.label] == "adv.all" for e in examples if e.key.startswith("adv:"))


def test_bad_line_is_reported_with_its_location(tmp_path: Path) -> None:
    bad = tmp_path / "data.noun"
    bad.write_text("  header\n00001740 03 n\n")
    with pytest.raises(ValueError, match="data.noun:2"):
        parse_data_file(bad)


def test_missing_wordnet_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(WordNetMissingError, match="apt-get install wordnet-base"):
        load_wordnet(tmp_path)


def test_split_is_deterministic_and_disjoint(wordnet_dir: Path) -> None:
    examples = load_wordnet(wordnet_dir)
    a, b = split(examples, seed=3), split(list(reversed(examples)), seed=3)
    assert [e.key for e in a.train] == [e.key for e in b.train]
    keys = [set(e.key for e in part) for part in (a.train, a.validation, a.test)]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    assert sum(map(len, keys)) == len(examples)
    assert split(examples, seed=4).train != a.train


def test_tokenizer_round_trip(tmp_path: Path, wordnet_dir: Path) -> None:
    texts = [e.text for e in load_wordnet(wordnet_dir)]
    tok = Tokenizer.build(texts, min_freq=1, max_length=64)
    sample = "a member of the genus; having (or being) a thing"
    ids = tok.encode(sample)
    assert tok.decode(ids) == " ".join(tok.tokenize(sample))
    assert tok.encode("zzzunseenword")[0] == tok.unk_id
    tok.save(tmp_path / "tok.json")
    again = Tokenizer.load(tmp_path / "tok.json")
    assert again.vocab == tok.vocab and again.encode(sample) == ids and again.max_length == 64


def test_tokenizer_truncates_and_pads() -> None:
    tok = Tokenizer(["[PAD]", "[UNK]", "a", "b"], max_length=3)
    assert tok.encode("a b a b a") == [2, 3, 2]
    ids, mask = tok.encode_batch(["a", "a b"])
    assert ids == [[2, 0], [2, 3]] and mask == [[1, 0], [1, 1]]
    assert tok.encode("") == [tok.unk_id]  # never an empty row


def test_tokenizer_rejects_bad_files(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text('{"type": "bpe"}')
    with pytest.raises(ValueError, match="not a headtohead"):
        Tokenizer.load(tmp_path / "t.json")
    with pytest.raises(ValueError, match="must start"):
        Tokenizer(["a", "b"])
