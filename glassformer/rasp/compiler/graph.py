"""Stage 1: program -> graph.  The RASP program becomes a DAG of three kinds of node, each of which a
transformer computes in one place:

    Embedded     tokens, indices, constants              -> the embedding (W_E, W_pos)
    ElementWise  Map, SequenceMap, decoders              -> an MLP (or folded into a head's weights)
    Attend       Aggregate, SelectorWidth, Max, Min      -> an attention head

Each RASP primitive lowers itself (its class's ``lower``, in ``language.py``) with the builder's ``node``,
``embedded``, ``elementwise``, ``attend``, ``width`` and ``selector``; selectors give their ``formula``.
Lowering rules applied on the way (each keeps the interpreter's semantics, see ``evaluate_graph``):

* ``length`` and any derived primitive -> its ``expand()`` (length: SelectorWidth(Select(tokens, tokens, TRUE)));
* ``SelectorWidth(s)`` -> an Attend in "width" mode that writes 1/(w+1) (the weight left on BOS), and an
                         ElementWise decoder w = 1/x - 1 that the MLP computes;
* selectors           -> a conjunction of clauses ``pred(key, query)`` over one (keys, queries) pair each:
                         ``~`` is pushed into the comparisons, ``&`` becomes separate clauses (their scores
                         add), a ``|`` over several SOps packs them into tuple SOps first;
* numerical keys or queries -> a categorical copy (attention compares one-hot vectors);
* constants fold: a Map of a Full is a Full, a SequenceMap with a Full argument a Map.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable

from glassformer.rasp import language as L
from glassformer.rasp.errors import RaspCompileError

CATEGORICAL, NUMERICAL = L.CATEGORICAL, L.NUMERICAL


# -- nodes ----------------------------------------------------------------------------------------


@dataclass(eq=False)
class Node:
    """A SOp in the graph: a unique ``label`` (its residual-stream name), an encoding, and the op making it."""

    label: str
    encoding: str
    op: Any  # Embedded | ElementWise | Attend
    origin: str = ""  # the RASP expression it came from (for error messages)
    values_hint: tuple | None = None  # a value set known from the lowering (e.g. length: 1..N)

    @property
    def inputs(self) -> tuple[Node, ...]:
        return self.op.inputs

    @property
    def is_numerical(self) -> bool:
        return self.encoding == NUMERICAL

    def __repr__(self) -> str:
        return f"Node({self.label!r}, {self.encoding}, {type(self.op).__name__})"


@dataclass(eq=False)
class Embedded:
    """tokens, indices, or a constant: written by the embedding."""

    kind: str  # "tokens" | "indices" | "constant"
    value: Any = None  # the constant

    @property
    def inputs(self):
        return ()


@dataclass(eq=False)
class ElementWise:
    """``fn(*inputs)`` at every position.  ``fn`` already follows RASP's None rule."""

    fn: Callable[..., Any]
    args: tuple[Node, ...]
    linear: tuple[float, ...] | None = None  # fn(x) = linear[0] + sum(linear[i+1] * x_i), if known structurally

    @property
    def inputs(self):
        return self.args


@dataclass(eq=False)
class Clause:
    """``pred(key, query)`` between one keys node and one queries node; None never satisfies it."""

    keys: Node
    queries: Node
    pred: Callable[[Any, Any], bool]


@dataclass(eq=False)
class SelectorIR:
    """A conjunction of clauses (selected iff every clause holds), or a constant selector."""

    clauses: tuple[Clause, ...] = ()
    constant: bool | None = None  # True: selects everything; False: nothing

    @property
    def inputs(self) -> tuple[Node, ...]:
        return tuple(itertools.chain.from_iterable((c.keys, c.queries) for c in self.clauses))


MODES = ("copy", "mean", "width", "max", "min")


@dataclass(eq=False)
class Attend:
    """An attention head.  ``mode``: copy (categorical value), mean (numerical), width (writes 1/(w+1)),
    max / min (the extreme selected value)."""

    selector: SelectorIR
    value: Node | None
    mode: str
    default: Any = None

    @property
    def inputs(self):
        return self.selector.inputs + ((self.value,) if self.value is not None else ())


