"""`CompiledModel`: a compiled RASP program -- the Transformer plus its input encoder and output decoder.

    compiled.model             the glassformer Transformer (an ordinary one: every lens works on it)
    compiled.run("abc")        encode [BOS, a, b, c], run the model, decode positions 1..n
    compiled.residual_labels   one label per residual dimension ("bos", "tokens=a", "frac_prevs", ...)
    compiled.residual_dims     SOp label -> [start, stop) of the residual dimensions it occupies
    compiled.components()      the ground truth: which head / MLP units compute which SOp, reading which
    compiled.edges()           which component's output each component reads (through which SOp)
    compiled.summary()         layers, heads, residual width, MLP width, parameter count
    compiled.save(DIR)         a normal checkpoint folder (config.json, model.safetensors, extra.json
                               holding the encoders under "rasp"); CompiledModel.load(DIR) reads it back
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from glassformer.errors import CheckpointError, InputError
from glassformer.rasp.compiler.weights import BOS_ID, FIRST_TOKEN_ID, PAD_ID, OutputSpec

BOS_CHAR, PAD_CHAR = "\u2402", "\u2400"  # shown for the BOS and PAD ids by the character tokenizer


@dataclass
class Block:
    """What one head or MLP of the compiled model computes (for summaries, diagrams and ground truth)."""

    layer: int
    kind: str  # "attention" | "mlp"
    node: str  # the SOp it writes
    detail: str  # e.g. "mean", "table over (tokens, indices)"
    size: int  # head dimensions or hidden units
    head: int | None = None  # attention: the head's index in its layer
    units: list[int] | None = None  # mlp: its hidden units [start, stop) in the layer's MLP
    reads: list[str] = field(default_factory=list)  # the SOps (residual labels' owners) it reads

    @property
    def component(self) -> str:
        """The component's name, as the model's hook names spell its layer: ``blocks.1.attn.head0``,
        ``blocks.0.mlp[3:7]`` (hidden units 3..6)."""
        if self.kind == "attention":
            return f"blocks.{self.layer}.attn.head{self.head}"
        units = f"[{self.units[0]}:{self.units[1]}]" if self.units else ""
        return f"blocks.{self.layer}.mlp{units}"


@dataclass
class CompiledModel:
    model: Any  # glassformer.Transformer
    vocab: list
    max_len: int
    output: OutputSpec
    residual_labels: list[str]
    blocks: list[Block] = field(default_factory=list)
    program: Any = None  # the RASP program (None after load)
    program_name: str = ""
    compile_seconds: float = 0.0
    residual_dims: dict[str, tuple[int, int]] = field(default_factory=dict)  # SOp label -> [start, stop)
    output_sop: str = ""  # the label of the program's output SOp (what the unembedding reads)

    def __post_init__(self):
        self.token_to_id = {_tok_key(t): FIRST_TOKEN_ID + i for i, t in enumerate(self.vocab)}
        self.residual_dims = {"bos": (0, 1), **{k: tuple(v) for k, v in self.residual_dims.items()}}

    @property
    def causal(self) -> bool:
        """Whether the model is a decoder (compiled with ``causal=True``): position i sees only 0..i."""
        return bool(self.model.config.causal)

    # -- running ----------------------------------------------------------------------------------

    def encode(self, xs: Sequence | str) -> torch.Tensor:
        """Token ids [BOS, x_1, ..., x_n]: LongTensor [n + 1]."""
        xs = list(xs)
        if len(xs) > self.max_len:
            raise InputError(f"input has {len(xs)} tokens but the program was compiled for max_len = {self.max_len}")
        ids = [BOS_ID]
        for i, x in enumerate(xs):
            key = _tok_key(x)
            if key not in self.token_to_id:
                raise InputError(f"token {x!r} at position {i} is not in the compiled vocabulary {self.vocab}")
            ids.append(self.token_to_id[key])
        return torch.tensor(ids, dtype=torch.long)

    def decode(self, logits: torch.Tensor) -> list:
        """Values from logits [pos, d_vocab_out] (positions after BOS)."""
        if self.output.numerical:
            raw = logits[:, 0].double().tolist()
            return [self._snap(v) for v in raw]
        return [self.output.classes[c] for c in logits.argmax(-1).tolist()]

    def _snap(self, v: float):
        """The value of the output set nearest to v (the model is exact to a quarter of their gap)."""
        values = self.output.values
        if not values:
            return v
        lo, hi = 0, len(values) - 1
        while lo < hi:  # values are sorted: binary search the nearest
            mid = (lo + hi) // 2
            if float(values[mid]) < v:
                lo = mid + 1
            else:
                hi = mid
        candidates = [values[i] for i in (lo - 1, lo) if 0 <= i < len(values)]
        return min(candidates, key=lambda c: abs(float(c) - v))

    @torch.no_grad()
    def run(self, xs: Sequence | str) -> list:
        """The program's output on ``xs``, computed by the model."""
        xs = list(xs)
        if not xs:
            return []
        logits = self.model(self.encode(xs)[None].to(_device(self.model)))  # [1, n + 1, d_vocab_out]
        return self.decode(logits[0, 1:].float().cpu())

    @torch.no_grad()
    def run_batch(self, inputs: Sequence[Sequence]) -> list[list]:
        """Run many inputs at once (padded, with an attention mask)."""
        inputs = [list(x) for x in inputs]
        if not inputs:
            return []
        width = max(len(x) for x in inputs) + 1
        ids = torch.full((len(inputs), width), PAD_ID, dtype=torch.long)
        mask = torch.zeros((len(inputs), width), dtype=torch.long)
        for b, xs in enumerate(inputs):
            row = self.encode(xs)
            ids[b, : len(row)] = row
            mask[b, : len(row)] = 1
        device = _device(self.model)
        logits = self.model(ids.to(device), attention_mask=mask.to(device)).float().cpu()  # [batch, pos, out]
        return [self.decode(logits[b, 1 : len(xs) + 1]) if xs else [] for b, xs in enumerate(inputs)]

    # -- describing -------------------------------------------------------------------------------

    def summary(self) -> dict:
        """Layers, heads, residual width, MLP width and parameter count of the compiled model."""
        c = self.model.config
        heads = [b for b in self.blocks if b.kind == "attention"]
        return {
            "program": self.program_name,
            "max_len": self.max_len,
            "vocab_size": len(self.vocab),
            "layers": c.n_layers,
            "heads": len(heads),
            "heads_per_layer": [sum(1 for b in heads if b.layer == l) for l in range(c.n_layers)],
            "n_heads": c.n_heads,
            "d_head": c.d_head,
            "d_model": c.d_model,
            "d_mlp": c.d_mlp,
            "mlp_units_per_layer": [sum(b.size for b in self.blocks if b.kind == "mlp" and b.layer == l)
                                    for l in range(c.n_layers)],
            "d_head_per_layer": [block.attn.d_head for block in self.model.blocks],  # each layer's own size
            "d_mlp_per_layer": [block.mlp.W_in.shape[1] for block in self.model.blocks],
            "params": self.model.num_params(),
            "dtype": str(next(self.model.parameters()).dtype).replace("torch.", ""),
            "compile_seconds": round(self.compile_seconds, 4),
        }

    def describe(self) -> str:
        """A readable account: one line per head and MLP, layer by layer."""
        s = self.summary()
        per_layer = lambda k: "/".join(map(str, s[f"{k}_per_layer"]))  # noqa: E731
        lines = [f"{s['program'] or 'program'}: {s['layers']} layers, {s['heads']} heads, d_model={s['d_model']}, "
                 f"d_head={per_layer('d_head')}, d_mlp={per_layer('d_mlp')}, {s['params']:,} parameters ({s['dtype']})"]
        for layer in range(s["layers"]):
            lines.append(f"layer {layer}:")
            for b in self.blocks:
                if b.layer == layer:
                    unit = "dims" if b.kind == "attention" else "units"
                    lines.append(f"  {b.kind:9s} -> {b.node}: {b.detail} ({b.size} {unit})")
        return "\n".join(lines)

    __str__ = describe

    # -- ground truth -----------------------------------------------------------------------------

    def components(self) -> list[dict]:
        """Every head and MLP part that computes something, with what it computes: ``component``
        (``blocks.1.attn.head0`` / ``blocks.0.mlp[0:12]``), ``layer``, ``kind``, ``head`` or ``units``,
        ``writes`` (the SOp) and ``writes_dims`` ([start, stop) in the residual stream), ``reads`` (SOps)
        and ``reads_dims``.  Heads and units not listed are zero.  The embedding writes ``tokens``,
        ``indices`` and constants (``embedded_sops()``)."""
        out = []
        for b in self.blocks:
            out.append({
                "component": b.component, "layer": b.layer, "kind": b.kind, "head": b.head, "units": b.units,
                "writes": b.node, "writes_dims": list(self.residual_dims.get(b.node, ())),
                "reads": list(b.reads), "reads_dims": {r: list(self.residual_dims[r]) for r in b.reads
                                                      if r in self.residual_dims},
                "detail": b.detail,
            })
        return out

    def embedded_sops(self) -> list[str]:
        """The SOps the embedding writes (no head or MLP computes them): tokens, indices, constants, bos."""
        computed = {b.node for b in self.blocks}
        return [label for label in self.residual_dims if label not in computed]

    def edges(self) -> list[tuple[str, str, str]]:
        """``(source, target, sop)``: component ``target`` reads SOp ``sop``, which ``source`` writes
        (``"embed"`` for embedded SOps).  A SOp written by a head and then cleaned at BOS by an MLP unit
        has both as sources.  These are all the paths along which information flows in the compiled model."""
        writers: dict[str, list[str]] = {}
        for b in self.blocks:
            writers.setdefault(b.node, []).append(b.component)
        out = []
        for b in self.blocks:
            for sop in b.reads:
                for source in writers.get(sop, ["embed"]):
                    if source != b.component:
                        out.append((source, b.component, sop))
        return out


    # -- saving -----------------------------------------------------------------------------------

    def io_spec(self) -> dict:
        """The encoders as JSON: vocabulary, output classes / values, residual labels, blocks."""
        return {
            "format": "glassformer-rasp",
            "version": 1,
            "program": self.program_name,
            "vocab": [to_json(t) for t in self.vocab],
            "max_len": self.max_len,
            "bos_id": BOS_ID,
            "pad_id": PAD_ID,
            "first_token_id": FIRST_TOKEN_ID,
            "output": {
                "numerical": self.output.numerical,
                "classes": [to_json(c) for c in self.output.classes],
                "values": None if self.output.values is None else [to_json(v) for v in self.output.values],
                "tolerance": self.output.tolerance,
                "none_class": self.output.none_class,
            },
            "residual_labels": self.residual_labels,
            "residual_dims": {k: list(v) for k, v in self.residual_dims.items()},
            "output_sop": self.output_sop,
            "blocks": [vars(b) for b in self.blocks],
        }

    def tokenizer(self):
        """A CharTokenizer matching the ids (BOS, PAD, vocabulary) when every token is one character."""
        if not all(isinstance(t, str) and len(t) == 1 for t in self.vocab):
            return None
        if BOS_CHAR in self.vocab or PAD_CHAR in self.vocab:
            return None
        from glassformer.train.tokenizers import CharTokenizer

        return CharTokenizer([BOS_CHAR, PAD_CHAR, *self.vocab])

    def save(self, dir: str | Path, sparse: bool = False) -> Path:
        """Write a checkpoint folder that ``glassformer.load`` and the CLI read; the encoders go to
        ``extra.json`` under ``"rasp"``.  ``sparse=True`` stores only the non-zero weights
        (``sparse.py``: a fraction of the size; read back by ``CompiledModel.load`` only)."""
        if sparse:
            from glassformer.rasp.compiler.sparse import save_sparse

            return save_sparse(dir, self.model, self.tokenizer(), {"rasp": self.io_spec()})
        from glassformer.train.checkpoint import save_model

        return save_model(dir, self.model, tokenizer=self.tokenizer(), extra={"rasp": self.io_spec()})

    @classmethod
    def load(cls, dir: str | Path, device: str | None = None) -> CompiledModel:
        """A compiled model saved by ``save`` (dense or sparse)."""
        from glassformer.rasp.compiler.sparse import is_sparse, load_sparse
        from glassformer.train.checkpoint import load_checkpoint

        if is_sparse(dir):
            model, _, extra = load_sparse(dir, device=device)
        else:
            ckpt = load_checkpoint(dir, device=device)
            model, extra = ckpt.model, ckpt.extra
        spec = extra.get("rasp") if isinstance(extra, dict) else None
        if not isinstance(spec, dict) or spec.get("format") != "glassformer-rasp":
            raise CheckpointError(f"{dir} holds no compiled RASP program (extra.json has no 'rasp' section)")
        out = spec["output"]
        output = OutputSpec(out["numerical"], [from_json(c) for c in out["classes"]],
                            None if out["values"] is None else [from_json(v) for v in out["values"]], out["tolerance"],
                            out.get("none_class"))
        return cls(model, [from_json(t) for t in spec["vocab"]], spec["max_len"], output, spec["residual_labels"],
                   [Block(**b) for b in spec["blocks"]], None, spec.get("program", ""), 0.0,
                   spec.get("residual_dims", {}), spec.get("output_sop", ""))


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _tok_key(x):
    return (type(x) is bool, x)


def to_json(v: Any) -> Any:
    """Values (str, int, float, bool, None, tuples of these) as JSON that ``from_json`` reverses."""
    if v is None or isinstance(v, (str, bool, int, float)):
        return v
    if isinstance(v, tuple):
        return {"tuple": [to_json(x) for x in v]}
    raise CheckpointError(f"cannot save the value {v!r} ({type(v).__name__}) in a compiled model's encoders")


def from_json(v: Any) -> Any:
    if isinstance(v, dict) and "tuple" in v:
        return tuple(from_json(x) for x in v["tuple"])
    return v

