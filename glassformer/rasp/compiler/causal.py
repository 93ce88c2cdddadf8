"""Causal compilation: which programs a decoder (causal self-attention) computes exactly.

A decoder's query at position q sees only the keys k <= q (and BOS, at position 0).  A compiled head
equals its RASP Aggregate when every key the selector can select lies at or before the query:

    S[q, k] = 1  implies  k <= q          for every input of 1..N tokens          (*)

Then masking the later keys changes nothing, and the decoder computes the program position by
position, each output depending only on the tokens so far (Tracr's ``causal=True``; Tracr does not
check (*), glassformer does).

(*) is decided statically, per Attend node of the graph:

* a selector that selects nothing satisfies it;
* one that selects everything (``length``, ``Select(..., TRUE)``) does not;
* a conjunction satisfies it when one of its clauses does: a clause ``pred(f(indices), g(indices))``
  whose keys and queries are element-wise functions of ``indices`` (and constants) only, and for which
  ``pred(f(k), g(q))`` is false for every pair of positions q < k < N.

Anything else (a clause on tokens alone, a ``|`` packed with tokens) may look ahead on some input, and
is refused with :class:`RaspCompileError` naming the operation and, where one exists, a pair of
positions it would select.  The usual fix is to add ``& Select(indices, indices, LEQ)`` to the selector.
"""

from __future__ import annotations

from glassformer.rasp.compiler.graph import Attend, Embedded, Graph, Node, SelectorIR, _toposort
from glassformer.rasp.errors import RaspCompileError

_NOT_POSITIONAL = object()  # a node whose value depends on more than the position


def check_causal(graph: Graph) -> None:
    """Raise :class:`RaspCompileError` unless every selector of ``graph`` satisfies (*)."""
    n = graph.max_len
    for node in graph.nodes:
        if isinstance(node.op, Attend):
            reason = _looks_ahead(node.op.selector, n)
            if reason is not None:
                name = node.origin or node.label
                raise RaspCompileError(name, f"causal=True needs every selector to select only keys at or before the "
                                             f"query (k <= q), but {reason}. Add `& Select(indices, indices, LEQ)` to "
                                             "the selector, or compile with causal=False")


def _looks_ahead(sel: SelectorIR, n: int) -> str | None:
    """None when the selector satisfies (*), else a reason."""
    if sel.constant is False:
        return None
    if sel.constant is True:
        return "it selects every position (e.g. `length`, which a causal model cannot know: use `indices + 1`, " \
               "the length so far)"
    witness = None
    for clause in sel.clauses:
        keys = _positional(clause.keys, n)
        queries = _positional(clause.queries, n)
        if keys is None or queries is None:
            continue
        ahead = next(((q, k) for q in range(n) for k in range(q + 1, n) if _holds(clause.pred, keys[k], queries[q])),
                     None)
        if ahead is None:
            return None
        witness = witness or ahead
    if witness is not None:
        return f"it selects key position {witness[1]} for query position {witness[0]}"
    return "no part of it compares positions (indices), so it may select a later key on some input"


def _holds(pred, key, query) -> bool:
    try:
        return bool(pred(key, query))
    except Exception:  # a predicate that raises is the interpreter's error, not a selection
        return False


def _positional(node: Node, n: int) -> list | None:
    """The node's value at positions 0..n-1 if it depends on the position alone, else None."""
    chain = _toposort([node])  # inputs first
    values = []
    for p in range(n):
        memo: dict[int, object] = {}
        for m in chain:
            memo[id(m)] = _at(m, p, memo)
        values.append(memo[id(node)])
    return None if any(v is _NOT_POSITIONAL for v in values) else values


def _at(node: Node, p: int, memo: dict):
    """The node's value at position p, its inputs' values in ``memo`` (or _NOT_POSITIONAL)."""
    op = node.op
    if isinstance(op, Embedded):
        return p if op.kind == "indices" else op.value if op.kind == "constant" else _NOT_POSITIONAL
    if isinstance(op, Attend):
        return _NOT_POSITIONAL
    args = [memo[id(a)] for a in op.args]
    if any(a is _NOT_POSITIONAL for a in args):
        return _NOT_POSITIONAL
    try:
        return op.fn(*args)
    except Exception:
        return _NOT_POSITIONAL
