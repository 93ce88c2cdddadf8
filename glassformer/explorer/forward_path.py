"""The forward pass as a path the page can walk: the ``explain`` trace (``glassformer.explain.trace``) cut
into its sections (embedding, each block, final norm, output) and steps (each norm, head, MLP, residual
addition), each step expandable into its equations (MathML, rendered by the browser), operand shapes and
the model's own numbers. Nothing is recomputed here: every number is the trace's.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from threading import Lock

import numpy as np

from glassformer.errors import InputError
from glassformer.explain.document import Shown, Step, Trace, elided
from glassformer.explain.mathml import to_mathml

MAX_ROWS, MAX_COLS = 6, 6  # larger tensors are elided (first and last entries); 6 not explain's 8: the trace is
# rebuilt for every new input, and 6 x 6 costs a third less (measured 37 vs 56 ms median on the loaded test machine)


class TraceCache:
    """The last few traces, by input: expanding steps one by one does not rerun the model."""

    def __init__(self, size: int = 8):
        self.size, self._traces, self._lock = size, OrderedDict(), Lock()

    def get(self, subject, tokens: list[int], src: list[int] | None) -> Trace:
        from glassformer.explain import trace

        key = (id(subject), tuple(tokens), tuple(src) if src is not None else None)
        with self._lock:
            if key in self._traces:
                self._traces.move_to_end(key)
                return self._traces[key]
        doc = trace(subject.model, tokens, src=src, tokenizer=subject.tokenizer, max_rows=MAX_ROWS, max_cols=MAX_COLS)
        with self._lock:
            self._traces[key] = doc
            while len(self._traces) > self.size:
                self._traces.popitem(last=False)
        return doc


def path(doc: Trace) -> dict:
    """The outline: sections with their step titles (what the page draws as the path)."""
    return {
        "title": doc.title,
        "summary": [list(row) for row in doc.summary],
        "sections": [{"title": s.title, "intro": s.intro, "kind": _kind(s.title),
                      "steps": [{"title": st.title, "kind": _step_kind(st.title), "head": _head(st.title)} for st in s.steps]}
                     for s in doc.sections],
    }


def step(doc: Trace, section: int, index: int) -> dict:
    """One step in full: equations as MathML, shapes, text, tensors (elided), worked lines."""
    if not isinstance(section, int) or not 0 <= section < len(doc.sections):
        raise InputError(f"section {section!r} does not exist: the trace has sections 0..{len(doc.sections) - 1}")
    steps = doc.sections[section].steps
    if not isinstance(index, int) or not 0 <= index < len(steps):
        raise InputError(f"step {index!r} does not exist: section {section} has steps 0..{len(steps) - 1}")
    st: Step = steps[index]
    return {
        "section": doc.sections[section].title,
        "title": st.title,
        "equations": [to_mathml(eq) for eq in st.equations],
        "latex": list(st.equations),
        "shapes": list(st.shapes),
        "text": st.text,
        "tensors": [tensor(t) for t in st.tensors],
        "lines": list(st.lines),
    }


def tensor(t: Shown) -> dict:
    """A tensor as a grid with elided rows/columns marked None (the page draws them as ⋮ and ⋯)."""
    values = t.values[None] if t.values.ndim == 1 else t.values  # [rows, cols]
    rows = [0] if t.values.ndim == 1 else elided(values.shape[0], MAX_ROWS)
    cols = elided(values.shape[1], MAX_COLS)
    finite = values[np.isfinite(values)]
    return {
        "caption": t.caption,
        "source": t.source,
        "name": t.name + t.index,
        "shape": list(t.values.shape),
        "heat": t.heat,
        "scale": float(np.abs(finite).max()) if finite.size else 0.0,
        "col_labels": [None if j is None else (t.col_labels[j] if t.col_labels else str(j)) for j in cols],
        "rows": [None if i is None else {
            "label": "—" if t.values.ndim == 1 else (t.row_labels[i] if t.row_labels else str(i)),
            "values": [None if j is None else _number(values[i, j]) for j in cols],
        } for i in rows],
    }


def _number(v) -> float | str:
    v = float(v)
    if np.isneginf(v):
        return "-inf"
    if np.isposinf(v):
        return "inf"
    if np.isnan(v):
        return "nan"
    return float(f"{v:.4g}")


def _head(title: str) -> int | None:
    """The head a step belongs to ("Attention (layer 0), head 2: scores" -> 2), None for whole-layer steps."""
    match = re.search(r"\bhead (\d+)\b", title)
    return int(match.group(1)) if match else None


def _kind(title: str) -> str:
    t = title.lower()
    if "embedding" in t:
        return "embed"
    if "block" in t:
        return "block"
    if "norm" in t:
        return "norm"
    return "output"


def _step_kind(title: str) -> str:
    t = title.lower()
    if "residual" in t:
        return "resid"
    if "norm" in t and "attention" not in t:
        return "norm"
    if "attention" in t:
        return "attn"
    if "mlp" in t:
        return "mlp"
    if "embed" in t or "position" in t:
        return "embed"
    return "output"
