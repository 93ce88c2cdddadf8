"""The RASP compiler: a program, a vocabulary and a maximum length in; a glassformer Transformer out.

Stages, each its own module and testable alone:

    1. graph.py      program -> graph of embedded / element-wise / attention nodes (lowering rules)
       chains.py     a Map read only by another Map is composed into it
       causal.py     causal=True: every selector must look only back (decoders)
    2. values.py     the set of values each node can take
    3. assign.py     which element-wise nodes fuse into one MLP or fold into a head's weights
       mlp.py        exact lookup-table MLPs for the element-wise nodes
       attention.py  heads for the attention nodes
    4. allocate.py   layers: each block as early as its inputs allow
       precision.py  each head's softmax sharpness, so that the whole model is exact (or an error)
    5. layout.py     the residual stream: one labelled dimension per value
    6. weights.py    the Transformer's parameters
       compiled.py   CompiledModel: model + encoders, run / save / summary
"""

from __future__ import annotations

import time
from typing import Iterable

import numpy as np
import torch

from glassformer.rasp import language as L
from glassformer.rasp.compiler import mlp as M
from glassformer.rasp.compiler.allocate import allocate
from glassformer.rasp.compiler.assign import Assignment, MLPTask, assign
from glassformer.rasp.compiler.attention import build_head
from glassformer.rasp.compiler.causal import check_causal
from glassformer.rasp.compiler.chains import compose_chains, composed
from glassformer.rasp.compiler.compiled import Block, CompiledModel
from glassformer.rasp.compiler.graph import Attend, build_graph
from glassformer.rasp.compiler.layout import Layout, build_layout, erase_spec
from glassformer.rasp.compiler.precision import choose_sharpness, output_tolerance
from glassformer.rasp.compiler.values import ValueSet, infer_values
from glassformer.rasp.compiler.weights import PAD_ID, OutputSpec, build_model, planned_params
from glassformer.rasp.errors import RaspCompileError

__all__ = ["compile", "CompiledModel"]


DTYPES = {"float32": torch.float32, "float64": torch.float64}


def compile(program: L.SOp, vocab: Iterable | str, max_len: int, *, dtype: str | torch.dtype | None = None,
            approximate: bool = False, check: bool = True, causal: bool = False,
            reuse_residual: bool = False) -> CompiledModel:
    """Compile ``program`` for inputs of 1..``max_len`` tokens from ``vocab`` (a string is its characters).

    ``dtype``: "float32", "float64", or None (default) for float32 unless its rounding would break
    exactness somewhere, then float64 (``compiled.summary()["dtype"]`` says which).  Raises
    :class:`RaspCompileError` naming the operation if the program cannot be compiled exactly.
    ``check`` runs each MLP on sampled inputs as a guard against construction bugs.  A numerical
    output whose values cannot be listed (e.g. means of 0.1, 0.2, ...) can only be approximated
    (to 1e-5, relatively); that is an error unless ``approximate=True``.
    ``causal=True`` compiles into a decoder (causal self-attention, ``arch="decoder"``); every selector
    must then select only keys at or before the query, else :class:`RaspCompileError` (see ``causal.py``).
    ``reuse_residual=True`` lets a SOp written later reuse the residual dimensions of one no longer read
    (erased by MLP units): a narrower model whose dimensions carry several labels (``layout.py``), used
    where it has fewer parameters than the model without reuse.
    """
    start = time.perf_counter()
    name = getattr(program, "name", "program")
    vocab = _vocab(vocab, name)
    if not isinstance(max_len, int) or isinstance(max_len, bool) or max_len < 1:
        raise RaspCompileError(name, f"max_len must be a positive integer, got {max_len!r}")
    dtypes = _dtypes(dtype, name)

    graph = build_graph(program, max_len)
    compose_chains(graph)
    if causal:
        check_causal(graph)
    values = infer_values(graph, vocab, max_len)
    plan = assign(graph, values, vocab, max_len)
    out_values = values[graph.output.label]
    if graph.output.is_numerical and not out_values.finite and not approximate:
        raise RaspCompileError(graph.output.label, "its values cannot be listed (too many, or no short common "
                               "denominator), so the model's output could only approximate them to ~1e-5; pass "
                               "approximate=True to accept that")
    alloc = allocate(plan)
    for attempt, dtype_name in enumerate(dtypes):
        try:
            mlps, heads = _build_blocks(plan, values, max_len, M.EPS[dtype_name], check)
            break
        except RaspCompileError as e:
            if attempt + 1 == len(dtypes) or not e.float_limited:
                raise
    output = _output_spec(plan, vocab)
    layout = build_layout(plan, alloc)
    if reuse_residual:  # only where it makes the model smaller: erasing units widen the MLPs
        reused = build_layout(plan, alloc, reuse=True)
        size = lambda lay: planned_params(plan, alloc, lay, mlps, heads, vocab, max_len, output)  # noqa: E731
        if size(reused) < size(layout):
            layout = reused
    model = build_model(plan, alloc, layout, mlps, heads, vocab, max_len, output, DTYPES[dtype_name],
                        arch="decoder" if causal else "encoder")
    blocks = _blocks(plan, alloc, mlps, heads, layout)
    return CompiledModel(model, vocab, max_len, output, layout.labels, blocks, program, name,
                         time.perf_counter() - start, dict(layout.owner), graph.output.label)


