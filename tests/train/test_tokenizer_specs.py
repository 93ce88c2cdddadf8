"""`--tokenizer char|bpe[:N]|PATH`, special tokens, and the tokenizer a model carries (to_tokens & co.)."""

import json

import pytest
import torch

from glassformer import ModelConfig, Transformer
from glassformer.errors import CheckpointError, ConfigError, InputError
from glassformer.train.tokenizers import BPETokenizer, CharTokenizer, load_tokenizer, tokenizer_from_spec

TEXT = "to be or not to be, that is the question\n" * 50


def test_special_tokens_encode_as_one_id_and_round_trip(tmp_path):
    tok = CharTokenizer.from_text(TEXT).with_specials(["[MASK]", "[PAD]"])
    n = len(tok.chars)
    assert tok.vocab_size == n + 2 and tok.token_to_id("[MASK]") == n and tok.token_to_id("[PAD]") == n + 1
    ids = tok.encode("to [MASK] or[PAD]")
    assert ids == tok.encode("to ") + [n] + tok.encode(" or") + [n + 1]
    assert tok.decode(ids) == "to [MASK] or[PAD]" and list(tok.encode_array("be[MASK]")) == tok.encode("be[MASK]")
    assert tok.with_specials(["[MASK]"]) == tok.with_specials([])  # adding one it has is a no-op
    assert load_tokenizer(tok.save(tmp_path)) == tok
    with pytest.raises(InputError, match=r"'\[' \(U\+005B\) at position 0"):
        CharTokenizer.from_text(TEXT).encode("[MASK]")  # without the special, its brackets are unknown characters
    with pytest.raises(ConfigError, match="special token"):
        CharTokenizer("ab", specials=["a"])
    bpe = BPETokenizer.train(_file(tmp_path, TEXT), vocab_size=300).with_specials(["[MASK]"])
    mask = bpe.token_to_id("[MASK]")
    assert mask == bpe.vocab_size - 1 and mask in bpe.encode("to be [MASK] not") and bpe.decode([mask]) == "[MASK]"


def test_tokenizer_specs(tmp_path):
    path = _file(tmp_path, TEXT)
    assert tokenizer_from_spec("char", [path]) == CharTokenizer.from_text(TEXT)
    bpe = tokenizer_from_spec("bpe:280", [path])
    assert isinstance(bpe, BPETokenizer) and 256 < bpe.vocab_size <= 280 and bpe.decode(bpe.encode(TEXT)) == TEXT
    assert tokenizer_from_spec("bpe", [path]).vocab_size > 256
    bpe.save(tmp_path / "saved")
    assert tokenizer_from_spec(str(tmp_path / "saved"), []) == bpe  # a glassformer tokenizer folder
    (tmp_path / "hf.json").write_text(bpe.hf.to_str())  # a Hugging Face tokenizer.json
    assert tokenizer_from_spec(str(tmp_path / "hf.json"), []).encode("to be") == bpe.encode("to be")
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    for spec, message in (("wordpiece", "unknown tokenizer 'wordpiece'"), ("bpe:big", "must be an integer"),
                          ("char", "needs a text file"), (str(tmp_path / "other.json"), "neither a glassformer nor")):
        with pytest.raises(ConfigError, match=message):
            tokenizer_from_spec(spec, [] if spec == "char" else [path])
    (tmp_path / "empty-folder").mkdir()
    with pytest.raises(InputError, match="no tokenizer.json"):
        tokenizer_from_spec(str(tmp_path / "empty-folder"), [])
    with pytest.raises(CheckpointError):
        load_tokenizer(tmp_path / "nothing")


def test_a_model_carries_its_tokenizer():
    tok = CharTokenizer("abc ")
    model = Transformer(ModelConfig(arch="decoder", d_model=16, n_layers=1, n_heads=2, d_vocab=4, n_ctx=8))
    with pytest.raises(InputError, match="no tokenizer"):
        model.to_tokens("abc")
    model.tokenizer = tok
    tokens = model.to_tokens("cab a")
    assert tokens.dtype == torch.long and tokens.tolist() == [tok.encode("cab a")]
    assert model.to_tokens(["ab", "ca"]).shape == (2, 2)
    assert model.to_str_tokens("cab") == ["c", "a", "b"] == model.to_str_tokens(tokens[0, :3])
    assert model.to_string(tokens[0]) == "cab a" and model.to_string(tokens) == ["cab a"]
    with pytest.raises(InputError, match="different lengths"):
        model.to_tokens(["ab", "abc"])
    with pytest.raises(InputError, match="no beginning-of-sequence token"):
        model.to_tokens("ab", prepend_bos=True)


def _file(tmp_path, text):
    path = tmp_path / "text.txt"
    path.write_text(text)
    return path