@dataclass
class Graph:
    """The program as nodes in topological order (inputs first); ``output`` is the program's node."""

    nodes: list[Node]
    output: Node
    max_len: int
    consumers: dict[int, list[Node]] = field(default_factory=dict)

    def __post_init__(self):
        self.refresh()

    def refresh(self) -> None:
        """Recompute ``consumers`` and drop nodes the output does not need (after rewrites)."""
        needed: set[int] = set()
        stack = [self.output]
        while stack:
            n = stack.pop()
            if id(n) in needed:
                continue
            needed.add(id(n))
            stack.extend(n.inputs)
        self.nodes = _toposort([n for n in self.nodes if id(n) in needed])
        self.consumers = {id(n): [] for n in self.nodes}
        for n in self.nodes:
            for i in dict.fromkeys(n.inputs):  # each consumer once
                self.consumers[id(i)].append(n)

    def node(self, label: str) -> Node:
        for n in self.nodes:
            if n.label == label:
                return n
        raise KeyError(label)


def _toposort(nodes: list[Node]) -> list[Node]:
    """Inputs before readers, in the order of ``nodes`` otherwise (iterative: any depth)."""
    order, seen = [], set()
    for root in nodes:
        stack = [(root, False)]
        while stack:
            n, done = stack.pop()
            if done:
                order.append(n)
                continue
            if id(n) in seen:
                continue
            seen.add(id(n))
            stack.append((n, True))
            stack.extend((i, False) for i in reversed(n.inputs) if id(i) not in seen)
    return order


# -- RASP -> graph --------------------------------------------------------------------------------


def build_graph(program: L.SOp, max_len: int) -> Graph:
    """Translate ``program`` into a :class:`Graph`, applying the lowering rules in the module docstring."""
    if not isinstance(program, L.SOp):
        raise RaspCompileError(getattr(program, "name", str(program)), "only a SOp (not a selector) can be compiled")
    return _Builder(max_len).build(program)


