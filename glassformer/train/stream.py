"""Text files too large for memory: read in chunks, tokenized once into a memory-mapped token array.

nanoGPT's ``prepare.py`` writes a corpus as one flat binary file of token ids (``train.bin``) and its
training loop memory-maps it, so a batch reads only the windows it draws. glassformer does the same:

    glassformer prepare corpus.txt --tokenizer bpe:4096 --out data/corpus     # once
    glassformer train --text data/corpus ...                                  # reads data/corpus/tokens.bin

A prepared folder holds ``tokens.bin`` (the ids, ``uint16`` when the vocabulary fits, else ``uint32``),
``tokenizer.json`` and ``meta.json`` (``{"format": "glassformer-tokens", "dtype", "n_tokens", "source"}``).

Reading never holds the whole file: :func:`iter_text_chunks` yields pieces of about ``chunk_bytes``
that end at a line break (so a character or a line is never split between two pieces), each checked to
be UTF-8 text (a NUL byte or an invalid byte sequence means a binary file, and raises InputError naming
the byte offset). Peak memory is about 35 x ``chunk_bytes`` (a piece as UTF-32 and its int64 ids), whatever
the file's size (a test holds a 4 MB file's to under 1 MB with ``tracemalloc``). With a character tokenizer the ids equal encoding the whole text at once;
a BPE encodes each piece on its own, which can only differ where a merge would cross a line break.
"""

from __future__ import annotations

import codecs
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from glassformer.errors import InputError

CHUNK_BYTES = 1 << 22  # 4 MiB per piece
FORMAT = "glassformer-tokens"
TOKENS, META = "tokens.bin", "meta.json"


def check_text_file(path: str | Path) -> Path:
    """``path`` if it is an existing, non-empty file; else InputError naming the problem."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such text file: {path}")
    if not path.is_file():
        raise InputError(f"{path} is not a file")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty")
    return path


def iter_text_chunks(path: str | Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[str]:
    """The file's text in pieces of about ``chunk_bytes`` bytes, each ending at a line break (a line longer
    than 4 pieces is cut inside). Raises InputError for a binary (NUL bytes) or non-UTF-8 file."""
    path = check_text_file(path)
    decoder = codecs.getincrementaldecoder("utf-8")()
    carry, offset = "", 0
    with open(path, "rb") as f:
        while True:
            raw = f.read(chunk_bytes)
            final = not raw
            try:
                text = carry + decoder.decode(raw, final=final)
            except UnicodeDecodeError as e:
                raise InputError(f"{path} is not UTF-8 text (a binary file?): invalid byte at offset {offset + e.start}") from None
            if "\x00" in text:
                raise InputError(f"{path} is a binary file, not text: it holds a NUL byte near offset {offset}")
            offset += len(raw)
            if final:
                if text:
                    yield text
                return
            cut = text.rfind("\n") + 1
            if cut == 0 and len(text) < 4 * chunk_bytes:
                carry = text  # no line break yet: read on
                continue
            cut = cut or len(text)
            yield text[:cut]
            carry = text[cut:]


def scan_chars(path: str | Path, chunk_bytes: int = CHUNK_BYTES) -> set[str]:
    """Every distinct character of the file (for a character tokenizer), read piece by piece."""
    chars: set[str] = set()
    for text in iter_text_chunks(path, chunk_bytes):
        chars.update(text)
    return chars


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


def write_tokens(path: str | Path, tokenizer, out_file: str | Path, chunk_bytes: int = CHUNK_BYTES, progress: bool = False) -> int:
    """Tokenize ``path`` piece by piece, appending the ids to ``out_file`` (written atomically). Returns
    the number of tokens."""
    out_file = Path(out_file)
    dtype = token_dtype(tokenizer.vocab_size)
    tmp = out_file.with_name(f".{out_file.name}.tmp{os.getpid()}")
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=Path(path).stat().st_size, unit="B", unit_scale=True, desc="tokenize")
    n = 0
    try:
        with open(tmp, "wb") as f:
            for text in iter_text_chunks(path, chunk_bytes):
                ids = tokenizer.encode_array(text).astype(dtype)  # [piece_tokens]
                ids.tofile(f)
                n += len(ids)
                if bar is not None:
                    bar.update(len(text.encode("utf-8")))
        os.replace(tmp, out_file)  # a crash never leaves a half-written token file
    finally:
        if bar is not None:
            bar.close()
        if tmp.exists():
            tmp.unlink()
    if n == 0:
        raise InputError(f"{path} gives no tokens")
    return n


def prepare(path: str | Path, tokenizer, out_dir: str | Path, chunk_bytes: int = CHUNK_BYTES, progress: bool = False) -> Path:
    """Write the prepared folder ``out_dir`` (tokens.bin, tokenizer.json, meta.json) for the text file ``path``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = write_tokens(path, tokenizer, out_dir / TOKENS, chunk_bytes, progress=progress)
    tokenizer.save(out_dir)
    meta = {"format": FORMAT, "dtype": token_dtype(tokenizer.vocab_size).name, "n_tokens": n, "source": str(Path(path).resolve())}
    (out_dir / META).write_text(json.dumps(meta, indent=2) + "\n")
    return out_dir


def is_prepared(path: str | Path) -> bool:
    return (Path(path) / META).is_file()


def open_prepared(path: str | Path):
    """``(tokens, tokenizer)`` of a prepared folder: the ids as a read-only memory map (nothing is read
    until a window is indexed)."""
    from glassformer.train.tokenizers import load_tokenizer

    path = Path(path)
    try:
        meta = json.loads((path / META).read_text())
        dtype, n = np.dtype(meta["dtype"]), int(meta["n_tokens"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path / META} is not a prepared-data description: {e}") from None
    if meta.get("format") != FORMAT:
        raise InputError(f"{path / META} is not a glassformer prepared-data folder (format != {FORMAT!r})")
    file = path / TOKENS
    if not file.is_file() or file.stat().st_size != n * dtype.itemsize:
        raise InputError(f"{file} is missing or truncated: expected {n} tokens of {dtype.name}")
    return map_tokens(file, dtype), load_tokenizer(path)


def map_tokens(file: str | Path, dtype) -> np.ndarray:
    """The token file as a read-only array backed by a memory map: nothing is read until a window is indexed.

    Training reads windows at random places, so the map is marked ``MADV_RANDOM``: without it the kernel reads
    ahead around every page a window touches (8 MiB per fault on a disk whose read_ahead_kb is 8192), which
    reads far more of the file than the batches use and keeps it resident in the process (measured:
    bench/results/core_data.md)."""
    import mmap

    with open(file, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return np.zeros(0, dtype=dtype)
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # stays valid after the file is closed
    if hasattr(mapped, "madvise") and hasattr(mmap, "MADV_RANDOM"):  # Linux, macOS; elsewhere the default read-ahead
        mapped.madvise(mmap.MADV_RANDOM)
    return np.frombuffer(mapped, dtype=dtype)  # [n_tokens], read-only


__all__ = ["CHUNK_BYTES", "check_text_file", "is_prepared", "iter_text_chunks", "map_tokens", "open_prepared", "prepare", "scan_chars", "write_tokens"]
