"""Writing a :class:`~glassformer.explain.document.Trace` as Markdown or as one self-contained HTML file.

Markdown keeps equations as LaTeX between ``$$`` (GitHub renders them); HTML gets MathML made by
:mod:`glassformer.explain.mathml`, inline CSS, and no scripts or external resources, so it opens offline.

Every tensor is a table whose caption names its source exactly as ``name[index]`` (a hook point or a
parameter of the model, or a derived expression), and whose row and column headers start with the index
they show; elided rows and columns are marked ⋮ and ⋯. That is what lets a test read the numbers back.
"""

from __future__ import annotations

import re
from html import escape

import numpy as np

from glassformer.explain.document import Shown, Trace, elided, fmt
from glassformer.explain.mathml import to_mathml

VECTOR_ROW = "—"  # the row label of a 1-D tensor's single row


def _grid(t: Shown, max_rows: int, max_cols: int):
    """(column headers, rows) with rows = [(row header, [cell text or None for elided])], None = elided row."""
    values = t.values[None] if t.values.ndim == 1 else t.values
    n_rows, n_cols = values.shape
    cols = elided(n_cols, max_cols)
    rows = [None] if t.values.ndim == 1 else elided(n_rows, max_rows)
    col_headers = ["⋯" if j is None else (t.col_labels[j] if t.col_labels else str(j)) for j in cols]
    grid = []
    for i in rows:
        if i is None and t.values.ndim == 2:
            grid.append(None)
            continue
        r = 0 if i is None else i
        header = VECTOR_ROW if t.values.ndim == 1 else (t.row_labels[r] if t.row_labels else str(r))
        grid.append((header, [(None if j is None else float(values[r, j])) for j in cols]))
    return col_headers, grid


def _shape(t: Shown) -> str:
    return "[" + ", ".join(str(s) for s in t.values.shape) + "]"


def _source(t: Shown) -> str:
    return f"{t.name}{t.index}"


# -- Markdown ---------------------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")


def _md_table(t: Shown, max_rows: int, max_cols: int) -> list[str]:
    col_headers, grid = _grid(t, max_rows, max_cols)
    lines = [
        f"**{t.caption}** · `{_source(t)}` ({t.source}) · shape {_shape(t)}",
        "",
        "| | " + " | ".join(_md_cell(c) for c in col_headers) + " |",
        "|---|" + "---:|" * len(col_headers),
    ]
    for row in grid:
        if row is None:
            lines.append("| ⋮ | " + " | ".join("⋮" for _ in col_headers) + " |")
            continue
        header, cells = row
        lines.append(f"| {_md_cell(header)} | " + " | ".join("⋯" if v is None else fmt(v) for v in cells) + " |")
    return lines + [""]


def to_markdown(trace: Trace) -> str:
    out = [f"# {trace.title}", "", "| | |", "|---|---|"]
    out += [f"| {k} | {_md_cell(v)} |" for k, v in trace.summary]
    out += ["", "Numbers are the model's own (4 significant digits); long tensors are elided (⋮, ⋯).", ""]
    for n, section in enumerate(trace.sections, 1):
        out += [f"## {n}. {section.title}", ""]
        if section.intro:
            out += [section.intro, ""]
        for step in section.steps:
            out += [f"### {step.title}", ""]
            for eq in step.equations:
                out += ["$$", eq, "$$", ""]
            for shape in step.shapes:
                out += [f"shapes: `{shape}`", ""]
            if step.text:
                out += [step.text, ""]
            for t in step.tensors:
                out += _md_table(t, trace.max_rows, trace.max_cols)
            if step.lines:
                out += [f"- {line}" for line in step.lines] + [""]
    return "\n".join(out).rstrip() + "\n"


# -- HTML -------------------------------------------------------------------------------------------------

CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2330; margin: 0 auto;
       max-width: 1100px; padding: 1.5em 2em 4em; background: #fcfcfd; }