class _Builder:
    def __init__(self, max_len: int):
        self.max_len = max_len
        self.nodes: list[Node] = []
        self.by_id: dict[int, Node] = {}
        self.labels: set[str] = {"bos"}  # "bos" is the residual dimension marking the BOS position
        self.shared: dict[Any, Node] = {}  # one tokens / indices node per encoding

    def label(self, wanted: str) -> str:
        name, k = wanted, 2
        while name in self.labels:
            name, k = f"{wanted}_{k}", k + 1
        self.labels.add(name)
        return name

    def add(self, label: str, encoding: str, op: Any, origin: str, hint: tuple | None = None) -> Node:
        node = Node(self.label(label), encoding, op, origin, hint)
        self.nodes.append(node)
        return node

    def build(self, program: L.SOp) -> Graph:
        for expr in L.walk(program):
            if isinstance(expr, L.SOp):
                self.by_id[expr.id] = self.sop(expr)
        return Graph(self.nodes, self.by_id[program.id], self.max_len)

    # -- SOps -------------------------------------------------------------------------------------

    def sop(self, e: L.SOp) -> Node:
        derived = L.expansion(e)
        if derived is not None:  # a derived primitive (length): lower its definition
            for x in L.walk(derived):
                if isinstance(x, L.SOp) and x.id not in self.by_id:
                    self.by_id[x.id] = self.sop(x)
            return self.by_id[derived.id]
        return e.lower(self)  # each primitive lowers itself (language.py), with the methods below

    # -- what a primitive's ``lower`` builds with ------------------------------------------------------

    def node(self, child: L.SOp) -> Node:
        """The node of an already lowered child SOp."""
        return self.by_id[child.id]

    def embedded(self, e: L.SOp, kind: str, value: Any = None) -> Node:
        """Written by the embedding: ``kind`` "tokens" / "indices" (one node per encoding) or "constant"."""
        if kind == "constant":
            label = e.name if e._name is not None else f"full_{_ident(value)}"
            return self.add(label, e.encoding, Embedded("constant", value), e.name)
        key = (kind, e.encoding)
        if key not in self.shared:
            self.shared[key] = self.add(e.name, e.encoding, Embedded(kind), e.name)
        return self.shared[key]

    def attend(self, e: L.SOp, selector: SelectorIR, value: Node | None, mode: str, default: Any = None) -> Node:
        """An attention head in one of the ``MODES`` (a new mode also needs values.py, attention.py, precision.py)."""
        if mode not in MODES:
            raise RaspCompileError(e.name, f"attention mode {mode!r} is not one of {', '.join(MODES)}")
        return self.add(e.name, e.encoding, Attend(selector, value, mode, default), e.name)

    def width(self, sel: SelectorIR, name: str, encoding: str, origin: str, hint_w=None) -> Node:
        """SelectorWidth: an Attend writing 1/(w+1), then an ElementWise decoding w."""
        if hint_w is None:  # all-selecting: w = n >= 1; nothing-selecting: w = 0
            hint_w = {True: range(1, self.max_len + 1), False: (0,)}.get(sel.constant, range(0, self.max_len + 1))
        ws = hint_w
        raw = self.add(f"1/({name}+1)", NUMERICAL, Attend(sel, None, "width"), origin,
                       hint=tuple(sorted({1.0 / (w + 1) for w in ws})))
        return self.add(name, encoding, ElementWise(decode_width, (raw,)), origin)

    def elementwise(self, e: L.SOp, args: list[Node], f: Callable | None = None) -> Node:
        """An MLP computing ``f(*args)`` (default ``e.f``) at every position, under RASP's None rule."""
        f = e.f if f is None else f
        numerical_out = e.is_numerical
        fn = none_rule(f, numerical_out)
        linear = _structural_linear(f, args)
        if all(isinstance(a.op, Embedded) and a.op.kind == "constant" for a in args):
            value = fn(*(a.op.value for a in args))  # constant folding
            if numerical_out:
                value = L._check_number(value, f"{type(e).__name__} {e.name}")
            label = e.name if e._name is not None else f"full_{_ident(value)}"
            return self.add(label, e.encoding, Embedded("constant", value), e.name)
        if len(args) == 2 and any(isinstance(a.op, Embedded) and a.op.kind == "constant" for a in args):
            const_first = isinstance(args[0].op, Embedded) and args[0].op.kind == "constant"
            c = (args[0] if const_first else args[1]).op.value
            other = args[1] if const_first else args[0]
            f2 = fn
            fn = (lambda x, f2=f2, c=c: f2(c, x)) if const_first else (lambda x, f2=f2, c=c: f2(x, c))
            args, linear = [other], None
        return self.add(e.name, e.encoding, ElementWise(fn, tuple(args), linear), e.name)

    # -- selectors --------------------------------------------------------------------------------

    def selector(self, s: L.Selector) -> SelectorIR:
        formula = self.formula(s, negate=False)
        if formula == ("const", True):
            return SelectorIR(constant=True)
        if formula == ("const", False):
            return SelectorIR(constant=False)
        conjuncts = formula[1] if formula[0] == "and" else [formula]
        # leaves over the same (keys, queries) pair merge into one clause; anything with an "or" over
        # several pairs becomes one clause over tuple-packed keys and queries
        groups: dict[tuple[int, int], list] = {}
        clauses: list[Clause] = []
        for c in conjuncts:
            pairs = _pairs(c)
            if len(pairs) == 1:
                groups.setdefault(next(iter(pairs)), []).append(c)
            else:
                clauses.append(self.packed_clause(c, s.name))
        for (kid, qid), parts in groups.items():
            keys, queries = self.categorical(self.by_id[kid], s.name), self.categorical(self.by_id[qid], s.name)
            clauses.append(Clause(keys, queries, _formula_pred(("and", parts), {kid: None}, {qid: None})))
        return SelectorIR(tuple(clauses))

    def formula(self, s: L.Selector, negate: bool):
        """("leaf", select, negate) / ("and"|"or", [parts]) / ("const", bool), with negations at the leaves
        (each selector class gives its own, ``Selector.formula``), nested and/or flattened, constants folded."""
        return _normalise(s.formula(negate))

    def packed_clause(self, formula, name: str) -> Clause:
        keys = list(dict.fromkeys(leaf[1].keys.id for leaf in _leaves(formula)))
        queries = list(dict.fromkeys(leaf[1].queries.id for leaf in _leaves(formula)))
        key_node = self.pack([self.by_id[k] for k in keys], f"{name}_keys", name)
        query_node = self.pack([self.by_id[q] for q in queries], f"{name}_queries", name)
        key_pos = {k: i for i, k in enumerate(keys)} if len(keys) > 1 else {keys[0]: None}
        query_pos = {q: i for i, q in enumerate(queries)} if len(queries) > 1 else {queries[0]: None}
        return Clause(key_node, query_node, _formula_pred(formula, key_pos, query_pos))

    def pack(self, nodes: list[Node], label: str, origin: str) -> Node:
        """Several SOps as one categorical SOp of tuples (None stays inside the tuple)."""
        if len(nodes) == 1:
            return self.categorical(nodes[0], origin)
        return self.add(label, CATEGORICAL, ElementWise(lambda *xs: tuple(xs), tuple(nodes)), origin)

    def categorical(self, node: Node, origin: str) -> Node:
        """A categorical version of ``node`` for use as keys or queries."""
        if not node.is_numerical:
            return node
        key = ("categorical", id(node))
        if key not in self.shared:
            self.shared[key] = self.add(f"{node.label}_cat", CATEGORICAL, ElementWise(lambda x: x, (node,)), origin)
        return self.shared[key]


