"""Reading a user's data file of records: one example per line, as TSV, CSV or JSON Lines.

    TSV    source<TAB>target        text<TAB>label                 (the last column is the label)
    CSV    the same two columns; a header row naming them (text,label / source,target) is skipped
    JSONL  {"source": ..., "target": ...}   {"text": ..., "label": ...}   (also src/tgt, input/output)

:func:`read_records` returns ``[(field_1, field_2), ...]`` with errors that name the file, the line and what
is missing (an empty or binary file, a line without its second column, a JSON line without its key).
:class:`Encoded` then turns each field into token ids, cutting (and counting) or refusing fields longer than
the model's context, per ``too_long``. :func:`split_rows` holds out a fixed, seeded share for validation.
:class:`RecordTask` is what a task over such a file shares (``PairsTask``, ``LabelsTask``): its options, its
split, its context length, drawing batches of records.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import torch

from glassformer.errors import ConfigError, InputError
from glassformer.train.batch import Batch
from glassformer.train.stream import iter_text_chunks
from glassformer.train.tasks.base import check_choice, check_int

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


class RecordTask:
    """A task whose examples are the records of a user's file, ``split`` "train" or "val" (a fixed 10%).

    The constructor reads the file (:func:`read_records` with the subclass's ``kind``) and hands the records and
    the split's row indices to the subclass's ``_encode(records, rows)``, which tokenizes them and returns the
    context length its examples need; the subclass's ``rows(index)`` lays examples out as a :class:`Batch`.
    ``block_size`` caps the tokens of a field (``too_long``: cut them, counted in ``n_cut``, or refuse)."""

    name = "records"
    kind = "pairs"  # which columns read_records looks for: "pairs" or "labels"
    archs: tuple[str, ...] = ()

    def __init__(self, path: str | Path, split: str = "train", tokenizer=None, block_size: int | None = None,
                 too_long: str = "cut", seed: int = 0):
        self.path = Path(path)
        self.split = check_choice(self.name, "split", split, ("train", "val", "test"))
        self.seed = check_int(self.name, "seed", seed, 0)
        self.block_size = None if block_size is None else check_int(self.name, "block_size", block_size, 2)
        self.too_long = too_long
        self.generator = torch.Generator().manual_seed(seed)
        records = read_records(self.path, self.kind)
        self.n_records = len(records)
        rows = split_rows(len(records), split, seed=0).tolist()
        self.n_examples = len(rows)
        self._n_ctx = self._encode(tokenizer, records, rows)

    def _encode(self, tokenizer, records: list[tuple[str, str]], rows: list[int]) -> int:
        """Build the tokenizer (from ``tokenizer``: a spec or an object) and this split's examples (records
        ``rows``); return the context length they need. Subclasses define it."""
        raise NotImplementedError

    def rows(self, index: list[int]) -> Batch:
        """Examples ``index`` of this split as one batch. Subclasses define it."""
        raise NotImplementedError

    @property
    def options(self) -> dict:
        return {"path": str(self.path), "split": self.split, "block_size": self.block_size, "too_long": self.too_long, "seed": self.seed}

    @property
    def d_vocab(self) -> int:
        return self.tokenizer.vocab_size

    def __len__(self) -> int:
        return self.n_examples

    def n_ctx(self, arch: str | None = None) -> int:
        check_choice(self.name, "arch", arch or self.archs[0], self.archs)
        return self._n_ctx

    def with_split(self, split: str) -> "RecordTask":
        """The same file and tokenizer, another split."""
        return type(self)(self.path, split, tokenizer=self.tokenizer, block_size=self.block_size, too_long=self.too_long, seed=self.seed)

    def batch(self, batch_size: int, arch: str | None = None, generator: torch.Generator | None = None) -> Batch:
        """``batch_size`` examples drawn at random (with replacement) from the split."""
        arch = arch or self.archs[0]
        if arch not in self.archs:
            raise ConfigError(f"task {self.name!r} supports arch in {list(self.archs)}, got {arch!r}")
        g = self.generator if generator is None else generator
        return self.rows(torch.randint(0, len(self), (batch_size,), generator=g).tolist())


__all__ = ["DEFAULT_MAX_TOKENS", "RecordTask", "KEYS", "TOO_LONG", "build_tokenizer", "encode_field", "pad", "read_records", "read_text", "split_rows"]
