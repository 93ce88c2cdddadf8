"""The suite: compiled models whose circuits are known, each saved with its ground truth.

    glassformer circuits build --out DIR            (or ``build_suite(DIR)``)

    DIR/index.json                  {"format": "glassformer-circuits-suite", "models": [entry, ...],
                                     "rejected": [trained models whose IIA fell below 0.99]}
    DIR/models/<id>/                a checkpoint folder (``CompiledModel.load`` reads it)
    DIR/models/<id>/truth.json      the ground truth (``truth.GroundTruth``) and its causal check

Sources (``default_entries``):

* every library program at max_len 4, 6, 8, over its own vocabulary and over a second one (more
  letters, or fewer digits); on the second, a random program runs beside it as a distractor;
* random well-typed programs (``programs.py``) over vocabularies of 3-5 letters at max_len 4-6, half of
  them with a distractor;
* decoders: every library program whose selectors only look back, compiled with ``causal=True``, at
  max_len 4, 6, 8, and at 6 beside another causal program as a distractor;
* Tracr's own library programs (``tracr_ports.py``: ported with Tracr's API, compiled through
  ``compile_rasp_to_model``; the causal ones into decoders) at max_len 4, 6, 8;
* compiled-then-trained models (``trained.py``): dense, retrained, kept only at IIA >= 0.99.

``quick=True`` is a 24-model subset (used by tests and CI): two decoders and two Tracr ports among them.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from glassformer import rasp
from glassformer.circuits.errors import CircuitsError
from glassformer.circuits.merge import merge
from glassformer.circuits.programs import random_program
from glassformer.circuits.tracr_ports import TRACR_PROGRAMS, compile_tracr_port
from glassformer.circuits.truth import GroundTruth, ground_truth
from glassformer.rasp import library
from glassformer.rasp.compiler.compiled import CompiledModel

FORMAT = "glassformer-circuits-suite"
LENGTHS = (4, 6, 8)
SECOND_VOCAB = {"long_addition": "01234+", "nary_sequence_map": (0, 1, 2, 3, 4, 5), "dyck1": "()x",
                "dyck2": "(){}x", "shuffle_dyck2": "(){}x", "frac_prevs": "xyz", "sort_unique": "abcdefghij"}
RANDOM_VOCABS = ("abc", "abcd", "abcde")
RANDOM_LENGTHS = (4, 5, 6)
QUICK_LIBRARY = ("length", "reverse", "histogram", "double_histogram", "sort", "most_frequent", "running_max",
                 "frac_prevs", "shift_by", "detect_pattern", "count_token", "dyck1")


@dataclass
class Entry:
    """One model of the suite: how to rebuild it, and what it is."""

    id: str
    source: str  # "library" | "random" | "tracr" | "trained"
    program: str  # library name, or random_<seed>
    vocab: list
    max_len: int
    distractor_seed: int | None = None  # a random program computed beside it, off the circuit
    seed: int = 0  # random program seed / training seed
    causal: bool = False  # compiled into a decoder (rasp.compile(..., causal=True))
    distractor_program: str | None = None  # a library program computed beside it (decoders: it must be causal too)

    def build(self) -> CompiledModel:
        """Compile (and merge) this entry's model."""
        vocab = self.vocab
        if self.source == "library":
            compiled = rasp.compile(library.get(self.program), vocab=vocab, max_len=self.max_len, causal=self.causal)
        elif self.source == "tracr":
            compiled = compile_tracr_port(self.program, self.max_len, vocab, self.causal)
        elif self.source in ("random", "trained"):
            base = self.program.split("@")[0]
            if base.startswith("random_"):
                compiled = random_program(self.seed, vocab, self.max_len)[1]
            else:
                compiled = rasp.compile(library.get(base), vocab=vocab, max_len=self.max_len)
        else:
            raise CircuitsError(f"suite entry {self.id}: unknown source {self.source!r}")
        compiled.program_name = self.program
        if self.distractor_seed is not None:
            compiled = merge(compiled, random_program(self.distractor_seed, vocab, self.max_len)[1])
        if self.distractor_program is not None:
            other = rasp.compile(library.get(self.distractor_program), vocab=vocab, max_len=self.max_len,
                                 causal=self.causal)
            compiled = merge(compiled, other)
        return compiled


def _vocab_id(vocab) -> str:
    return "".join(str(v) for v in vocab)


