"""Tokenizers: text <-> token ids, saved as plain JSON (never pickle).

Two kinds, one interface (``encode``, ``decode``, ``vocab_size``, ``save``, ``to_dict``):

* :class:`CharTokenizer` -- one token per character, ids in the order the characters are given.
  Every generated task uses one, so a task's prompts are plain text (``"abcdefgh>hgfedcba"``).
  Encoding a character outside the vocabulary raises :class:`~glassformer.errors.InputError`
  naming the character.
* :class:`BPETokenizer` -- byte-level byte-pair encoding run by Hugging Face ``tokenizers``:
  trained on a text file (:meth:`BPETokenizer.train`) or read from GPT-2's ``vocab.json`` +
  ``merges.txt`` (:meth:`BPETokenizer.from_vocab_merges`). Byte-level means every string encodes
  (any character is a sequence of UTF-8 bytes, and all 256 bytes are in the vocabulary).

``tokenizer.save(dir)`` writes ``dir/tokenizer.json`` and ``load_tokenizer(dir)`` reads it back.
The file is ``{"format": "glassformer-tokenizer", "version": 1, "type": "char" | "bpe", ...}``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from glassformer.errors import CheckpointError, ConfigError, InputError

FORMAT = "glassformer-tokenizer"
VERSION = 1
FILENAME = "tokenizer.json"
# special tokens the file-based tasks add to a tokenizer (each encodes to one id, written as here)
PAD, BOS, EOS, CLS, MASK = "[PAD]", "[BOS]", "[EOS]", "[CLS]", "[MASK]"


def _describe(ch: str) -> str:
    """``'a' (U+0061)``: a character as it appears in error messages."""
    return f"{ch!r} (U+{ord(ch):04X})"


def _as_id_list(ids) -> list[int]:
    """Token ids given as a list, tuple, 1-d numpy array or 1-d tensor, as a list of ints."""
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    ids = list(ids)
    if any(isinstance(i, list) for i in ids):
        raise InputError("decode takes one sequence of token ids (1-d), got a nested (2-d) sequence")
    return [int(i) for i in ids]


def _write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class CharTokenizer:
    """One token per character: ``encode("abc") == [stoi['a'], stoi['b'], stoi['c']]``.

    ``chars`` gives the vocabulary in id order: ``chars[i]`` is token ``i``. ``specials`` (e.g.
    ``("[MASK]", "[PAD]")``) are whole-word tokens after the characters (ids ``len(chars) + j``): the
    text ``"[MASK]"`` encodes to the one id, and decodes back to it.
    """

    type = "char"

    def __init__(self, chars: Iterable[str], specials: Iterable[str] = ()):
        chars = tuple(chars)
        self.specials = tuple(specials)
        for sp in self.specials:
            if not isinstance(sp, str) or len(sp) < 2 or sp in chars:
                raise ConfigError(f"CharTokenizer: a special token must be a string of 2+ characters not in the vocabulary, got {sp!r}")
        for ch in chars:
            if not isinstance(ch, str) or len(ch) != 1:
                raise ConfigError(f"CharTokenizer: every token must be a single character, got {ch!r}")
        if len(set(chars)) != len(chars):
            dup = sorted({c for c in chars if chars.count(c) > 1})
            raise ConfigError(f"CharTokenizer: duplicate characters in the vocabulary: {dup}")
        if not chars:
            raise ConfigError("CharTokenizer: the vocabulary is empty")
        if len(set(self.specials)) != len(self.specials):
            raise ConfigError(f"CharTokenizer: duplicate special tokens: {list(self.specials)}")
        self.chars = chars  # id -> character
        self.stoi = {ch: i for i, ch in enumerate(chars)}  # character -> id
        self.special_ids = {sp: len(chars) + j for j, sp in enumerate(self.specials)}  # special token -> id
        self._special_re = re.compile("|".join(re.escape(sp) for sp in sorted(self.specials, key=len, reverse=True))) if self.specials else None

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        """The tokenizer of every distinct character in ``text``, in code-point order."""
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + len(self.specials)

    def __len__(self) -> int:
        return self.vocab_size

    def with_specials(self, names: Iterable[str]) -> "CharTokenizer":
        """This tokenizer with the special tokens ``names`` added after its own (existing ones kept)."""
        return CharTokenizer(self.chars, self.specials + tuple(n for n in names if n not in self.specials))

    def token_to_id(self, token: str) -> int | None:
        """The id of one character or special token, or None."""
        return self.special_ids.get(token, self.stoi.get(token))

    def id_to_token(self, i: int) -> str:
        return self.decode([i])

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, one per character (a special token's text is one id). An unknown
        character raises InputError."""
        if self._special_re is not None and self._special_re.search(text):
            ids, start = [], 0
            for m in self._special_re.finditer(text):
                ids += self._encode_chars(text[start : m.start()], start)
                ids.append(self.special_ids[m.group()])
                start = m.end()
            return ids + self._encode_chars(text[start:], start)
        return self._encode_chars(text)

    def _encode_chars(self, text: str, offset: int = 0) -> list[int]:
        try:
            return [self.stoi[ch] for ch in text]
        except KeyError as e:
            ch = e.args[0]
            raise InputError(
                f"character {_describe(ch)} at position {offset + text.index(ch)} is not in the tokenizer's vocabulary "
                f"of {len(self.chars)} characters"
            ) from None

    def encode_array(self, text: str) -> np.ndarray:
        """``np.array(encode(text))`` for long texts (vectorised: ~100x faster on a whole file). int64 ids."""
        if self._special_re is not None and self._special_re.search(text):
            return np.asarray(self.encode(text), dtype=np.int64)
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)  # [n_chars] code points
        vocab_codes = np.array([ord(c) for c in self.chars], dtype=np.uint32)  # [vocab] code point of each id
        order = np.argsort(vocab_codes)
        sorted_codes = vocab_codes[order]
        pos = np.searchsorted(sorted_codes, codes).clip(max=len(sorted_codes) - 1)
        known = sorted_codes[pos] == codes
        if not known.all():
            i = int(np.argmin(known))
            self.encode(text[i])  # raises the InputError that names the character
        return order[pos].astype(np.int64)

    def decode(self, ids) -> str:
        """The text of token ids (a list, 1-d array or 1-d tensor)."""
        ids = _as_id_list(ids)
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise InputError(f"token id {bad[0]} is out of range for a vocabulary of {self.vocab_size} characters")
        n = len(self.chars)
        return "".join(self.chars[i] if i < n else self.specials[i - n] for i in ids)

    def to_dict(self) -> dict:
        d = {"format": FORMAT, "version": VERSION, "type": self.type, "chars": list(self.chars)}
        if self.specials:
            d["specials"] = list(self.specials)
        return d

    def save(self, directory: str | Path) -> Path:
        """Write ``directory/tokenizer.json`` (creating the folder); returns the file's path."""
        return _save(self, directory)

    def fingerprint(self) -> str:
        """SHA-256 of the tokenizer's JSON: equal tokenizers have equal fingerprints."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def __eq__(self, other) -> bool:
        return isinstance(other, CharTokenizer) and self.chars == other.chars and self.specials == other.specials

    def __hash__(self) -> int:
        return hash((self.chars, self.specials))

    def __repr__(self) -> str:
        shown = "".join(self.chars) if self.vocab_size <= 40 else "".join(self.chars[:40]) + "..."
        specials = f", specials={list(self.specials)}" if self.specials else ""
        return f"CharTokenizer(vocab_size={self.vocab_size}, chars={shown!r}{specials})"


class BPETokenizer:
    """Byte-level byte-pair encoding (GPT-2's scheme), run by Hugging Face ``tokenizers``.

    Build one with :meth:`train` (on your text files) or :meth:`from_vocab_merges` (GPT-2's files).
    """

    type = "bpe"

    def __init__(self, hf_tokenizer):
        self.hf = hf_tokenizer  # a tokenizers.Tokenizer

    @classmethod
    def train(cls, files: str | Path | Sequence[str | Path], vocab_size: int = 512, min_frequency: int = 2) -> "BPETokenizer":
        """Learn ``vocab_size - 256`` merges on the text files (256 byte tokens + merges = vocab_size)."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        if isinstance(files, (str, Path)):
            files = [files]
        files = [str(f) for f in files]
        for f in files:
            if not Path(f).is_file():
                raise InputError(f"BPETokenizer.train: no such text file: {f}")
        n_bytes = len(pre_tokenizers.ByteLevel.alphabet())
        if not isinstance(vocab_size, int) or vocab_size < n_bytes:
            raise ConfigError(f"BPETokenizer.train: vocab_size must be an int >= {n_bytes} (one token per byte), got {vocab_size!r}")
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train(files, trainer)
        return cls(tok)

    @classmethod
    def from_vocab_merges(cls, vocab: str | Path, merges: str | Path) -> "BPETokenizer":
        """GPT-2's tokenizer from its ``vocab.json`` and ``merges.txt`` (a folder holding both also works
        via :meth:`from_gpt2_files`)."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        for f in (vocab, merges):
            if not Path(f).is_file():
                raise InputError(f"BPETokenizer: no such file: {f}")
        try:
            model = models.BPE.from_file(str(vocab), str(merges))
        except Exception as e:  # tokenizers raises plain Exception on malformed files
            raise InputError(f"BPETokenizer: could not read {vocab} / {merges} as BPE vocab and merges: {e}") from None
        tok = Tokenizer(model)
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        return cls(tok)

    @classmethod
    def from_hf_folder(cls, directory: str | Path) -> "BPETokenizer":
        """The tokenizer of a saved Hugging Face model folder: its ``tokenizer.json`` (any fast tokenizer:
        byte-level BPE, SentencePiece-style BPE, WordPiece), else GPT-2's ``vocab.json`` + ``merges.txt``.
        Encoding adds the special tokens the tokenizer's post-processor adds (BERT's [CLS] ... [SEP],
        Llama's <s>), as ``tokenizer(text)`` does in ``transformers``."""
        from tokenizers import Tokenizer as HFTokenizer

        directory = Path(directory)
        file = directory / "tokenizer.json"
        if file.is_file():
            try:
                return cls(HFTokenizer.from_file(str(file)))
            except Exception as e:  # the tokenizers library raises plain Exception on a malformed file
                raise InputError(f"{file} could not be read as a Hugging Face tokenizer: {e}") from None
        if (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
            return cls.from_gpt2_files(directory)
        raise InputError(f"{directory} has no tokenizer.json (nor GPT-2's vocab.json + merges.txt)")

    @classmethod
    def from_gpt2_files(cls, directory: str | Path) -> "BPETokenizer":
        """GPT-2's BPE from a local folder holding ``vocab.json`` and ``merges.txt`` (nothing is downloaded)."""
        directory = Path(directory)
        vocab, merges = directory / "vocab.json", directory / "merges.txt"
        if not (vocab.is_file() and merges.is_file()):
            raise InputError(f"{directory} does not hold GPT-2's vocab.json and merges.txt")
        return cls.from_vocab_merges(vocab, merges)

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``. Byte-level: every string encodes, so there are no unknown characters."""
        if not isinstance(text, str):
            raise InputError(f"encode takes a str, got {type(text).__name__}")
        return self.hf.encode(text).ids

    def encode_array(self, text: str) -> np.ndarray:
        return np.asarray(self.encode(text), dtype=np.int64)

    def with_specials(self, names: Iterable[str]) -> "BPETokenizer":
        """A copy with the special tokens ``names`` added (those it lacks get the next free ids): their
        text, e.g. ``"[MASK]"``, then encodes to one id."""
        from tokenizers import Tokenizer as HFTokenizer

        copy = HFTokenizer.from_str(self.hf.to_str())
        copy.add_special_tokens([n for n in names if copy.token_to_id(n) is None])
        return BPETokenizer(copy)

    def padded_to(self, vocab_size: int) -> "BPETokenizer":
        """A copy whose vocabulary is exactly ``vocab_size``: ids the tokenizer lacks get placeholder tokens
        ``<|unused_ID|>`` (models often pad their embedding past the tokenizer, e.g. Pythia's 50,304 rows for
        50,277 tokens, and every id the model can predict must decode)."""
        if vocab_size <= self.vocab_size:
            return self
        return self.with_specials([f"<|unused_{i}|>" for i in range(self.vocab_size, vocab_size)])

    def token_to_id(self, token: str) -> int | None:
        return self.hf.token_to_id(token)

    def id_to_token(self, i: int) -> str:
        """The vocabulary entry of one id (byte-level tokens show a space as 'Ġ')."""
        return self.hf.id_to_token(int(i))

    def decode(self, ids) -> str:
        """The text of token ids; special tokens are kept (``"[MASK]"``), so decoding round-trips."""
        ids = _as_id_list(ids)
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise InputError(f"token id {bad[0]} is out of range for a vocabulary of {self.vocab_size} tokens")
        return self.hf.decode(ids, skip_special_tokens=False)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "type": self.type, "hf_tokenizer": json.loads(self.hf.to_str())}

    def save(self, directory: str | Path) -> Path:
        """Write ``directory/tokenizer.json`` (creating the folder); returns the file's path."""
        return _save(self, directory)

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def __eq__(self, other) -> bool:
        return isinstance(other, BPETokenizer) and self.fingerprint() == other.fingerprint()

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size})"


Tokenizer = CharTokenizer | BPETokenizer


def _save(tokenizer: Tokenizer, directory: str | Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / FILENAME
    _write_json_atomic(path, tokenizer.to_dict())
    return path


def tokenizer_from_dict(d: dict) -> Tokenizer:
    """The tokenizer a ``to_dict()`` produced. A foreign or damaged dict raises CheckpointError."""
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise CheckpointError(f"not a glassformer tokenizer (expected 'format': {FORMAT!r})")
    if d.get("version", 0) > VERSION:
        raise CheckpointError(f"tokenizer format version {d.get('version')} is newer than this glassformer reads ({VERSION})")
    kind = d.get("type")
    if kind == CharTokenizer.type:
        chars = d.get("chars")
        if not isinstance(chars, list):
            raise CheckpointError("char tokenizer JSON has no 'chars' list")
        return CharTokenizer(chars, d.get("specials", ()))
    if kind in (BPETokenizer.type, "hf"):
        from tokenizers import Tokenizer as HFTokenizer

        try:
            return BPETokenizer(HFTokenizer.from_str(json.dumps(d["hf_tokenizer"])))
        except Exception as e:  # KeyError or the tokenizers library's parse error
            raise CheckpointError(f"BPE tokenizer JSON could not be parsed: {e}") from None
    raise CheckpointError(f"unknown tokenizer type {kind!r}; expected 'char' or 'bpe'")


BPE_DEFAULT_VOCAB = 512


def tokenizer_from_spec(spec: str, files: Sequence[str | Path] = ()) -> Tokenizer:
    """The tokenizer ``--tokenizer SPEC`` names, trained on ``files`` where it needs training:

    * ``char``            one token per character of the files (in code-point order)
    * ``bpe`` / ``bpe:N``  byte-level BPE trained on the files, vocabulary N (default 512)
    * ``PATH``            a saved one: a glassformer ``tokenizer.json`` (or its folder), a Hugging Face
      ``tokenizer.json`` (or a model folder holding it, or GPT-2's vocab.json + merges.txt)

    Anything else raises ConfigError naming the choices."""
    spec = str(spec).strip()
    if spec == "char":
        if not files:
            raise ConfigError("--tokenizer char needs a text file to collect the characters from")
        from glassformer.train.stream import scan_chars

        chars: set[str] = set()
        for f in files:
            chars |= scan_chars(f)
        return CharTokenizer(sorted(chars))
    if spec == "bpe" or spec.startswith("bpe:"):
        size = spec.partition(":")[2] or str(BPE_DEFAULT_VOCAB)
        if not size.isdigit():
            raise ConfigError(f"--tokenizer {spec!r}: the BPE vocabulary size must be an integer, as in bpe:1024")
        if not files:
            raise ConfigError(f"--tokenizer {spec} needs a text file to train the BPE on")
        return BPETokenizer.train(list(files), vocab_size=int(size))
    path = Path(spec).expanduser()
    if path.is_dir() and not (path / FILENAME).is_file():
        return BPETokenizer.from_hf_folder(path)  # GPT-2's vocab.json + merges.txt, or a clear error
    file = path / FILENAME if path.is_dir() else path
    if file.is_file():
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"--tokenizer {spec}: {file} is not a tokenizer JSON file ({e})") from None
        if isinstance(data, dict) and data.get("format") == FORMAT:
            return load_tokenizer(file)
        if isinstance(data, dict) and "model" in data:  # a Hugging Face tokenizer.json
            from tokenizers import Tokenizer as HFTokenizer

            try:
                return BPETokenizer(HFTokenizer.from_str(json.dumps(data)))
            except Exception as e:  # the tokenizers library raises plain Exception
                raise ConfigError(f"--tokenizer {spec}: {file} could not be read as a Hugging Face tokenizer: {e}") from None
        raise ConfigError(f"--tokenizer {spec}: {file} is neither a glassformer nor a Hugging Face tokenizer.json")
    return _unknown_tokenizer(spec)


def _unknown_tokenizer(spec: str):
    raise ConfigError(
        f"unknown tokenizer {spec!r}: use char, bpe, bpe:VOCAB_SIZE (e.g. bpe:1024), or the path of a saved "
        "tokenizer (a tokenizer.json or a folder holding one)"
    )


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Read a tokenizer saved by ``tokenizer.save(dir)``: ``path`` is that folder or its ``tokenizer.json``.

    A missing, truncated or foreign file raises :class:`~glassformer.errors.CheckpointError`.
    """
    path = Path(path)
    file = path / FILENAME if path.is_dir() else path
    if not file.is_file():
        raise CheckpointError(f"no tokenizer at {path} (expected {FILENAME})")
    try:
        d = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{file} is not valid JSON (truncated or foreign?): {e}") from None
    try:
        return tokenizer_from_dict(d)
    except CheckpointError as e:
        raise CheckpointError(f"{file}: {e}") from None
    except ConfigError as e:
        raise CheckpointError(f"{file}: {e}") from None


__all__ = ["BPETokenizer", "CharTokenizer", "Tokenizer", "load_tokenizer", "tokenizer_from_dict", "tokenizer_from_spec"]
