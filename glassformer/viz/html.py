"""The pieces of a self-contained HTML page: figures inlined as base64 data URIs, escaped text, tables.

Nothing on the page points outside the file (no scripts, fonts, style sheets or images to fetch), so it
opens offline in any browser and can be mailed as one attachment.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence

from matplotlib.figure import Figure

from glassformer.errors import InputError

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ddd; margin-top: 1.6em; }
.note { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
th { background: #f4f4f4; }
code, .tok { font-family: Menlo, Consolas, monospace; background: #f4f4f4; padding: 0 3px; border-radius: 3px; }
img { max-width: 100%; height: auto; display: block; margin: 0.6em 0; }
"""


def figure_data_uri(fig: Figure, fmt: str = "png", dpi: int = 80) -> str:
    """The figure as a ``data:`` URI (base64 PNG or SVG) to put in an ``<img src=...>``."""
    if fmt not in ("png", "svg"):
        raise InputError(f"inline figures are png or svg, got {fmt!r}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi, bbox_inches="tight")
    mime = "image/png" if fmt == "png" else "image/svg+xml"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def img(fig: Figure, alt: str, *, fmt: str = "png", dpi: int = 80) -> str:
    """An ``<img>`` tag holding the figure itself."""
    return f'<img alt="{html.escape(alt)}" src="{figure_data_uri(fig, fmt, dpi)}">'


def esc(text: object) -> str:
    return html.escape(str(text))


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """An HTML table; every cell is escaped."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page(title: str, sections: Sequence[tuple[str, str]], *, subtitle: str = "") -> str:
    """A whole HTML document: a title, then ``(heading, html body)`` sections. Bodies are inserted as
    HTML (build them with :func:`esc`, :func:`table`, :func:`img`)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    if subtitle:
        parts.append(f'<p class="note">{esc(subtitle)}</p>')
    for heading, body in sections:
        anchor = "".join(c if c.isalnum() else "-" for c in heading.lower())
        parts.append(f'<section id="{anchor}"><h2>{esc(heading)}</h2>{body}</section>')
    parts.append("</body></html>")
    return "\n".join(parts)