def _normalise(formula):
    """A selector's formula with nested and/or flattened and constants folded (True & x = x, False | x = x)."""
    if formula[0] not in ("and", "or"):
        return formula
    is_and = formula[0] == "and"
    flat = []
    for p in (_normalise(p) for p in formula[1]):
        if p[0] == formula[0]:
            flat.extend(p[1])
        else:
            flat.append(p)
    consts = [p for p in flat if p[0] == "const"]
    flat = [p for p in flat if p[0] != "const"]
    if is_and:
        if any(not c[1] for c in consts):
            return ("const", False)
    elif any(c[1] for c in consts):
        return ("const", True)
    if not flat:
        return ("const", is_and)
    return flat[0] if len(flat) == 1 else (formula[0], flat)


def _ident(value: Any) -> str:
    text = str(value)
    return "".join(c if c.isalnum() or c == "_" else "_" for c in text)[:24] or "value"


def _leaves(formula):
    if formula[0] == "leaf":
        yield formula
    else:
        for p in formula[1]:
            yield from _leaves(p)


def _pairs(formula) -> set[tuple[int, int]]:
    return {(leaf[1].keys.id, leaf[1].queries.id) for leaf in _leaves(formula)}


def _formula_pred(formula, key_pos: dict, query_pos: dict) -> Callable[[Any, Any], bool]:
    """A predicate (key, query) -> bool for a formula over leaves; keys / queries may be packed tuples
    (``*_pos`` maps a leaf's SOp id to its slot, or None when unpacked)."""

    def pick(value, pos):
        return value if pos is None else value[pos]

    def ev(f, k, q) -> bool:
        tag = f[0]
        if tag == "leaf":
            _, sel, negate = f
            kv, qv = pick(k, key_pos[sel.keys.id]), pick(q, query_pos[sel.queries.id])
            if kv is None or qv is None:
                return False
            return sel.predicate(kv, qv) != negate
        if tag == "and":
            return all(ev(p, k, q) for p in f[1])
        if tag == "or":
            return any(ev(p, k, q) for p in f[1])
        return bool(f[1])

    def pred(k, q) -> bool:
        if k is None or q is None:  # an unpacked None (a packed tuple is never None)
            return False
        return ev(formula, k, q)

    return pred


