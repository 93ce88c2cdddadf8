"""The decompiler: a model (and the inputs it reads) in, a RASP program out, step by step.

1. **Prune** (:func:`prune`): mean-ablate each head and MLP; keep those whose ablation changes the
   model's outputs, then check that ablating all the others at once keeps >= 99% of them (averaged over
   the output values, so a rare answer weighs as much as a common one).
2. **Read each kept component, layer by layer**, over the features the program has so far (tokens,
   indices, and every earlier step's SOp, evaluated by the interpreter):
   * a head: its attention read as a selector (``fit.fit_selector``), and what it writes as the SOp among
     ``Aggregate(select, v)`` (copy one value), ``SelectorWidth(select)`` (count), a numerical
     ``Aggregate`` of 0..1 marks of ``v`` (a mean) and ``Maximum`` / ``Minimum(select, v)`` (``extreme.py``)
     that best explains its output vector (held-out R^2);
   * an MLP: one or more ``Map`` / ``SequenceMap`` tables over one or two features each, split by the
     output dimensions each explains (``mlp.py``), valued by the MLP's distinct outputs, numbered 0, 1, ...
   A head that spreads its attention may instead read as the tuple of fractions of its values, or as
   the fraction of its keys past a cut (``soft.py``).
3. **Read out** the output: a table from one to three features to the model's own prediction, or a
   linear arg-max / small decision tree over quantities (``readout.py``, ``numeric.py``).

Faithfulness (match, IIA) is measured in :mod:`glassformer.rasp.decompile.faithful`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from glassformer.rasp import language as L
from glassformer.rasp.decompile import extreme
from glassformer.rasp.decompile import fit as F
from glassformer.rasp.decompile import mlp as mlp_read
from glassformer.rasp.decompile import soft
from glassformer.rasp.decompile.readout import read_output  # noqa: F401  (step 3)
from glassformer.rasp.decompile.probe import Component, Example, Probe
from glassformer.rasp.decompile.program import KeySet, PairSet, Table, table_or_affine
from glassformer.rasp.errors import RaspEvaluationError
from glassformer.rasp.interpreter import Interpreter


@dataclass
class Step:
    """One program step: the SOp it defines, the component(s) it reads, and how well it fits."""

    expr: L.SOp
    components: list[Component]
    kind: str  # "aggregate" | "width" | "mean" | "dist" | "maximum" | "minimum" | "map" | "output"
    fit: float  # held-out R^2 of the component's output (heads, MLPs) or accuracy (output)
    detail: str = ""
    iia: float | None = None
    iia_all: float | None = None
    best_component: Component | None = None
    necessity: float = 0.0  # fraction of outputs that change when the component is mean-ablated


@dataclass
class State:
    """Everything the steps share: the examples, their rows and cells, interpreters, features."""

    probe: Probe
    examples: list[Example]
    outputs: list[list]
    starts: np.ndarray  # [examples] first row of each example
    row_ex: np.ndarray  # [rows] example of each row
    row_pos: np.ndarray  # [rows] program position of each row
    cells: F.Cells
    registry: F.Registry = field(default_factory=F.Registry)
    interps: list[Interpreter] = field(default_factory=list)
    failed: np.ndarray | None = None  # [examples] the interpreter raised on this input
    features: list[F.Feature] = field(default_factory=list)
    n_tables: int = 0
    scored: np.ndarray | None = None  # [rows] bool: the task scores the model's output there

    @property
    def n_rows(self) -> int:
        return len(self.row_ex)

    def values(self, expr: L.SOp) -> list:
        """``expr``'s value at every row (None where the interpreter fails on the input)."""
        out: list = []
        for e, interp in enumerate(self.interps):
            n = len(self.examples[e].xs)
            try:
                out += list(interp.run(expr))
            except RaspEvaluationError:
                self.failed[e] = True
                out += [None] * n
        return out

    def add_feature(self, expr: L.SOp, layer: float, component=None) -> F.Feature:
        codes = np.array([self.registry.code(v) for v in self.values(expr)], dtype=np.int64)
        feature = F.Feature(expr.name, expr, codes, layer, component)
        self.features.append(feature)
        return feature

    def table_name(self, stem: str) -> str:
        self.n_tables += 1
        return f"T_{stem}"


