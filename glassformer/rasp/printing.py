"""Show a RASP program as Python code, as a text graph, or as Graphviz DOT.

    to_code(program)   one assignment per operation, children first -- a program you could paste back
    to_graph(program)  one line per operation with its inputs, grouped by depth (the graph's layers)
    to_dot(program)    the same graph for Graphviz (``dot -Tpng``)
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from typing import Callable

from glassformer.rasp import language as L


def describe_function(f: Callable) -> str:
    """Readable source for a function: a lambda's own text where it can be found, else its name."""
    source = getattr(f, "source", None)
    if isinstance(source, str):
        return source
    name = getattr(f, "__name__", None)
    if name == "<lambda>":
        text = _lambda_source(f)
        if text:
            return text
    if name:
        return name
    return type(f).__name__


def _lambda_source(f: Callable) -> str | None:
    try:
        lines, _ = inspect.getsourcelines(f)
    except (OSError, TypeError):
        return None
    text = textwrap.dedent("".join(lines))
    for candidate in (text, text.strip().rstrip(","), "(" + text.strip().rstrip(",") + ")"):
        try:
            tree = ast.parse(candidate)
        except SyntaxError:
            continue
        lambdas = [node for node in ast.walk(tree) if isinstance(node, ast.Lambda)]
        n_args = f.__code__.co_argcount
        lambdas = [lam for lam in lambdas if len(lam.args.args) == n_args]
        if len(lambdas) == 1:
            return " ".join(ast.get_source_segment(candidate, lambdas[0]).split())
        return None
    return None


_PRIMITIVES = (L.Tokens, L.Indices, L.Length)  # each written as its kind (tokens, indices, length): no definition line


def expr_to_code(expr: L.RASPExpr) -> str:
    """The right-hand side that builds ``expr`` from its children's names: its class's ``to_code``
    (``Map(lambda x: x + 1, tokens)``, ``Select(tokens, tokens, EQ)``, ``~select_2``, ...)."""
    return expr.to_code()


def to_code(program: L.RASPExpr) -> str:
    """The program as Python statements, one operation per line, ending with the program's own name."""
    lines = []
    for expr in L.walk(program):
        if isinstance(expr, _PRIMITIVES) and expr.name == expr.kind and not expr.is_numerical:
            continue  # the primitives need no definition
        lines.append(f"{expr.name} = {expr_to_code(expr)}")
    return "\n".join(lines) if lines else program.name


def depths(program: L.RASPExpr) -> dict[int, int]:
    """Depth of every expression (primitives 0, others 1 + the deepest child), by id."""
    depth: dict[int, int] = {}
    for expr in L.walk(program):
        depth[expr.id] = 1 + max((depth[c.id] for c in expr.children), default=-1)
    return depth


def to_graph(program: L.RASPExpr) -> str:
    """A text drawing of the program's graph, one line per node, grouped by depth."""
    depth = depths(program)
    by_depth: dict[int, list[L.RASPExpr]] = {}
    for expr in L.walk(program):
        by_depth.setdefault(depth[expr.id], []).append(expr)
    out = []
    for d in sorted(by_depth):
        out.append(f"depth {d}:")
        for expr in by_depth[d]:
            enc = f" [{expr.encoding}]" if isinstance(expr, L.SOp) else " [selector]"
            inputs = ", ".join(c.name for c in expr.children)
            arrow = f"  <- {inputs}" if inputs else ""
            out.append(f"  {expr.name}{enc}: {type(expr).__name__}{arrow}")
    return "\n".join(out)


def to_dot(program: L.RASPExpr) -> str:
    """Graphviz DOT source: SOps as boxes, selectors as diamonds, edges from inputs to users."""
    lines = ["digraph rasp {", "  rankdir=BT;"]
    for expr in L.walk(program):
        shape = "diamond" if isinstance(expr, L.Selector) else "box"
        label = f"{expr.name}\\n{type(expr).__name__}"
        lines.append(f'  "{expr.name}" [shape={shape}, label="{label}"];')
        for child in expr.children:
            lines.append(f'  "{child.name}" -> "{expr.name}";')
    lines.append("}")
    return "\n".join(lines)


def expr_to_string(expr: L.RASPExpr) -> str:
    return f"{expr.name} = {expr_to_code(expr)}"