h1 { font-size: 1.6em; margin-bottom: .3em; } h2 { margin-top: 2em; border-bottom: 2px solid #d9dee8; }
h3 { font-size: 1.05em; margin: 1.6em 0 .4em; color: #2c3e66; }
nav ol { columns: 3; font-size: .9em; } nav a { color: #2c3e66; text-decoration: none; }
table.summary td { padding: 1px 12px 1px 0; font-size: .9em; } table.summary td:first-child { color: #667; }
.eq { margin: .5em 0 .5em 1em; font-size: 1.1em; } math { font-size: 1.05em; }
.shape code { background: #eef1f6; padding: 1px 6px; border-radius: 4px; font-size: .85em; }
.tensors { display: flex; flex-wrap: wrap; gap: 14px 22px; align-items: flex-start; margin: .6em 0; }
figure.tensor { margin: 0; } figcaption { font-size: .82em; color: #444; margin-bottom: 3px; }
figcaption code { color: #7a4d00; font-size: .95em; } figcaption .src { color: #99a; }
figure.tensor table { border-collapse: collapse; font: 12px/1.3 ui-monospace, Menlo, Consolas, monospace; }
figure.tensor th { font-weight: normal; color: #778; padding: 1px 5px; text-align: right; white-space: nowrap; }
figure.tensor thead th { border-bottom: 1px solid #ccd; }
figure.tensor td { padding: 1px 6px; text-align: right; white-space: nowrap; }
td.masked { color: #aab; background: #f0f0f3; } td.gap, th.gap { color: #aab; text-align: center; }
ul.lines { font: 12px/1.5 ui-monospace, Menlo, Consolas, monospace; color: #334; padding-left: 1.2em; }
"""


def _cell_style(v: float, scale: float, heat: bool) -> str:
    if heat:
        return f' style="background: rgba(40, 110, 200, {min(max(v, 0.0), 1.0) * 0.6:.3f})"'
    if scale <= 0 or not np.isfinite(v):
        return ""
    alpha = min(abs(v) / scale, 1.0) * 0.45
    rgb = "214, 96, 77" if v > 0 else "67, 147, 195"
    return f' style="background: rgba({rgb}, {alpha:.3f})"'


def _html_table(t: Shown, max_rows: int, max_cols: int) -> str:
    col_headers, grid = _grid(t, max_rows, max_cols)
    finite = t.values[np.isfinite(t.values)]
    scale = float(np.abs(finite).max()) if finite.size else 0.0
    head = "".join(f'<th class="gap">{escape(c)}</th>' if c == "⋯" else f"<th>{escape(c)}</th>" for c in col_headers)
    body = []
    for row in grid:
        if row is None:
            body.append('<tr><th class="gap">⋮</th>' + '<td class="gap">⋮</td>' * len(col_headers) + "</tr>")
            continue
        header, cells = row
        tds = []
        for v in cells:
            if v is None:
                tds.append('<td class="gap">⋯</td>')
            elif np.isneginf(v):
                tds.append('<td class="masked">−∞</td>')
            else:
                tds.append(f"<td{_cell_style(v, scale, t.heat)}>{fmt(v)}</td>")
        body.append(f"<tr><th>{escape(header)}</th>{''.join(tds)}</tr>")
    return (
        f'<figure class="tensor" data-source="{t.source}" data-name="{escape(t.name)}" data-index="{escape(t.index)}">'
        f'<figcaption><b>{escape(t.caption)}</b> <code>{escape(_source(t))}</code> '
        f'<span class="src">{t.source} · {_shape(t)}</span></figcaption>'
        f"<table><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></figure>"
    )


def _anchor(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def to_html(trace: Trace) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(trace.title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(trace.title)}</h1>",
        '<table class="summary">' + "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in trace.summary) + "</table>",
        "<p>Numbers are the model's own (4 significant digits); long tensors are elided (⋮, ⋯). "
        "Cells are shaded red for positive and blue for negative values, probabilities in blue.</p>",
        "<nav><ol>" + "".join(f'<li><a href="#{n}-{_anchor(s.title)}">{escape(s.title)}</a></li>' for n, s in enumerate(trace.sections, 1)) + "</ol></nav>",
    ]
    for n, section in enumerate(trace.sections, 1):
        parts.append(f'<section id="{n}-{_anchor(section.title)}"><h2>{n}. {escape(section.title)}</h2>')
        if section.intro:
            parts.append(f"<p>{escape(section.intro)}</p>")
        for step in section.steps:
            parts.append(f'<div class="step"><h3>{escape(step.title)}</h3>')
            parts += [f'<div class="eq">{to_mathml(eq)}</div>' for eq in step.equations]
            parts += [f'<p class="shape">shapes: <code>{escape(s)}</code></p>' for s in step.shapes]
            if step.text:
                parts.append(f"<p>{escape(step.text)}</p>")
            if step.tensors:
                html = ""
                for i, t in enumerate(step.tensors):
                    if t.break_before and i:
                        html += '</div><div class="tensors">'
                    html += _html_table(t, trace.max_rows, trace.max_cols)
                parts.append(f'<div class="tensors">{html}</div>')
            if step.lines:
                parts.append('<ul class="lines">' + "".join(f"<li>{escape(line)}</li>" for line in step.lines) + "</ul>")
            parts.append("</div>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