def build_state(probe: Probe, examples: list[Example], outputs: list[list]) -> State:
    lengths = np.array([len(ex.xs) for ex in examples])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    row_ex = np.repeat(np.arange(len(examples)), lengths)
    row_pos = np.concatenate([np.arange(n) for n in lengths]) if len(lengths) else np.zeros(0, int)
    qs, ks = [], []
    for e, n in enumerate(lengths):
        q, k = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        qs.append(starts[e] + q.reshape(-1))
        ks.append(starts[e] + k.reshape(-1))
    q = np.concatenate(qs)
    k = np.concatenate(ks)
    allowed = (row_pos[k] <= row_pos[q]) if probe.causal else np.ones(len(q), bool)
    train = (row_ex % 2) == 0
    state = State(probe, examples, outputs, starts, row_ex, row_pos, F.Cells(q, k, allowed, train))
    state.scored = np.concatenate([np.array(ex.scored, bool) for ex in examples])
    state.interps = [Interpreter(list(ex.xs)) for ex in examples]
    state.failed = np.zeros(len(examples), bool)
    state.add_feature(L.tokens, -1)
    state.add_feature(L.indices, -1)
    return state


# -- reading activations ------------------------------------------------------------------------------


def component_arrays(state: State, components: list[Component]) -> dict[Component, dict[str, np.ndarray]]:
    """For each component: ``out`` [rows, d_model] (what it adds to the residual stream), and for heads
    ``att`` [cells] (attention weight) and ``sink`` [rows] (weight on positions before the program's); where
    there are such positions (BOS), also ``score`` [cells] and ``sink_score`` [rows], the scores before
    the softmax (``extreme.learned_ranks`` reads a Maximum's order from them)."""
    probe, model = state.probe, state.probe.model
    wanted = set()
    for c in components:
        wanted |= {f"blocks.{c[1]}.attn.z", f"blocks.{c[1]}.attn.pattern"} if c[0] == "head" else {f"blocks.{c[1]}.mlp_out"}
        if c[0] == "head" and probe.offset > 0:
            wanted.add(f"blocks.{c[1]}.attn.scores")
    _, caches = probe.run(state.examples, names=lambda n: n in wanted)
    d = model.config.d_model
    out = {c: {"out": np.zeros((state.n_rows, d), dtype=np.float32)} for c in components}
    for c in components:
        if c[0] == "head":
            out[c]["att"] = np.zeros(len(state.cells.q), dtype=np.float32)
            out[c]["sink"] = np.zeros(state.n_rows, dtype=np.float32)
    cell_start = _cell_starts(state)
    off = probe.offset
    for idx in probe.groups(state.examples):
        cache = caches[int(idx[0])]
        n = len(state.examples[idx[0]].xs)
        rows = (state.starts[idx][:, None] + np.arange(n)[None, :]).reshape(-1)  # [batch * n]
        cells = (cell_start[idx][:, None] + np.arange(n * n)[None, :]).reshape(-1)  # [batch * n * n]
        for c in components:
            kind, layer, h = c
            if kind == "mlp":
                out[c]["out"][rows] = cache[f"blocks.{layer}.mlp_out"][:, off : off + n].reshape(-1, d).numpy()
                continue
            W_O = model.blocks[layer].attn.W_O[h].detach().float().cpu()  # [d_head, d_model]
            z = cache[f"blocks.{layer}.attn.z"][:, off : off + n, h]  # [batch, n, d_head]
            out[c]["out"][rows] = (z @ W_O).reshape(-1, d).numpy()
            pattern = cache[f"blocks.{layer}.attn.pattern"][:, h]  # [batch, q_pos, k_pos]
            out[c]["att"][cells] = pattern[:, off : off + n, off : off + n].reshape(-1).numpy()
            out[c]["sink"][rows] = pattern[:, off : off + n, :off].sum(-1).reshape(-1).numpy()
            if off > 0:
                scores = cache[f"blocks.{layer}.attn.scores"][:, h]  # [batch, q_pos, k_pos]
                out[c].setdefault("score", np.zeros(len(state.cells.q), dtype=np.float32))[cells] = \
                    scores[:, off : off + n, off : off + n].reshape(-1).numpy()
                out[c].setdefault("sink_score", np.zeros(state.n_rows, dtype=np.float32))[rows] = \
                    scores[:, off : off + n, :off].amax(-1).reshape(-1).numpy()
    return out