# -- helpers shared by later stages ---------------------------------------------------------------


def none_rule(f: Callable, numerical_out: bool) -> Callable:
    """``f`` wrapped in RASP's rule: any None argument gives None (0 for a numerical result), f not called."""

    def fn(*xs):
        for x in xs:
            if x is None:
                return 0 if numerical_out else None
        y = f(*xs)
        if numerical_out and isinstance(y, bool):
            y = int(y)
        return y

    return fn


def decode_width(x: float) -> int:
    """The selector width w from the weight 1/(w+1) that attention left on BOS."""
    return int(round(1.0 / x - 1.0))


def _structural_linear(f: Callable, args: list[Node]) -> tuple[float, ...] | None:
    """Coefficients when ``f`` is an operator-built affine map of numerical args (x + c, c * x, x - y, ...)."""
    import operator

    from glassformer.rasp.operators import Op1 as _Op1
    from glassformer.rasp.operators import Op2 as _Op2

    if not all(a.is_numerical for a in args):
        return None
    coefficients = getattr(f, "linear", None)  # a callable that declares itself affine (tracr.LinearSequenceMap)
    if isinstance(coefficients, tuple) and len(coefficients) == len(args) + 1:
        return tuple(float(c) for c in coefficients)
    if isinstance(f, _Op2) and f.fn in (operator.add, operator.sub):
        return (0.0, 1.0, 1.0 if f.fn is operator.add else -1.0)
    if isinstance(f, _Op1):
        c = f.constant
        if f.unary and f.fn is operator.neg:
            return (0.0, -1.0)
        if not L.is_number(c):
            return None
        if f.fn is operator.add:
            return (float(c), 1.0)
        if f.fn is operator.sub:
            return (float(c), -1.0) if f.reflected else (-float(c), 1.0)
        if f.fn is operator.mul:
            return (0.0, float(c))
        if f.fn is operator.truediv and not f.reflected and c != 0:
            return (0.0, 1.0 / float(c))
    return None


# -- reference semantics of the graph (for testing the lowering) ----------------------------------


def evaluate_graph(graph: Graph, xs: list) -> dict[str, list]:
    """Run the graph directly on ``xs`` (no weights): values of every node by label.  Attend nodes in
    width mode give 1/(w+1); everything else must equal the interpreter on the RASP program."""
    import math

    n = len(xs)
    vals: dict[int, list] = {}

    def matrix(sel: SelectorIR) -> list[list[bool]]:
        if sel.constant is not None:
            return [[sel.constant] * n for _ in range(n)]
        m = [[True] * n for _ in range(n)]
        for c in sel.clauses:
            ks, qs = vals[id(c.keys)], vals[id(c.queries)]
            for q in range(n):
                for k in range(n):
                    m[q][k] = m[q][k] and c.pred(ks[k], qs[q])
        return m

    for node in graph.nodes:
        op = node.op
        if isinstance(op, Embedded):
            out = list(xs) if op.kind == "tokens" else list(range(n)) if op.kind == "indices" else [op.value] * n
        elif isinstance(op, ElementWise):
            cols = [vals[id(a)] for a in op.args]
            out = [op.fn(*row) for row in zip(*cols)] if cols else []
        else:
            m = matrix(op.selector)
            values = vals[id(op.value)] if op.value is not None else None
            out = []
            for q in range(n):
                sel = [k for k in range(n) if m[q][k]]
                if op.mode == "width":
                    out.append(1.0 / (len(sel) + 1))
                    continue
                picked = [values[k] for k in sel]
                if op.mode in ("max", "min"):
                    picked = [v for v in picked if v is not None]
                if not picked:
                    out.append(op.default)
                elif op.mode == "mean":
                    out.append(math.fsum(picked) / len(picked))
                elif op.mode == "copy":
                    out.append(picked[0])
                else:
                    out.append(max(picked) if op.mode == "max" else min(picked))
        vals[id(node)] = out
    return {node.label: vals[id(node)] for node in graph.nodes}
