"""Large text files stream: read in pieces, tokenized into a memory-mapped array, trained on without ever
holding the file; and every bad data file gets its own clear error."""

import mmap
import tracemalloc

import numpy as np
import pytest
import torch

from glassformer.errors import ConfigError, InputError
from glassformer.train import stream
from glassformer.train.data import TextTask
from glassformer.train.tasks.labels import LabelsTask
from glassformer.train.tasks.pairs import PairsTask
from glassformer.train.tokenizers import BPETokenizer, CharTokenizer, tokenizer_from_spec

LINE = "to be or not to be, that is the question: ☃ naïve café\n"


def big_file(tmp_path, n_bytes):
    path = tmp_path / "big.txt"
    line = LINE.encode()
    with open(path, "wb") as f:
        f.write(line * (n_bytes // len(line) + 1))
    return path


def test_chunks_split_at_line_breaks_and_equal_the_whole_text(tmp_path):
    path = tmp_path / "t.txt"
    text = LINE * 50 + "no newline at the end ☃☃☃"
    path.write_text(text)
    pieces = list(stream.iter_text_chunks(path, chunk_bytes=64))  # 64 bytes: multi-byte characters cross reads
    assert "".join(pieces) == text and len(pieces) > 10
    assert all(p.endswith("\n") for p in pieces[:-1])
    assert stream.scan_chars(path, chunk_bytes=64) == set(text)
    path.write_text("x" * 1000)  # one line longer than 4 pieces is cut inside
    pieces = list(stream.iter_text_chunks(path, chunk_bytes=64))
    assert "".join(pieces) == "x" * 1000 and max(map(len, pieces)) <= 5 * 64


def test_prepare_and_train_within_a_memory_limit(tmp_path):
    """A 4 MB file, read in 16 KiB pieces: tokenizing it (about 35 bytes of working memory per byte of a piece:
    the piece as UTF-32, int64 ids) and drawing training batches from the memory map must each peak under
    1 MB of Python/NumPy allocations (tracemalloc), a quarter of the file."""
    path = big_file(tmp_path, 4 << 20)
    size = path.stat().st_size
    limit = 1 << 20
    tokenizer = CharTokenizer(sorted(set(LINE)))
    tracemalloc.start()
    try:
        out = stream.prepare(path, tokenizer, tmp_path / "prep", chunk_bytes=16 << 10)
        _, peak_prepare = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        task = TextTask(out, block_size=64)
        for _ in range(20):
            batch = task.batch(16)
        _, peak_train = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_prepare < limit < size and peak_train < limit, (peak_prepare, peak_train, size)
    tokens, saved = stream.open_prepared(out)
    assert isinstance(tokens.base.obj, mmap.mmap) and saved == tokenizer and len(tokens) == len(path.read_text())  # memory-mapped
    np.testing.assert_array_equal(tokens[:1000], tokenizer.encode_array(path.read_text()[:1000]))
    assert batch.inputs.shape == (16, 64) and torch.equal(batch.inputs[:, 1:], batch.targets[:, :-1])


def test_prepared_folder_with_bpe_trains_and_checks_its_tokenizer(tmp_path):
    path = big_file(tmp_path, 50_000)
    bpe = tokenizer_from_spec("bpe:300", [path])
    out = stream.prepare(path, bpe, tmp_path / "prep")
    task = TextTask(out, block_size=16)
    assert isinstance(task.tokenizer, BPETokenizer) and task.d_vocab == bpe.vocab_size
    assert task.tokenizer.decode(task.tokens[:200]) == path.read_text()[: len(task.tokenizer.decode(task.tokens[:200]))]
    with pytest.raises(InputError, match="prepared with another tokenizer"):
        TextTask(out, tokenizer=CharTokenizer("ab"))
    (out / "tokens.bin").write_bytes(b"\0\0")
    with pytest.raises(InputError, match="missing or truncated"):
        TextTask(out)
    with pytest.raises(InputError, match="not one written by `glassformer prepare`"):
        TextTask(tmp_path)


def test_every_bad_data_file_gets_its_error(tmp_path):
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"abc\x00\x01\x02" * 10)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9".encode("latin-1") + b"\n")
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    blank = tmp_path / "blank.tsv"
    blank.write_text("\n\n")
    no_label = tmp_path / "no_label.tsv"
    no_label.write_text("good text\tpos\nmissing its label\n")
    no_key = tmp_path / "no_key.jsonl"
    no_key.write_text('{"text": "fine", "label": "a"}\n{"text": "no label"}\n')
    one_class = tmp_path / "one.csv"
    one_class.write_text("text,label\nab,x\ncd,x\n")
    long = tmp_path / "long.tsv"
    long.write_text("short\tstuff\n" + "a" * 40 + "\tb\n" + "b" * 50 + "\tc\n")
    with pytest.raises(InputError, match="binary file.*NUL byte"):
        TextTask(binary)
    with pytest.raises(InputError, match="not UTF-8.*offset 3"):
        PairsTask(latin1)
    with pytest.raises(InputError, match="is empty"):
        LabelsTask(empty)
    with pytest.raises(InputError, match="holds no records"):
        LabelsTask(blank)
    with pytest.raises(InputError, match="line 2: the label column is missing"):
        LabelsTask(no_label)
    with pytest.raises(InputError, match="line 2: no 'label' key"):
        LabelsTask(no_key)
    with pytest.raises(InputError, match="line 2: the target column is missing"):
        PairsTask(_write(tmp_path / "p.tsv", "a\tb\nc\n"))
    with pytest.raises(InputError, match="needs 2 or more classes"):
        LabelsTask(one_class)
    with pytest.raises(InputError, match="2 of 3 texts are longer than 9 tokens .*record 3, has 50"):
        LabelsTask(long, block_size=10, too_long="refuse")
    cut = LabelsTask(long, block_size=10)  # the default: cut, and count
    assert cut.n_cut == 2 and cut.n_ctx() == 10
    with pytest.raises(ConfigError, match="too_long must be one of"):
        LabelsTask(long, too_long="drop")
    for spec in ("wordpiece", "bpe:x", str(tmp_path / "nothing-here")):
        with pytest.raises(ConfigError, match="tokenizer"):
            tokenizer_from_spec(spec, [long])


def _write(path, text):
    path.write_text(text)
    return path