def _cell_starts(state: State) -> np.ndarray:
    lengths = np.array([len(ex.xs) for ex in state.examples])
    return np.concatenate([[0], np.cumsum(lengths ** 2)[:-1]]).astype(np.int64)


# -- steps --------------------------------------------------------------------------------------------


def _selector_expr(state: State, fit: F.SelectorFit, stem: str) -> L.Selector:
    if fit.kind == "and":
        a = _atom_expr(state, F.SelectorFit("named", fit.key, fit.query, predicate=fit.predicate), f"{stem}_a")
        b = _atom_expr(state, fit.second, f"{stem}_b")
        sel: L.Selector = L.SelectorAnd(a, b, name=f"select_{stem}")
    else:
        sel = _atom_expr(state, fit, stem)
    if state.probe.causal and not (fit.key.expr is L.indices and fit.query.expr is L.indices and fit.kind != "and"):
        causal = Select(L.indices, L.indices, L.LEQ, f"causal_{stem}")
        sel = L.SelectorAnd(causal, sel, name=f"attend_{stem}")
    return sel


def _atom_expr(state: State, fit: F.SelectorFit, stem: str) -> L.Select:
    """One Select: a named comparison, a set of key values, a query Map compared with EQ, or a table."""
    reg = state.registry
    key, query = fit.key.expr, fit.query.expr
    if fit.kind == "named":
        return Select(key, query, L.COMPARISONS[fit.predicate], f"select_{stem}")
    if fit.kind == "keyset":
        return Select(key, query, KeySet(f"S_{stem}", {reg.values[k] for k in fit.keyset}), f"select_{stem}")
    if fit.kind == "map_eq":
        mapping = {reg.values[q]: reg.values[k] for q, k in fit.mapping.items()}
        fn = table_or_affine(state.table_name(f"{stem}_query"), mapping)
        target = L.Map(fn, query, name=f"query_{stem}")
        return Select(key, target, L.EQ, f"select_{stem}")
    pairs = {(reg.values[k], reg.values[q]) for k, q in fit.table}
    return Select(key, query, PairSet(f"S_{stem}", pairs), f"select_{stem}")


def Select(keys, queries, predicate, name):
    return L.Select(keys, queries, predicate, name=name)


def _available(state: State, layer: float) -> list[F.Feature]:
    return [f for f in state.features if f.layer < layer]


