"""Stage 3: which operation becomes attention, which an MLP, and which needs no block of its own.

Attend nodes are attention heads and embedded nodes come from the embedding.  For element-wise nodes
this stage decides, greedily and until nothing changes, which ones to **inline**:

* an element-wise node read only by other element-wise nodes is fused into them (one MLP computes
  the composition), as long as the fused function still has an exact construction (see ``mlp.py``)
  over at most ``TABLE_LIMIT`` input combinations;
* a Map of a categorical SOp read only by attention is **folded** into the heads' weights: a function
  of a one-hot vector is linear in it, so ``Select(f(x), q, p)`` is ``Select(x, q, p(f(.), .))`` with
  another W_K, and ``Aggregate(s, f(x))`` reads x through another W_V.

Before that, an element-wise node with several numerical inputs that is not a sum of one-input
functions gets categorical copies of all but one of them (an MLP can gate a lookup on categorical
inputs, but not on a second number).  Every node that is not inlined is *materialized*: it gets
residual dimensions and one block (embedding, head or MLP) computes it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable

from glassformer.rasp.compiler.graph import Attend, ElementWise, Graph, Node
from glassformer.rasp.compiler.values import TABLE_LIMIT, ValueSet, combinations_count
from glassformer.rasp.errors import RaspCompileError


@dataclass(eq=False)
class Folded:
    """A materialized categorical ``node`` read through ``fn`` (identity unless a Map was folded in)."""

    node: Node
    fn: Callable[[Any], Any]
    folded: tuple[str, ...] = ()  # labels of the inlined nodes

    def __call__(self, x):
        return self.fn(x)


@dataclass(eq=False)
class MLPTask:
    node: Node
    inputs: tuple[Node, ...]
    fn: Callable[..., Any]
    strategy: str  # "table" | "lookup" | "additive"
    fused: tuple[str, ...] = ()  # labels of the nodes inlined into this MLP
    const: float = 0.0  # additive: out = const + sum parts[i](x_i)
    parts: list = field(default_factory=list)


@dataclass(eq=False)
class HeadTask:
    node: Node
    clauses: list[tuple[Folded, Folded, Callable]]
    value: Folded | None


@dataclass
class Assignment:
    graph: Graph
    values: dict[str, ValueSet]
    materialized: list[Node]  # topological order
    mlps: dict[str, MLPTask]
    heads: dict[str, HeadTask]
    inlined: set[str]

    def deps(self, node: Node) -> list[Node]:
        """The materialized nodes a block reads."""
        if node.label in self.mlps:
            return list(self.mlps[node.label].inputs)
        if node.label in self.heads:
            task = self.heads[node.label]
            nodes = [f.node for k, q, _ in task.clauses for f in (k, q)]
            if task.value is not None:
                nodes.append(task.value.node)
            return list(dict.fromkeys(nodes))
        return []


def assign(graph: Graph, values: dict[str, ValueSet], vocab: list, max_len: int) -> Assignment:
    """Decide inlining and build the MLP and head tasks (mutates ``graph`` and ``values`` by adding
    categorical copies where needed)."""
    _lower_numerical_inputs(graph, values, vocab, max_len)
    inlined = _fuse(graph, values)
    materialized = [n for n in graph.nodes if n.label not in inlined]
    mlps, heads = {}, {}
    for node in materialized:
        if isinstance(node.op, ElementWise):
            inputs, fn, fused = effective(node, inlined)
            task = _mlp_task(node, inputs, fn, values)
            if task is None:
                raise RaspCompileError(node.origin or node.label, _infeasible_reason(node, inputs, values))
            task.fused = fused
            mlps[node.label] = task
        elif isinstance(node.op, Attend):
            heads[node.label] = _head_task(node, inlined)
    return Assignment(graph, values, materialized, mlps, heads, inlined)


# -- numerical inputs -----------------------------------------------------------------------------


def _lower_numerical_inputs(graph: Graph, values: dict[str, ValueSet], vocab: list, max_len: int) -> None:
    copies: dict[str, Node] = {}
    changed = False
    for node in list(graph.nodes):
        op = node.op
        if not isinstance(op, ElementWise):
            continue
        args = list(op.args)
        nums = [a for a in args if a.is_numerical]
        if not nums or _mlp_task(node, tuple(args), op.fn, values, linear=op.linear) is not None:
            continue
        finite = [a for a in nums if values[a.label].finite]
        if not finite:
            raise RaspCompileError(node.origin or node.label, _infeasible_reason(node, tuple(args), values))
        keep = max(finite, key=lambda a: len(values[a.label]))
        for i, a in enumerate(args):
            if a.is_numerical and a is not keep:
                if not values[a.label].finite:
                    raise RaspCompileError(node.origin or node.label, _infeasible_reason(node, tuple(args), values))
                if a.label not in copies:
                    copy = Node(_fresh(graph, f"{a.label}_cat"), "categorical", ElementWise(lambda x: x, (a,)), a.origin)
                    graph.nodes.append(copy)
                    values[copy.label] = ValueSet.of(values[a.label].values)
                    copies[a.label] = copy
                args[i] = copies[a.label]
        node.op = ElementWise(op.fn, tuple(args))
        changed = True
    if changed:
        graph.refresh()


def _fresh(graph: Graph, label: str) -> str:
    taken = {n.label for n in graph.nodes} | {"bos"}
    name, k = label, 2
    while name in taken:
        name, k = f"{label}_{k}", k + 1
    return name


# -- fusion ---------------------------------------------------------------------------------------


def effective(node: Node, inlined: set[str]) -> tuple[tuple[Node, ...], Callable, tuple[str, ...]]:
    """The materialized inputs of ``node``'s computation with ``inlined`` nodes expanded, the fused
    function of those inputs, and the labels expanded."""
    leaves: list[Node] = []
    expanded: list[str] = []
    order: list[Node] = []  # the expanded nodes, inputs before their readers (then ``node``)
    seen: set[int] = set()
    stack = [(node, iter(node.op.args))]  # depth first, iteratively: chains of thousands of Maps are fine
    while stack:
        n, args = stack[-1]
        a = next(args, None)
        if a is None:
            stack.pop()
            order.append(n)
        elif a.label in inlined and isinstance(a.op, ElementWise):
            if id(a) not in seen:
                seen.add(id(a))
                expanded.append(a.label)
                stack.append((a, iter(a.op.args)))
        elif all(a is not x for x in leaves):
            leaves.append(a)
    leaf_ids = [id(x) for x in leaves]

    def fn(*xs):
        env = dict(zip(leaf_ids, xs))
        for n in order:
            env[id(n)] = n.op.fn(*(env[id(a)] for a in n.op.args))
        return env[id(node)]

    return tuple(leaves), fn, tuple(expanded)


def _fold(node: Node, inlined: set[str]) -> Folded | None:
    """``node`` as a function of one materialized categorical node, if it is inlined that way."""
    if node.label not in inlined:
        return Folded(node, lambda x: x)
    inputs, fn, expanded = effective(node, inlined)
    if len(inputs) != 1 or inputs[0].is_numerical:
        return None
    return Folded(inputs[0], fn, (node.label,) + expanded)


def _fuse(graph: Graph, values: dict[str, ValueSet]) -> set[str]:
    """Greedy inlining: take a candidate when the result is still compilable and it either saves a
    layer or does not grow the MLPs (counted in lookup-table entries) by more than it saves in
    residual dimensions."""
    inlined: set[str] = set()
    candidates = [n for n in graph.nodes if isinstance(n.op, ElementWise) and n is not graph.output]
    cache: dict = {}
    layers, cost = _layers_and_cost(graph, values, inlined)
    changed = True
    while changed:
        changed = False
        for cand in candidates:
            if cand.label in inlined:
                continue
            trial = inlined | {cand.label}
            if not _consistent(graph, values, trial, cache):
                continue
            t_layers, t_cost = _layers_and_cost(graph, values, trial)
            saved_dims = len(values[cand.label]) if values[cand.label].finite else 1
            if t_layers < layers or (t_layers == layers and t_cost <= cost + 4 * saved_dims):
                inlined, layers, cost = trial, t_layers, t_cost
                changed = True
    return inlined


def _layers_and_cost(graph: Graph, values: dict[str, ValueSet], inlined: set[str]) -> tuple[int, int]:
    """Layers the ASAP schedule needs with ``inlined`` fused away, and the MLPs' total table entries."""
    sub: dict[str, int] = {}
    cost = 0
    for node in graph.nodes:
        if node.label in inlined:
            continue
        if isinstance(node.op, ElementWise):
            deps, _, _ = effective(node, inlined)
            sizes = [values[d.label] for d in deps]
            per_entry = 2 if any(d.is_numerical for d in deps) else 1  # a lookup step is a pair of units
            cost += per_entry * combinations_count(sizes) if all(v.finite for v in sizes) else 2 * len(deps)
            kind = 1
        elif isinstance(node.op, Attend):
            deps = [f.node for f in (_fold(x, inlined) for x in _attend_inputs(node)) if f is not None]
            kind = 0
        else:
            sub[node.label] = -1
            continue
        after = max((sub.get(d.label, -1) for d in deps), default=-1)
        s = after + 1
        if s % 2 != kind:
            s += 1
        sub[node.label] = s
    return max((v // 2 + 1 for v in sub.values() if v >= 0), default=1), cost


def _consistent(graph: Graph, values: dict[str, ValueSet], inlined: set[str], cache: dict) -> bool:
    """Every materialized element-wise node still has a construction, and every inlined node read by
    a head folds into it."""
    for node in graph.nodes:
        if node.label in inlined:
            continue
        if isinstance(node.op, ElementWise):
            inputs, fn, expanded = effective(node, inlined)
            key = (node.label, tuple(i.label for i in inputs), expanded)
            if key not in cache:
                cache[key] = _mlp_task(node, inputs, fn, values) is not None
            if not cache[key]:
                return False
        elif isinstance(node.op, Attend):
            for user in _attend_inputs(node):
                if user.label in inlined and _fold(user, inlined) is None:
                    return False
    return True


def _attend_inputs(node: Node) -> list[Node]:
    op: Attend = node.op
    nodes = [x for c in op.selector.clauses for x in (c.keys, c.queries)]
    if op.value is not None:
        nodes.append(op.value)
    return nodes


# -- tasks ----------------------------------------------------------------------------------------


def _mlp_task(node: Node, inputs: tuple[Node, ...], fn: Callable, values: dict[str, ValueSet],
              linear: tuple | None = None) -> MLPTask | None:
    """An exact construction for ``fn`` over ``inputs``, or None."""
    sets = [values[i.label] for i in inputs]
    nums = [i for i in inputs if i.is_numerical]
    finite = all(s.finite for s in sets)
    size = combinations_count(sets) if finite else None
    if not nums and finite and size <= TABLE_LIMIT:
        return MLPTask(node, inputs, fn, "table")
    if len(nums) == 1 and finite and size <= TABLE_LIMIT:
        return MLPTask(node, inputs, fn, "lookup")
    if not node.is_numerical:
        return None
    parts = _additive_parts(inputs, sets, fn, linear if linear is not None else getattr(node.op, "linear", None)
                            if tuple(inputs) == tuple(node.op.args) else None)
    if parts is None:
        return None
    const, fns = parts
    return MLPTask(node, inputs, fn, "additive", const=const, parts=fns)


def _additive_parts(inputs, sets: list[ValueSet], fn: Callable, linear: tuple | None):
    """(const, [part_i]) with fn(x) = const + sum_i part_i(x_i), checked on every combination; a part is
    a function of one value, or ("linear", a) for structurally linear inputs."""
    if linear is not None and all(i.is_numerical for i in inputs):
        return float(linear[0]), [("linear", float(a)) for a in linear[1:]]
    if not all(s.finite for s in sets) or combinations_count(sets) > TABLE_LIMIT:
        return None
    if any(None in s.values for s in sets):
        return None  # a None input makes the result 0, which a sum of parts cannot do
    base = [s.values[0] for s in sets]
    try:
        const = float(fn(*base))
        tables = []
        for i, s in enumerate(sets):
            tables.append({v: float(fn(*(base[:i] + [v] + base[i + 1:]))) - const for v in s.values})
        for combo in itertools.product(*(s.values for s in sets)):
            want = float(fn(*combo))
            got = const + sum(t[v] for t, v in zip(tables, combo))
            if abs(want - got) > 1e-9 * (1.0 + abs(want)):
                return None
    except Exception:
        return None
    return const, [lambda v, t=t: t[v] for t in tables]


def _infeasible_reason(node: Node, inputs: tuple[Node, ...], values: dict[str, ValueSet]) -> str:
    sets = [values[i.label] for i in inputs]
    desc = ", ".join(f"{i.label} ({i.encoding}, {len(s) if s.finite else 'no finite'} values)" for i, s in zip(inputs, sets))
    if any(not s.finite for s in sets):
        return (f"an MLP needs the finite value set of its inputs [{desc}]; a numerical input with too many values "
                "can only enter a numerical output linearly (x + y, 2 * x, ...)")
    return (f"its inputs [{desc}] have {combinations_count(sets)} combinations, more than the {TABLE_LIMIT} an exact "
            "lookup-table MLP may use; use a smaller vocabulary or max_len")


def _head_task(node: Node, inlined: set[str]) -> HeadTask:
    op: Attend = node.op
    clauses = []
    for c in op.selector.clauses:
        keys, queries = _fold(c.keys, inlined), _fold(c.queries, inlined)
        if keys is None or queries is None:  # guaranteed by _consistent
            raise RaspCompileError(node.label, "internal: a selector input could not be folded")
        clauses.append((keys, queries, c.pred))
    value = _fold(op.value, inlined) if op.value is not None else None
    return HeadTask(node, clauses, value)
