"""The trace as data: a document of sections, steps and tensors (what :mod:`~glassformer.explain.trace`
builds and :mod:`~glassformer.explain.render` writes as Markdown or HTML), and how numbers are printed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from glassformer.errors import InputError


@dataclass
class Shown:
    """One tensor as the document shows it: a hook activation, a parameter, or a value derived from them."""

    caption: str  # what it is, in words: "queries q, head 1"
    source: str  # "hook" | "param" | "derived"
    name: str  # hook or parameter name; for "derived", the expression ("a + b", "softmax(logits)")
    index: str  # which part of it is shown, e.g. "[0, :, 1, :]" ("" = all of it)
    values: np.ndarray  # 1-D or 2-D, the numbers shown
    row_labels: list[str] | None = None  # one per row (2-D), e.g. "2 c" = position 2, token "c"
    col_labels: list[str] | None = None  # one per column
    heat: bool = False  # probabilities: shade cells by value
    break_before: bool = False  # HTML: start a new row of tables here


@dataclass
class Step:
    title: str
    equations: list[str] = field(default_factory=list)  # LaTeX
    shapes: list[str] = field(default_factory=list)  # "[pos=3, d_model=4] @ ... -> ..."
    text: str = ""
    tensors: list[Shown] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # extra worked lines (the softmax row by row)


@dataclass
class Section:
    title: str
    intro: str = ""
    steps: list[Step] = field(default_factory=list)


@dataclass
class Trace:
    """The forward pass as a document. ``to_markdown()``, ``to_html()``, ``save(path)``."""

    title: str
    summary: list[tuple[str, str]]  # (field, value) rows describing model and input
    sections: list[Section]
    max_rows: int = 8
    max_cols: int = 8

    def to_dict(self) -> dict:
        """The trace as plain data (JSON-ready): title, summary, and sections of steps, each with its equations
        (LaTeX), shapes, text, worked lines and tensors (caption, source, name, index, values as nested lists with
        null where a value is infinite, ``infinite`` flags, row and column labels). What a web page or another program reads."""
        def tensor(t: Shown) -> dict:
            arr = np.asarray(t.values, dtype=np.float64).astype(object)
            arr[~np.isfinite(np.asarray(t.values, dtype=np.float64))] = None  # -inf (masked scores) -> null, flagged below
            values = arr.tolist()
            return {"caption": t.caption, "source": t.source, "name": t.name, "index": t.index, "shape": list(np.shape(t.values)),
                    "values": values, "infinite": np.isinf(t.values).tolist() if np.ndim(t.values) else bool(np.isinf(t.values)),
                    "rows": t.row_labels, "cols": t.col_labels, "heat": t.heat}

        return {"title": self.title, "summary": [list(row) for row in self.summary], "sections": [
            {"title": s.title, "intro": s.intro, "steps": [
                {"title": st.title, "equations": st.equations, "shapes": st.shapes, "text": st.text, "lines": st.lines,
                 "tensors": [tensor(t) for t in st.tensors]} for st in s.steps]} for s in self.sections]}

    def to_markdown(self) -> str:
        from glassformer.explain.render import to_markdown

        return to_markdown(self)

    def to_html(self) -> str:
        from glassformer.explain.render import to_html

        return to_html(self)

    def save(self, path: str | Path) -> Path:
        """Write Markdown (``.md``) or HTML (``.html``/``.htm``), chosen by the file's suffix."""
        path = Path(path)
        if path.suffix.lower() in (".html", ".htm"):
            path.write_text(self.to_html(), encoding="utf-8")
        elif path.suffix.lower() in (".md", ".markdown"):
            path.write_text(self.to_markdown(), encoding="utf-8")
        else:
            raise InputError(f"cannot tell the format of {path}: use a .md or .html file name")
        return path


def dims(**sizes: int) -> str:
    """``dims(pos=3, d_model=4)`` -> ``"[pos=3, d_model=4]"``."""
    return "[" + ", ".join(f"{k}={v}" for k, v in sizes.items()) + "]"


def token_text(tokenizer, token_id: int) -> str:
    """A token as readable text: its string (whitespace made visible), or its id if there is no tokenizer."""
    if tokenizer is None:
        return f"#{token_id}"
    text = tokenizer.decode([int(token_id)])
    return text.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥") or "∅"


def elided(n: int, limit: int) -> list[int | None]:
    """Which of n indices to show: all if n <= limit, else the first half and the last, None marking the gap."""
    if n <= limit:
        return list(range(n))
    head = (limit + 1) // 2
    tail = limit - head
    return list(range(head)) + [None] + list(range(n - tail, n))


def fmt(v: float) -> str:
    """A number as the document prints it: 4 significant digits, -inf as "−∞"."""
    if np.isneginf(v):
        return "−∞"
    if np.isposinf(v):
        return "∞"
    if v == 0:
        return "0"
    return f"{v:.4g}"