def read_head(state: State, comp: Component, arrays: dict[str, np.ndarray]) -> Step:
    """A kept head as ``Aggregate`` / ``SelectorWidth`` / a numerical mean (see the module docstring)."""
    _, layer, h = comp
    stem = f"l{layer}h{h}"
    feats = _available(state, layer)
    order = state.registry.order()
    cells, act = state.cells, arrays["out"]
    train_rows = cells.train
    candidates = []  # (score, kind, selector fit, value feature, marks)
    scored = state.scored
    row_sets = [np.ones(state.n_rows, bool)] + ([scored] if not scored.all() else [])
    for rows in row_sets:  # every position, and (for a task) only the positions the task scores
        r2 = lambda groups: F.grouped_r2(act[rows], groups[rows], train_rows[rows])
        for hard in (True, False):
            y = F.cell_selection(arrays["att"], arrays["sink"], cells, hard)
            sfit = F.fit_selector(y, feats, cells, order, rows)
            if sfit is None:
                continue
            sel_cells = sfit.selected & cells.allowed
            if hard:
                for vf in feats:
                    codes = _copied(sel_cells, cells, vf.codes, state.n_rows)
                    conflict = float((codes[rows] == -2).mean())
                    candidates.append((r2(codes) - conflict - 0.002, "aggregate", sfit, vf, None))
            else:
                width = np.bincount(cells.q, weights=sel_cells, minlength=state.n_rows).astype(np.int64)
                candidates.append((r2(width) - 0.001, "width", sfit, None, None))
                for vf in feats:
                    marks = _fit_marks(sel_cells & rows[cells.q], cells, vf.codes, act, state.n_rows)
                    if marks is None:
                        continue
                    mean = _mean_of(sel_cells, cells, vf.codes, marks, state.n_rows)
                    candidates.append((r2(np.round(mean * 1e6).astype(np.int64)) - 0.004, "mean", sfit, vf, marks))
                candidates += soft.candidates(sfit, y, feats, cells, act, rows, order, r2)  # fractions, cuts
                candidates += extreme.candidates(state, y, arrays, feats, rows, r2)
    if not candidates:
        return None
    score, kind, sfit, vf, marks = max(candidates, key=lambda c: c[0])
    sel = _selector_expr(state, sfit, stem)
    reg = state.registry
    if kind == "aggregate":
        expr = L.Aggregate(sel, vf.expr, name=f"aggregate_{stem}")
        detail = f"copies {vf.name} from the key its selector picks"
    elif kind == "width":
        expr = L.SelectorWidth(sel, name=f"width_{stem}")
        detail = "counts the selected keys"
    elif kind == "above":
        mark = L.Map(soft.Threshold(marks), vf.expr, encoding=L.NUMERICAL, name=f"marks_{stem}")
        expr = L.Aggregate(sel, mark, encoding=L.NUMERICAL, name=f"mean_{stem}")
        detail = f"the fraction of the selected keys whose {vf.name} exceeds {marks!r}"
        kind = "mean"
    elif kind == "dist":
        expr = soft.dist_expr(sel, vf.expr, sorted((reg.values[c] for c in marks), key=repr), stem)
        detail = f"the fraction of each value of {vf.name} among the selected keys"
    elif kind in ("maximum", "minimum"):
        codes, order = marks
        default = extreme.default_value(state, vf, codes, act, kind[:3], order)
        op = L.Maximum if kind == "maximum" else L.Minimum
        value = vf.expr
        if order is not None:  # the head's own order of the values, not Python's
            value = L.Map(Table(state.table_name(f"{stem}_rank"), order, None), vf.expr, name=f"rank_{stem}")
        expr = op(sel, value, default=default, name=f"{kind[:3]}_{stem}")
        detail = f"takes the {'largest' if kind == 'maximum' else 'smallest'} {vf.name} among the selected keys"
    else:
        table = {reg.values[c]: m for c, m in marks.items()}
        mark = L.Map(Table(state.table_name(f"{stem}_marks"), table, 0), vf.expr, encoding=L.NUMERICAL,
                     name=f"marks_{stem}")
        expr = L.Aggregate(sel, mark, encoding=L.NUMERICAL, name=f"mean_{stem}")
        detail = f"averages marks of {vf.name} over the selected keys"
    step = Step(expr, [comp], kind, round(score, 4), f"{detail}; selector {sfit.kind} (row exactness {sfit.score:.3f})")
    state.add_feature(expr, layer + 0.5, comp)
    return step


def _copied(sel_cells, cells: F.Cells, codes: np.ndarray, n_rows: int) -> np.ndarray:
    """Per query row: the one code its selected keys share, -1 if none selected, -2 if they disagree."""
    kc = codes[cells.k].astype(np.float64)
    w = sel_cells.astype(np.float64)
    count = np.bincount(cells.q, weights=w, minlength=n_rows)
    lo = np.full(n_rows, np.inf)
    hi = np.full(n_rows, -np.inf)
    np.minimum.at(lo, cells.q[sel_cells], kc[sel_cells])
    np.maximum.at(hi, cells.q[sel_cells], kc[sel_cells])
    out = np.where(count == 0, -1, np.where(lo == hi, lo, -2))
    return np.nan_to_num(out, nan=-1, posinf=-1, neginf=-1).astype(np.int64)