def _dtypes(dtype, name: str) -> list[str]:
    if dtype is None or dtype == "auto":
        return ["float32", "float64"]
    for key, value in DTYPES.items():
        if dtype in (key, value):
            return [key]
    raise RaspCompileError(name, f"dtype must be 'float32', 'float64' or None, got {dtype!r}")


def _build_blocks(plan: Assignment, values: dict[str, ValueSet], max_len: int, eps: float, check: bool):
    """MLPs and heads, with every head's sharpness chosen for machine epsilon ``eps``."""
    mlps, noisy = build_mlps(plan, values, eps)
    if check:
        rng = np.random.default_rng(0)
        for label, task in plan.mlps.items():
            M.check_exact(mlps[label], task.node, list(task.inputs), [values[i.label] for i in task.inputs],
                          task.fn, rng)
    heads = {label: build_head(task, values) for label, task in plan.heads.items()}
    choose_sharpness(plan, mlps, heads, noisy, max_len, eps)
    return mlps, heads


def _vocab(vocab, name: str) -> list:
    if isinstance(vocab, str):
        vocab = list(vocab)
    try:
        vocab = list(dict.fromkeys(vocab))
    except TypeError:
        raise RaspCompileError(name, "the vocabulary must be an iterable of hashable tokens") from None
    if not vocab:
        raise RaspCompileError(name, "the vocabulary is empty")
    if any(t is None for t in vocab):
        raise RaspCompileError(name, "None cannot be a token (it is RASP's 'no value')")
    return vocab


def build_mlps(plan: Assignment, values: dict[str, ValueSet], eps: float) -> tuple[dict[str, M.MLPSpec], set[str]]:
    """Every MLP, in topological order, and the set of *noisy* nodes: head outputs (softmax leaks a
    little weight), and MLP outputs that pass a noisy input on linearly or carry float32 rounding.
    An MLP reading a noisy categorical input uses step pairs, which clean the error up."""
    noisy: set[str] = set()
    mlps: dict[str, M.MLPSpec] = {}
    for node in plan.materialized:
        if isinstance(node.op, Attend):
            noisy.add(node.label)
        elif node.label in plan.mlps:
            spec = build_mlp(plan.mlps[node.label], values, noisy, plan, eps)
            mlps[node.label] = spec
            if spec.float_error > 0 or any(i in noisy for i in spec.passthrough):
                noisy.add(node.label)
    return mlps, noisy


