"""TextTask: windows are real stretches of the right split, the token cache is memory-mapped and keyed
by the file's content, other tokenizers and large vocabularies, and errors for bad files."""

import mmap
import random

import numpy as np
import pytest
import torch

from glassformer.errors import ConfigError, InputError
from glassformer.train.data import TextTask, cache_dir, load_tokens
from glassformer.train.tokenizers import BPETokenizer, CharTokenizer


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSFORMER_CACHE", str(tmp_path / "cache"))


def write(tmp_path, text, name="corpus.txt"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# 3000 random characters: no 12-character stretch repeats, so a window's place in the text is unambiguous
TEXT = "".join(random.Random(0).choices("abcdefghijklmnopqrstuvwxyz\n", k=3000))


def test_windows_are_stretches_of_their_split(tmp_path):
    path = write(tmp_path, TEXT)
    n_train = int(0.9 * len(TEXT))
    train, val = TextTask(path, block_size=12), TextTask(path, block_size=12, split="val")
    assert len(train) == n_train and len(val) == len(TEXT) - n_train
    assert train.tokenizer == CharTokenizer(sorted(set(TEXT))) and train.d_vocab == 27
    assert train.n_ctx() == 12 and train.archs == ("decoder",)
    for task, part in ((train, TEXT[:n_train]), (val, TEXT[n_train:])):
        batch = task.batch(50)
        assert batch.inputs.shape == batch.targets.shape == batch.loss_mask.shape == (50, 12)
        assert batch.inputs.dtype == torch.long and batch.loss_mask.all()
        assert torch.equal(batch.inputs[:, 1:], batch.targets[:, :-1])
        for row in range(50):
            window = task.tokenizer.decode(batch.inputs[row]) + task.tokenizer.decode(batch.targets[row, -1:])
            assert window in part
    assert val.with_split("train").batch(4).inputs.shape == (4, 12)
    assert TextTask(path, block_size=12, split="test").tokens.shape == val.tokens.shape  # "test" = "val"


def test_every_start_is_reachable_and_seeded(tmp_path):
    path = write(tmp_path, TEXT[:200])
    task = TextTask(path, block_size=20, seed=1)
    inputs = task.batch(2000).inputs
    firsts = {task.tokenizer.decode(row) for row in inputs}
    starts = {TEXT.index(w) for w in firsts}
    assert starts == set(range(len(task) - 20))  # both ends included, nothing past the split
    a, b = TextTask(path, block_size=20, seed=4), TextTask(path, block_size=20, seed=4)
    assert torch.equal(a.batch(8).inputs, b.batch(8).inputs)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(a.batch(8, generator=g1).inputs, TextTask(path, block_size=20).batch(8, generator=g2).inputs)
    prompt, continuation = a.example(prompt_len=10, answer_len=5)
    assert len(prompt) == 10 and len(continuation) == 5 and prompt + continuation in TEXT
    with pytest.raises(InputError, match="prompt_len"):
        a.example(prompt_len=500)


def test_token_cache_is_memory_mapped_and_keyed_by_content(tmp_path):
    path = write(tmp_path, TEXT)
    tokens, tok = load_tokens(path)
    assert isinstance(tokens.base.obj, mmap.mmap) and tokens.dtype == np.uint16 and len(tokens) == len(TEXT)  # memory-mapped
    assert tok.decode(tokens) == TEXT
    cached = sorted(p.name for p in cache_dir().rglob("tokens-*"))
    assert len(cached) == 1 and cached[0].endswith(".uint16")
    again, _ = load_tokens(path)  # second time: read from the cache, nothing new written
    assert np.array_equal(again, tokens) and sorted(p.name for p in cache_dir().rglob("tokens-*")) == cached
    path.write_text(TEXT.upper(), encoding="utf-8")  # new content: new key, new tokens
    changed, tok2 = load_tokens(path)
    assert tok2.decode(changed) == TEXT.upper() and len(list(cache_dir().rglob("tokens-*"))) == 2


def test_other_tokenizers_and_large_vocabularies(tmp_path):
    path = write(tmp_path, TEXT)
    bpe = BPETokenizer.train(path, vocab_size=280)
    task = TextTask(path, block_size=8, tokenizer=bpe)
    all_tokens, _ = load_tokens(path, bpe)
    assert task.tokenizer is bpe and np.array_equal(all_tokens, bpe.encode(TEXT))
    assert len(task) == int(0.9 * len(all_tokens)) < int(0.9 * len(TEXT))

    # more than 65,536 distinct characters: stored as uint32
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 20000)] + [chr(c) for c in range(0x20000, 0x20000 + 50000)]
    big = "".join(chars)
    path = write(tmp_path, big, "big.txt")
    tokens, tok = load_tokens(path)
    assert tokens.dtype == np.uint32 and tok.vocab_size == 70000 and int(tokens.max()) == 69999
    assert tok.decode(tokens[-100:]) == big[-100:]


def test_bad_files_and_options_raise(tmp_path):
    with pytest.raises(InputError, match="no such text file"):
        TextTask(tmp_path / "missing.txt")
    with pytest.raises(InputError, match="empty"):
        TextTask(write(tmp_path, "", "empty.txt"))
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        TextTask(tmp_path / "latin1.txt")
    short = write(tmp_path, "x" * 100, "short.txt")
    with pytest.raises(InputError, match="val split .* 10 tokens, fewer than block_size \\+ 1 = 17"):
        TextTask(short, block_size=16, split="val")
    with pytest.raises(ConfigError, match="split"):
        TextTask(short, block_size=4, split="dev")
    with pytest.raises(ConfigError, match="arch"):
        TextTask(short, block_size=4).batch(2, arch="encoder")
    with pytest.raises(InputError, match="'x' \\(U\\+0078\\)"):
        TextTask(short, block_size=4, tokenizer=CharTokenizer("abc"))


def test_shakespeare(shakespeare_tiny):
    task = TextTask(shakespeare_tiny, block_size=64)
    text = shakespeare_tiny.read_text(encoding="utf-8")
    val = task.with_split("val")
    assert len(task) + len(val) == len(text) and len(task) == int(0.9 * len(text))
    assert task.tokenizer.decode(task.tokens[:500]) == text[:500]
    batch = task.batch(8)
    for row in range(8):
        assert task.tokenizer.decode(batch.inputs[row]) in text
