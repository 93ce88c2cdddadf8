"""Reading a user's data file of records: one example per line, as TSV, CSV or JSON Lines.

    TSV    source<TAB>target        text<TAB>label                 (the last column is the label)
    CSV    the same two columns; a header row naming them (text,label / source,target) is skipped
    JSONL  {"source": ..., "target": ...}   {"text": ..., "label": ...}   (also src/tgt, input/output)

:func:`read_records` returns ``[(field_1, field_2), ...]`` with errors that name the file, the line and what
is missing (an empty or binary file, a line without its second column, a JSON line without its key).
:class:`Encoded` then turns each field into token ids, cutting (and counting) or refusing fields longer than
the model's context, per ``too_long``. :func:`split_rows` holds out a fixed, seeded share for validation.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import torch

from glassformer.errors import ConfigError, InputError
from glassformer.train.stream import iter_text_chunks

# the key names a JSON line may use for each of the two fields, by kind of file
KEYS = {
    "pairs": (("source", "src", "input"), ("target", "tgt", "output")),
    "labels": (("text", "sentence", "input"), ("label", "class", "target")),
}
TOO_LONG = ("cut", "refuse")
DEFAULT_MAX_TOKENS = 256  # without block_size, records are cut (or refused) beyond this many tokens
VAL_FRACTION = 0.1


def read_text(path: str | Path) -> str:
    """The whole file (checked: exists, not empty, UTF-8 text with no NUL bytes)."""
    return "".join(iter_text_chunks(path))


def read_records(path: str | Path, kind: str) -> list[tuple[str, str]]:
    """``[(source, target), ...]`` (kind "pairs") or ``[(text, label), ...]`` (kind "labels") from a
    .tsv / .csv / .jsonl file (any other suffix is read as TSV)."""
    path = Path(path)
    text = read_text(path)
    first, second = KEYS[kind]
    what = "source<TAB>target" if kind == "pairs" else "text<TAB>label"
    suffix = path.suffix.lower()
    rows: list[tuple[str, str]] = []
    if suffix in (".jsonl", ".json", ".ndjson"):
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise InputError(f"{path}, line {n}: not a JSON object ({e})") from None
            if not isinstance(obj, dict):
                raise InputError(f"{path}, line {n}: expected a JSON object, got {type(obj).__name__}")
            a = next((obj[k] for k in first if k in obj), None)
            b = next((obj[k] for k in second if k in obj), None)
            if a is None or b is None:
                missing = first[0] if a is None else second[0]
                raise InputError(f"{path}, line {n}: no {missing!r} key (the {kind} file needs {first[0]!r} and {second[0]!r})")
            rows.append((str(a), str(b)))
    else:
        lines = list(csv.reader(io.StringIO(text))) if suffix == ".csv" else [l.split("\t") for l in text.splitlines()]
        sep = "a comma" if suffix == ".csv" else "a tab"
        for n, cols in enumerate(lines, 1):
            if not cols or not "".join(cols).strip():
                continue
            if n == 1 and suffix == ".csv" and cols[0].strip().lower() in first and cols[-1].strip().lower() in second:
                continue  # a header row
            if len(cols) < 2:
                raise InputError(
                    f"{path}, line {n}: the {'label' if kind == 'labels' else 'target'} column is missing "
                    f"(expected {what}, the two separated by {sep}); got {cols[0][:60]!r}"
                )
            rows.append((("," if suffix == ".csv" else "\t").join(cols[:-1]), cols[-1]))
    if not rows:
        raise InputError(f"{path} holds no records (expected lines of {what})")
    return rows


def split_rows(n: int, split: str, seed: int = 0, val_fraction: float = VAL_FRACTION) -> torch.Tensor:
    """The row indices of ``split`` ("train", or "val" = "test"): a fixed seeded shuffle, the last
    ``val_fraction`` (at least one row, and at least one left to train on) held out."""
    if n < 2:
        raise InputError(f"the file has {n} record: at least 2 are needed (one to train on, one held out)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = min(max(1, round(val_fraction * n)), n - 1)
    return order[: n - n_val] if split == "train" else order[n - n_val :]


def encode_field(tokenizer, texts: list[str], limit: int | None, too_long: str, path, what: str) -> tuple[list[list[int]], int]:
    """Token ids of each text, and how many were cut to ``limit`` tokens (``too_long="cut"``); with
    ``"refuse"`` a text over the limit raises InputError saying how many are too long."""
    if too_long not in TOO_LONG:
        raise ConfigError(f"too_long must be one of {list(TOO_LONG)}, got {too_long!r}")
    ids = [list(tokenizer.encode(t)) for t in texts]
    if limit is None:
        return ids, 0
    long = [i for i, row in enumerate(ids) if len(row) > limit]
    if long and too_long == "refuse":
        worst = max(long, key=lambda i: len(ids[i]))
        raise InputError(
            f"{path}: {len(long)} of {len(ids)} {what}s are longer than {limit} tokens (the longest, record {worst + 1}, "
            f"has {len(ids[worst])}); raise --block-size, shorten them, or pass --too-long cut"
        )
    return [row[:limit] for row in ids], len(long)


def pad(rows: list[list[int]], pad_id: int, length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``[batch, length]`` ids and their ``[batch, length]`` attention mask (1 = real token)."""
    length = length or max(len(r) for r in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


def build_tokenizer(spec, texts: list[str], path, specials: list[str]):
    """The tokenizer named by ``spec`` (None / "char": the characters of ``texts``; "bpe[:N]": trained on
    the file; a path: a saved one; or a tokenizer object), with ``specials`` added."""
    from glassformer.train.tokenizers import CharTokenizer, tokenizer_from_spec

    if spec is None or spec == "char":
        chars = sorted(set("".join(texts)))
        if not chars:
            raise InputError(f"{path}: every record is empty")
        tokenizer = CharTokenizer(chars)
    elif isinstance(spec, str):
        tokenizer = tokenizer_from_spec(spec, [path])
    else:
        tokenizer = spec
    return tokenizer.with_specials(specials)


__all__ = ["DEFAULT_MAX_TOKENS", "KEYS", "TOO_LONG", "build_tokenizer", "encode_field", "pad", "read_records", "read_text", "split_rows"]