def build_mlp(task: MLPTask, values: dict[str, ValueSet], noisy: set[str], plan: Assignment,
              eps: float = M.EPS["float32"]) -> M.MLPSpec:
    node, inputs = task.node, list(task.inputs)
    sets = [values[i.label] for i in inputs]
    spec = M.MLPSpec(node.label, eps=eps)
    bos = {i.label: abs(float(i.op.default or 0.0)) for i in inputs
           if isinstance(i.op, Attend) and i.is_numerical and i.op.mode != "width"}
    if task.strategy == "table":
        M.table(spec, node, inputs, sets, task.fn, noisy)
    elif task.strategy == "lookup":
        s_pos = next(j for j, i in enumerate(inputs) if i.is_numerical)
        cats = [i for j, i in enumerate(inputs) if j != s_pos]
        cat_sets = [s for j, s in enumerate(sets) if j != s_pos]

        def fn(s, combo, f=task.fn, p=s_pos):
            args = list(combo)
            args.insert(p, s)
            return f(*args)

        M.lookup(spec, node, inputs[s_pos], sets[s_pos], cats, cat_sets, fn, noisy, bos.get(inputs[s_pos].label, 0.0))
    else:
        M.additive(spec, node, inputs, sets, task.parts, task.const, noisy, bos)
    return spec


def _output_spec(plan: Assignment, vocab: list) -> OutputSpec:
    node = plan.graph.output
    vset = plan.values[node.label]
    tol = output_tolerance(vset, node.is_numerical)
    if node.is_numerical:
        return OutputSpec(True, [], list(vset.non_none) if vset.finite else None, tol)
    may_be_none = None in vset.values
    tokens = {_token_key(t) for t in vocab}
    if all(_token_key(v) in tokens for v in vset.non_none):  # logits over the token ids themselves
        classes = [None, None] + list(vocab)
        return OutputSpec(False, classes, None, tol, PAD_ID if may_be_none else None)
    classes = list(vset.non_none) + ([None] if may_be_none else [])
    return OutputSpec(False, classes, None, tol, len(classes) - 1 if may_be_none else None)


def _token_key(t):
    return (type(t) is bool, t)


def _blocks(plan: Assignment, alloc, mlps: dict[str, M.MLPSpec], heads, layout: Layout) -> list[Block]:
    """One Block per head and per MLP part, with where it sits in the model: the head index, or the
    hidden units [start, stop) in the layer's MLP (MLP parts first, then one unit per defaulted head,
    then the erasing units of reused dimensions: the order ``build_model`` writes them in), and the SOps
    it reads."""
    blocks = []
    erased = set(layout.erase)
    for layer in range(alloc.n_layers):
        cleanups = []
        for h, label in enumerate(alloc.heads[layer]):
            task, spec = plan.heads[label], heads[label]
            sel = task.node.op.selector
            if sel.constant is not None:
                what = "select all" if sel.constant else "select nothing"
            else:
                what = " & ".join(f"{k.node.label}~{q.node.label}" for k, q, _ in task.clauses)
            value = f" of {task.value.node.label}" if task.value is not None else ""
            reads = [d.label for d in plan.deps(task.node)]
            blocks.append(Block(layer, "attention", label, f"{spec.mode}{value} where {what}, beta={spec.beta:.3g}",
                                spec.d_head, head=h, reads=reads))
            if spec.default and (layer, label) not in erased:
                cleanups.append(Block(layer, "mlp", label, "erase the default written at BOS", 1, reads=["bos"]))
        unit = 0
        for label in alloc.mlps[layer]:
            task, spec = plan.mlps[label], mlps[label]
            inlined = list(task.fused)  # nodes fused into this MLP, and Maps composed into them (chains.py)
            for n in plan.graph.nodes:
                if n.label == label or n.label in task.fused:
                    inlined.extend(composed(n.op.fn))
            fused = f", fusing {', '.join(dict.fromkeys(inlined))}" if inlined else ""
            blocks.append(Block(layer, "mlp", label, f"{spec.strategy} over ({', '.join(i.label for i in task.inputs)})"
                                                      f"{fused}", spec.n_units, units=[unit, unit + spec.n_units],
                                reads=[i.label for i in task.inputs]))
            unit += spec.n_units
        for block in cleanups:
            block.units = [unit, unit + 1]
            unit += 1
        blocks.extend(cleanups)
        for label in (label for l, label in layout.erase if l == layer):
            n = erase_spec(plan, layout, label).n_units
            blocks.append(Block(layer, "mlp", label, "erase its dimensions (a later SOp reuses them)", n,
                                units=[unit, unit + n], reads=[label]))
            unit += n
    return blocks
