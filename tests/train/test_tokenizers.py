"""Tokenizers: round trips, unknown characters, JSON save/load (and its errors), BPE training, and
GPT-2-format vocab/merges files checked against Hugging Face transformers' GPT2Tokenizer."""

import json

import numpy as np
import pytest
import torch

from glassformer.errors import CheckpointError, ConfigError, InputError
from glassformer.train.tokenizers import BPETokenizer, CharTokenizer, load_tokenizer

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 40
UNICODE = "naïve café — ☃ 日本語 🎉 \t tabs\nand ​zero-width"


def test_char_tokenizer_round_trip_and_order():
    tok = CharTokenizer.from_text(TEXT)
    assert list(tok.chars) == sorted(set(TEXT)) and tok.vocab_size == len(set(TEXT)) == len(tok)
    ids = tok.encode(TEXT)
    assert len(ids) == len(TEXT) and tok.decode(ids) == TEXT
    assert tok.decode(torch.tensor(ids)) == TEXT and tok.decode(np.array(ids)) == TEXT
    assert tok.encode("aA") == [tok.chars.index("a"), tok.chars.index("A")]
    assert np.array_equal(tok.encode_array(TEXT), np.array(ids))
    uni = CharTokenizer.from_text(UNICODE)
    assert uni.decode(uni.encode(UNICODE)) == UNICODE  # code points above U+FFFF (the emoji) included
    assert np.array_equal(uni.encode_array(UNICODE), np.array(uni.encode(UNICODE)))


def test_char_tokenizer_errors_name_the_problem():
    tok = CharTokenizer("abc>")
    with pytest.raises(InputError, match=r"'z' \(U\+007A\) at position 2"):
        tok.encode("abzc")
    with pytest.raises(InputError, match=r"'☃' \(U\+2603\)"):
        tok.encode_array("abc" * 100 + "☃")
    with pytest.raises(InputError, match="token id 4 is out of range"):
        tok.decode([0, 4])
    with pytest.raises(InputError, match="out of range"):
        tok.decode([-1])
    with pytest.raises(ConfigError, match="single character.*'ab'"):
        CharTokenizer(["a", "ab"])
    with pytest.raises(ConfigError, match="duplicate.*'a'"):
        CharTokenizer("aba")


def test_char_tokenizer_save_load_is_json(tmp_path):
    tok = CharTokenizer("abc>é☃")
    path = tok.save(tmp_path / "ckpt")
    assert path.name == "tokenizer.json"
    data = json.loads(path.read_text(encoding="utf-8"))  # plain JSON, no pickle
    assert data["type"] == "char" and data["chars"] == list("abc>é☃")
    for where in (tmp_path / "ckpt", path):
        loaded = load_tokenizer(where)
        assert loaded == tok and loaded.encode("c☃a") == tok.encode("c☃a")
    assert tok.fingerprint() == loaded.fingerprint() != CharTokenizer("abc").fingerprint()


def test_load_tokenizer_rejects_missing_truncated_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="no tokenizer"):
        load_tokenizer(tmp_path)
    path = CharTokenizer("abc").save(tmp_path)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_tokenizer(tmp_path)
    path.write_text(json.dumps({"model": {"type": "BPE"}}))  # e.g. a Hugging Face tokenizer.json
    with pytest.raises(CheckpointError, match="not a glassformer tokenizer"):
        load_tokenizer(tmp_path)
    path.write_text(json.dumps({"format": "glassformer-tokenizer", "version": 1, "type": "wordpiece"}))
    with pytest.raises(CheckpointError, match="unknown tokenizer type 'wordpiece'"):
        load_tokenizer(tmp_path)
    path.write_text(json.dumps({"format": "glassformer-tokenizer", "version": 1, "type": "char", "chars": ["ab"]}))
    with pytest.raises(CheckpointError, match="single character"):
        load_tokenizer(tmp_path)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(TEXT + UNICODE, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def bpe(corpus):
    return BPETokenizer.train(corpus, vocab_size=300)


def test_bpe_trains_and_round_trips_any_text(bpe):
    assert bpe.vocab_size == 300
    ids = bpe.encode(TEXT)
    assert bpe.decode(ids) == TEXT
    assert len(ids) < len(TEXT.encode()) / 2  # the merges compress the text they were learned on
    unseen = "Zebras 🦓 quietly ∑ x² over ℝ — never in the corpus"
    assert bpe.decode(bpe.encode(unseen)) == unseen  # byte-level: nothing is unknown
    assert np.array_equal(bpe.encode_array(unseen), np.array(bpe.encode(unseen)))
    with pytest.raises(InputError, match="token id 300 is out of range"):
        bpe.decode([1, 300])
    with pytest.raises(ConfigError, match="vocab_size"):
        BPETokenizer.train(__file__, vocab_size=100)
    with pytest.raises(InputError, match="no such text file"):
        BPETokenizer.train("/nonexistent/file.txt")


def test_bpe_save_load_round_trip(bpe, tmp_path):
    path = bpe.save(tmp_path)
    assert json.loads(path.read_text(encoding="utf-8"))["type"] == "bpe"
    loaded = load_tokenizer(tmp_path)
    assert isinstance(loaded, BPETokenizer) and loaded == bpe
    assert loaded.encode(TEXT + UNICODE) == bpe.encode(TEXT + UNICODE)


def test_gpt2_format_files_match_transformers_gpt2_tokenizer(bpe, tmp_path):
    bpe.hf.model.save(str(tmp_path))  # writes vocab.json + merges.txt, GPT-2's file format
    gpt2_style = BPETokenizer.from_gpt2_files(tmp_path)
    sample = "Speak, speak. Before we proceed, café ☃ 🎉 and  double  spaces\n\nok"
    assert gpt2_style.encode(sample) == bpe.encode(sample)
    assert gpt2_style.decode(gpt2_style.encode(sample)) == sample
    transformers = pytest.importorskip("transformers")
    reference = transformers.GPT2Tokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    assert gpt2_style.encode(sample) == reference.encode(sample)  # the pure-Python GPT-2 algorithm
    with pytest.raises(InputError, match="vocab.json and merges.txt"):
        BPETokenizer.from_gpt2_files(tmp_path / "missing")