def _fit_marks(sel_cells, cells: F.Cells, codes: np.ndarray, act: np.ndarray, n_rows: int) -> dict | None:
    """Marks m(v) in 0..1 such that the head's output is (nearly) linear in the mean mark of the selected
    keys: least squares of the output on the selected value distribution, then its main axis."""
    vals = np.unique(codes[codes >= 0])
    if len(vals) < 2 or len(vals) > 12:
        return None
    idx = np.searchsorted(vals, np.maximum(codes, 0))
    dist = np.zeros((n_rows, len(vals)))
    sel = sel_cells & (codes[cells.k] >= 0)
    np.add.at(dist, (cells.q[sel], idx[cells.k[sel]]), 1.0)
    count = dist.sum(1, keepdims=True)
    use = count[:, 0] > 0
    if use.sum() < len(vals) + 1:
        return None
    dist = dist[use] / count[use]
    M, *_ = np.linalg.lstsq(dist, act[use], rcond=None)  # [values, d_model]
    centred = M - M.mean(0)
    u = np.linalg.svd(centred, full_matrices=False)[2][0]
    proj = centred @ u  # [values]
    span = proj.max() - proj.min()
    if span < 1e-9:
        return None
    if abs(proj.min()) > abs(proj.max()):
        proj = -proj
    marks = (proj - proj.min()) / span
    return {int(v): round(float(m), 4) for v, m in zip(vals, marks)}


def _mean_of(sel_cells, cells: F.Cells, codes: np.ndarray, marks: dict, n_rows: int) -> np.ndarray:
    lut = np.zeros(int(codes.max()) + 2)
    for c, m in marks.items():
        lut[c] = m
    kc = codes[cells.k]
    w = sel_cells & (kc >= 0)
    total = np.bincount(cells.q, weights=np.where(w, lut[np.maximum(kc, 0)], 0.0), minlength=n_rows)
    count = np.bincount(cells.q, weights=w, minlength=n_rows)
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)




# -- pruning ----------------------------------------------------------------------------------------


def agreement(a: list[list], b: list[list], examples: list[Example]) -> float:
    """How much of the model's behaviour ``b`` the outputs ``a`` keep: the agreement at the scored
    positions, averaged over the values ``b`` outputs (each output value weighs the same, so a rare
    answer -- "balanced" among random bracket strings -- cannot be dropped as 1% noise)."""
    hits: dict = {}
    total: dict = {}
    for x, y, ex in zip(a, b, examples):
        for p, s in enumerate(ex.scored):
            if s:
                k = F.vkey(y[p])
                total[k] = total.get(k, 0) + 1
                hits[k] = hits.get(k, 0) + (F.vkey(x[p]) == k)
    return sum(hits[k] / total[k] for k in total) / max(len(total), 1)


def prune(probe: Probe, examples: list[Example], base: list[list], threshold: float = 0.005,
          keep_at: float = 0.99) -> tuple[list[Component], dict[Component, float]]:
    """The components the output needs (see the module docstring) and each one's ablation effect."""
    from glassformer.rasp.decompile.probe import hook_name

    means = probe.means(examples, {hook_name(c) for c in probe.components()})
    effect = {}
    for c in probe.components():
        effect[c] = 1 - agreement(probe.ablated(examples, [c], means), base, examples)
    # Backward elimination: drop components, least needed first, while the rest keep >= keep_at of the
    # outputs (single ablations miss redundancy: two heads doing one job each look unneeded alone).
    dropped: list[Component] = []
    for c in sorted(probe.components(), key=lambda c: (effect[c], -c[1], c[0] == "mlp")):
        if effect[c] >= threshold:
            continue
        if agreement(probe.ablated(examples, dropped + [c], means), base, examples) >= keep_at:
            dropped.append(c)
    kept = [c for c in probe.components() if c not in dropped]
    order = {c: i for i, c in enumerate(probe.components())}
    return sorted(kept, key=order.get), effect


@torch.no_grad()
def read_program(probe: Probe, examples: list[Example], components: list[Component]) -> tuple[list[Step], State]:
    """Steps 2 and 3 of the module docstring, on ``examples`` with the kept ``components``."""
    outputs = probe.outputs(examples)
    state = build_state(probe, examples, outputs)
    arrays = component_arrays(state, components) if components else {}
    steps = []
    for comp in components:
        if comp[0] == "head":
            step = read_head(state, comp, arrays[comp])
            steps += [step] if step is not None else []
        else:
            steps += mlp_read.read_mlp(state, comp, arrays[comp])
    steps.append(read_output(state))
    return steps, state