def default_entries(quick: bool = False, trained: int | None = None) -> list[Entry]:
    """The default suite (see the module docstring); ``quick``: its 22-model subset."""
    entries = []
    names = QUICK_LIBRARY if quick else library.names()
    lengths = (4,) if quick else LENGTHS
    k = 0
    for name in names:
        first = list(library.PROGRAMS[name].vocab)
        second = list(SECOND_VOCAB.get(name, "".join(first) + "xyz"[: 2]) if all(isinstance(v, str) for v in first)
                      else SECOND_VOCAB.get(name, first))
        for n in lengths:
            entries.append(Entry(f"{name}-{n}-{_vocab_id(first)}", "library", name, first, n))
            if quick and name not in ("reverse", "sort", "dyck1", "histogram"):
                continue
            k += 1
            entries.append(Entry(f"{name}-{n}-{_vocab_id(second)}+d{k}", "library", name, second, n, 1000 + k))
    if quick:  # two decoders: one alone, one beside a distractor
        entries += [Entry("balanced_so_far-4-()-decoder", "library", "balanced_so_far", list("()"), 4, causal=True),
                    Entry("shift_by-4-abc-decoder+running_max", "library", "shift_by", list("abc"), 4, causal=True,
                          distractor_program="running_max")]
    else:
        entries += decoder_entries()
    entries += tracr_entries(quick)
    n_random = 4 if quick else 54
    for i in range(n_random):
        vocab, n = list(RANDOM_VOCABS[i % 3]), RANDOM_LENGTHS[(i // 3) % 3]
        d = 2000 + i if i % 2 else None
        entries.append(Entry(f"random_{i}-{n}-{_vocab_id(vocab)}" + (f"+d{d}" if d else ""), "random", f"random_{i}",
                             vocab, n, d, seed=i))
    if not quick:
        from glassformer.circuits.trained import TRAINED_PROGRAMS

        for i, (name, vocab, n) in enumerate(TRAINED_PROGRAMS[:trained]):  # None: all
            entries.append(Entry(f"{name}-{n}-{_vocab_id(vocab)}-trained", "trained", f"{name}@trained", list(vocab), n,
                                 seed=i))
    return entries


# Library programs whose selectors only look back (k <= q), compiled into decoders, each with its
# vocabulary and another causal program that runs beside it as a distractor (on the same vocabulary).
DECODER_PROGRAMS = {"running_max": ("abcd", "shift_by"), "frac_prevs": ("xy", "shift_by"),
                    "shift_by": ("abc", "running_max"), "detect_pattern": ("abc", "prefix_histogram"),
                    "prefix_histogram": ("abcd", "running_max"), "balanced_so_far": ("()", "shift_by")}


def decoder_entries() -> list[Entry]:
    """Each causal library program at max_len 4, 6, 8 alone, and at 6 beside another causal program."""
    entries = []
    for name, (vocab, other) in DECODER_PROGRAMS.items():
        if name not in library.PROGRAMS:
            continue
        vocab = list(vocab)
        for n in LENGTHS:
            entries.append(Entry(f"{name}-{n}-{_vocab_id(vocab)}-decoder", "library", name, vocab, n, causal=True))
        entries.append(Entry(f"{name}-6-{_vocab_id(vocab)}-decoder+{other}", "library", name, vocab, 6,
                             causal=True, distractor_program=other))
    return entries


QUICK_TRACR = ("sort_unique", "frac_prevs")


def tracr_entries(quick: bool = False) -> list[Entry]:
    """Each ported Tracr library program at max_len 4, 6, 8 over its Tracr vocabulary (``quick``: two at 4)."""
    entries = []
    for name in QUICK_TRACR if quick else TRACR_PROGRAMS:
        _, vocab, causal = TRACR_PROGRAMS[name]
        for n in (4,) if quick else LENGTHS:
            entries.append(Entry(f"tracr_{name}-{n}-{_vocab_id(vocab)}" + ("-decoder" if causal else ""), "tracr", name,
                                 list(vocab), n, causal=causal))
    return entries


def build_suite(out: str | Path, entries: list[Entry] | None = None, *, quick: bool = False,
                progress: bool = True) -> list[dict]:
    """Compile every entry, derive and check its ground truth, save it under ``out``; returns the index."""
    out = Path(out)
    entries = default_entries(quick) if entries is None else entries
    (out / "models").mkdir(parents=True, exist_ok=True)
    index, rejected = [], []
    for entry in tqdm(entries, desc="circuits build", disable=not progress, unit="model"):
        start = time.perf_counter()
        compiled = entry.build()
        row = {**asdict(entry), "kind": "compiled"}
        if entry.source == "trained":
            from glassformer.circuits.trained import compile_then_train

            truth = ground_truth(compiled)  # the compiled model's circuit, which training must keep
            compiled, info = compile_then_train(compiled, seed=entry.seed)
            row.update(kind="trained", **info)
            if info["iia"] < 0.99:  # kept only if it still computes the program the way the compiled model does
                rejected.append({"id": entry.id, **info})
                continue
        else:
            truth = ground_truth(compiled)
        folder = out / "models" / entry.id
        compiled.save(folder)
        (folder / "truth.json").write_text(json.dumps(truth.to_json(), indent=1))
        s = compiled.model.config
        check = {k: v for k, v in truth.causal.items() if isinstance(v, int)}
        row.update(layers=s.n_layers, n_heads=s.n_heads, d_model=s.d_model, true_nodes=len(truth.nodes),
                   true_edges=len(truth.edges), constant_edges=len(truth.constant_edges),
                   inert_edges=len(truth.causal.get("inert_edges", [])), check=check,
                   seconds=round(time.perf_counter() - start, 3))
        index.append(row)
    (out / "index.json").write_text(json.dumps({"format": FORMAT, "models": index, "rejected": rejected}, indent=1,
                                               default=str))
    return index


def load_suite(folder: str | Path):
    """[(index row, CompiledModel, GroundTruth)] for a folder ``build_suite`` wrote."""
    folder = Path(folder)
    path = folder / "index.json"
    if not path.is_file():
        raise CircuitsError(f"{folder} is not a circuits suite (no index.json); build one with "
                            "'glassformer circuits build --out DIR'")
    try:
        index = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CircuitsError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise CircuitsError(f"{path} is not a circuits suite index (format is not {FORMAT!r})")
    models = []
    for row in index["models"]:
        sub = folder / "models" / row["id"]
        truth_path = sub / "truth.json"
        if not truth_path.is_file():
            raise CircuitsError(f"suite model {row['id']} has no truth.json in {sub}")
        compiled = CompiledModel.load(sub)
        compiled.model.requires_grad_(False)
        models.append((row, compiled, GroundTruth.from_json(json.loads(truth_path.read_text()))))
    return models


def one_thread():
    """Circuit methods are many small tensor ops: one torch thread is fastest on a shared CPU."""
    torch.set_num_threads(1)
