"""`glassformer diagram`: the architecture drawn from its config, as a hand-written SVG (no network, no fonts
to fetch, no plotting library).

Read bottom-up, as in the paper's Figure 1: token ids, embeddings (and the positional scheme), the
blocks, the final norm, the unembedding. Each block's sublayers sit on the residual stream (the central
line) with their skip connection drawn beside them and joining at a ⊕:

* Pre-LN  (``norm_position="pre"``):  the norm is *inside* the branch, before the sublayer;
  the trunk itself is never normalised:           x -> x + Sublayer(Norm(x)).
* Post-LN (``norm_position="post"``): the norm sits *on the trunk*, after the ⊕ ("Add & Norm"):
                                                  x -> Norm(x + Sublayer(x)).

Arrows carry the shape of what flows along them (``[pos, d_model=64]``). The compact view draws one
block with "× n_layers"; the expanded view draws every block and every head (with the concatenation
and W_O), and the MLP as W_in, the activation and W_out. An encoder-decoder gets two columns and the
encoder's output (the memory) is wired into each decoder block's cross-attention.

Every box carries ``data-role`` (and ``data-on="trunk"|"branch"`` for norms), so tests can check the
structure, not only that an SVG came out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from glassformer.model.config import ModelConfig

BOX_W, BOX_H, GAP, SKIP = 236, 34, 30, 22  # box size, vertical gap (arrows), skip-line offset from a box
COLOURS = {  # fill, stroke: the paper's palette, roughly
    "embed": ("#f6d5dc", "#b9707f"), "pos": ("#ece1f5", "#8d6aa8"), "norm": ("#f4f1c4", "#a59d3a"),
    "attn": ("#fde0b6", "#c98a2c"), "cross": ("#fbcfa2", "#b8702a"), "head": ("#fff0d9", "#c98a2c"),
    "mlp": ("#cfe6f7", "#4f8bb8"), "out": ("#d9edd3", "#5b9650"), "io": ("#ffffff", "#888888"),
}
NORM_NAMES = {"layernorm": "LayerNorm", "rmsnorm": "RMSNorm"}
ACT_NAMES = {"gelu": "GELU", "gelu_tanh": "GELU (tanh)", "relu": "ReLU", "relu2": "ReLU²", "swiglu": "SwiGLU", "geglu": "GeGLU", "geglu_tanh": "GeGLU (tanh)"}


@dataclass
class _Drawing:
    """Shapes in 'up' coordinates (y grows upwards, as the model is read); flipped when written out."""

    items: list[tuple] = field(default_factory=list)

    def box(self, cx, y, title, detail="", kind="attn", w=BOX_W, h=BOX_H, **data):
        self.items.append(("box", cx, y, w, h, title, detail, kind, data))
        return y + h

    def line(self, points, arrow=True, dashed=False, role=""):
        self.items.append(("line", points, arrow, dashed, role))

    def text(self, x, y, s, anchor="start", cls="shape"):
        self.items.append(("text", x, y, s, anchor, cls))

    def plus(self, cx, cy):
        self.items.append(("plus", cx, cy))

    def dot(self, cx, cy):
        self.items.append(("dot", cx, cy))

    def frame(self, x0, y0, x1, y1, label, label_side="left"):
        self.items.append(("frame", x0, y0, x1, y1, label, label_side))

    def bounds(self):
        xs, ys = [], []
        for it in self.items:
            if it[0] == "box":
                _, cx, y, w, h, *_ = it
                xs += [cx - w / 2, cx + w / 2]
                ys += [y, y + h]
            elif it[0] == "line":
                xs += [p[0] for p in it[1]]
                ys += [p[1] for p in it[1]]
            elif it[0] == "text":
                width = 6.2 * len(it[3])
                xs += [it[1] - (width if it[4] == "end" else width / 2 if it[4] == "middle" else 0), it[1] + width]
                ys += [it[2] - 4, it[2] + 12]
            elif it[0] == "frame":
                label = 8 + 7 * len(it[5])
                xs += [it[1] - (label if it[6] == "left" else 0), it[3] + (label if it[6] == "right" else 0)]
                ys += [it[2], it[4]]
        return min(xs), min(ys), max(xs), max(ys)

    def svg(self, title: str) -> str:
        x0, y0, x1, y1 = self.bounds()
        pad, top_pad = 16, 40
        x1 = max(x1, x0 + 7.4 * len(title))  # room for the title
        width, height = x1 - x0 + 2 * pad, y1 - y0 + pad + top_pad
        X = lambda x: round(x - x0 + pad, 1)  # noqa: E731
        Y = lambda y: round(y1 - y + top_pad, 1)  # noqa: E731  (flip: up-coordinates -> SVG)
        out = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="Helvetica, Arial, sans-serif">',
            "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" "
            "orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#555\"/></marker></defs>",
            "<style>.shape{font-size:10.5px;fill:#555;font-family:Menlo,Consolas,monospace}.title{font-size:13px;font-weight:bold;fill:#222}"
            ".detail{font-size:10px;fill:#555}.frame{font-size:12px;fill:#666;font-style:italic}.head{font-size:10px;fill:#333}"
            ".io{font-size:12px;fill:#222}</style>",
            f'<rect width="100%" height="100%" fill="white"/><text x="{pad}" y="24" class="title">{escape(title)}</text>',
        ]
        for it in sorted(self.items, key=lambda it: {"frame": 0, "line": 1}.get(it[0], 2)):
            kind = it[0]
            if kind == "frame":
                _, fx0, fy0, fx1, fy1, label, side = it
                out.append(f'<rect x="{X(fx0)}" y="{Y(fy1)}" width="{fx1 - fx0:.1f}" height="{fy1 - fy0:.1f}" rx="10" '
                           f'fill="#f7f7f9" stroke="#b8b8c4" stroke-width="1.2" data-role="block"/>')
                lx = X(fx0) - 8 if side == "left" else X(fx1) + 8
                anchor = "end" if side == "left" else "start"
                out.append(f'<text x="{lx}" y="{Y((fy0 + fy1) / 2)}" text-anchor="{anchor}" class="frame">{escape(label)}</text>')
            elif kind == "line":
                _, points, arrow, dashed, role = it
                d = " ".join(f"{X(x)},{Y(y)}" for x, y in points)
                extra = (' marker-end="url(#arrow)"' if arrow else "") + (' stroke-dasharray="5,4"' if dashed else "")
                out.append(f'<polyline points="{d}" fill="none" stroke="#555" stroke-width="1.4"{extra} data-role="{role}"/>')
            elif kind == "box":
                _, cx, y, w, h, title_, detail, colour, data = it
                fill, stroke = COLOURS[colour]
                attrs = "".join(f' data-{k.replace("_", "-")}="{escape(str(v))}"' for k, v in data.items())
                out.append(f'<g{attrs}><rect x="{X(cx - w / 2)}" y="{Y(y + h)}" width="{w}" height="{h}" rx="6" fill="{fill}" stroke="{stroke}" stroke-width="1.3"/>')
                cls = "head" if colour == "head" else ("io" if colour == "io" else "title")
                if detail:
                    out.append(f'<text x="{X(cx)}" y="{Y(y + h * 0.58)}" text-anchor="middle" class="{cls}">{escape(title_)}</text>')
                    out.append(f'<text x="{X(cx)}" y="{Y(y + h * 0.18)}" text-anchor="middle" class="detail">{escape(detail)}</text></g>')
                else:
                    out.append(f'<text x="{X(cx)}" y="{Y(y + h / 2 - 4)}" text-anchor="middle" class="{cls}">{escape(title_)}</text></g>')
            elif kind == "text":
                _, tx, ty, s, anchor, cls = it
                out.append(f'<text x="{X(tx)}" y="{Y(ty)}" text-anchor="{anchor}" class="{cls}">{escape(s)}</text>')
            elif kind == "plus":
                _, cx, cy = it
                out.append(f'<g data-role="add"><circle cx="{X(cx)}" cy="{Y(cy)}" r="9" fill="white" stroke="#555" stroke-width="1.4"/>'
                           f'<path d="M {X(cx) - 5} {Y(cy)} h 10 M {X(cx)} {Y(cy) - 5} v 10" stroke="#555" stroke-width="1.6"/></g>')
            elif kind == "dot":
                out.append(f'<circle cx="{X(it[1])}" cy="{Y(it[2])}" r="3" fill="#555"/>')
        out.append("</svg>")
        return "\n".join(out) + "\n"


class _Column:
    """One stack drawn bottom-up around the vertical line x = cx; ``skip`` = -1 (skips on the left) or +1."""

    def __init__(self, d: _Drawing, cfg: ModelConfig, cx: float, skip: int, expanded: bool, outer: int = 1):
        self.d, self.cfg, self.cx, self.skip, self.expanded = d, cfg, cx, skip, expanded
        self.outer = outer  # the side with nothing beside it: where the positional embedding box goes
        self.y = 0.0
        self.cross_inputs: list[float] = []  # y of each cross-attention box's middle (encoder-decoder)

    def arrow(self, label: str, length: float = GAP):
        self.d.line([(self.cx, self.y), (self.cx, self.y + length)])
        if label:
            self.d.text(self.cx + 8, self.y + length / 2 - 4, label)
        self.y += length

    def shape(self, *dims: str) -> str:
        return "[" + ", ".join(dims) + "]"

    def resid(self) -> str:
        return self.shape("pos", f"d_model={self.cfg.d_model}")

    def norm_box(self, name: str, on: str):
        label = name if self.expanded else name.rsplit(".", 1)[-1]  # compact: one block stands for all
        return self.d.box(self.cx, self.y, NORM_NAMES[self.cfg.norm], label, kind="norm", role="norm", on=on, name=name)

    def embedding(self, what: str, prefix: str = ""):
        cfg, d = self.cfg, self.d
        d.box(self.cx, self.y, what, "", kind="io", h=26)
        self.y += 26
        self.arrow(self.shape("pos"))
        self.y = d.box(self.cx, self.y, "Token embedding W_E", f"[d_vocab={cfg.d_vocab}, d_model={cfg.d_model}]", kind="embed", role="embed")
        if cfg.positional in ("learned", "sinusoidal"):
            self.arrow("", GAP * 0.6)
            d.plus(self.cx, self.y + 9)
            side = self.outer
            px = self.cx + side * (BOX_W / 2 + 70)
            title = "Positional embedding W_pos" if cfg.positional == "learned" else "Sinusoidal positions"
            detail = f"[n_ctx={cfg.n_ctx}, d_model={cfg.d_model}]" if cfg.positional == "learned" else "fixed sin/cos, nothing learned"
            d.box(px, self.y - 8, title, detail, kind="pos", w=200, role="positional", scheme=cfg.positional)
            edge = px - side * 100
            d.line([(edge, self.y + 9), (self.cx + side * 9, self.y + 9)])
            self.y += 18
        if cfg.embed_norm:
            self.arrow("")
            self.y = self.norm_box(f"{prefix}ln_embed", "trunk")
        note = {"rope": "positions: RoPE, inside attention", "alibi": "positions: ALiBi, inside attention", "none": "no positional information"}
        if cfg.positional in note:
            d.text(self.cx - self.skip * (BOX_W / 2 + 8), self.y - 20, note[cfg.positional], anchor="end" if self.skip > 0 else "start", cls="detail")

    def attention_box(self, kind: str, name: str):
        cfg, d = self.cfg, self.d
        causal = kind == "attn" and cfg.causal and not name.startswith("encoder.")
        pos = {"rope": " + RoPE", "alibi": " + ALiBi"}.get(cfg.positional, "") if kind == "attn" else ""
        title = ("Masked self-attention" if causal else "Self-attention" if kind == "attn" else "Cross-attention") + pos
        heads = f"{cfg.n_heads} heads × d_head={cfg.d_head}" + (f", {cfg.n_kv_heads} kv heads" if cfg.n_kv_heads != cfg.n_heads else "")
        if not self.expanded:
            top = d.box(self.cx, self.y, title, heads, kind="cross" if kind == "cross" else "attn", role=kind, name=name)
            mid = self.y + BOX_H / 2
            self.y = top
            return mid
        # expanded: a caption bar, one box per head, then Concat · W_O
        colour = "cross" if kind == "cross" else "attn"
        bar = d.box(self.cx, self.y, title, f"q, k, v: [pos, d_head={cfg.d_head}] per head", kind="head", h=28, role="heads", name=name)
        n = cfg.n_heads
        shown = list(range(n)) if n <= 12 else list(range(5)) + [None] + list(range(n - 5, n))
        hw = (BOX_W - 4 * (len(shown) - 1)) / len(shown)
        self.y = bar + 16
        for k, h in enumerate(shown):
            hx = self.cx - BOX_W / 2 + hw / 2 + k * (hw + 4)
            if h is None:
                d.text(hx, self.y + 11, "…", anchor="middle", cls="head")
                continue
            d.line([(hx, bar), (hx, self.y)])
            d.box(hx, self.y, f"h{h}", "", kind="head", w=hw, h=30, role="head", name=f"{name}.{h}")
            d.line([(hx, self.y + 30), (hx, self.y + 30 + 14)])
        mid = self.y + 15
        self.y += 30 + 14
        self.y = d.box(self.cx, self.y, "Concat · W_O", f"[pos, {n}×{cfg.d_head}] @ W_O [{n}, {cfg.d_head}, {cfg.d_model}]", kind=colour, role="W_O", name=name)
        return mid

    def mlp_box(self, name: str):
        cfg, d = self.cfg, self.d
        act = ACT_NAMES.get(cfg.act, cfg.act)
        if not self.expanded:
            self.y = d.box(self.cx, self.y, f"MLP ({act})", f"d_model={cfg.d_model} → d_mlp={cfg.d_mlp} → d_model", kind="mlp", role="mlp", name=name)
            return
        self.y = d.box(self.cx, self.y, "W_in", f"[d_model={cfg.d_model}, d_mlp={cfg.d_mlp}]", kind="mlp", role="W_in", name=name)
        self.arrow(self.shape("pos", f"d_mlp={cfg.d_mlp}"))
        self.y = d.box(self.cx, self.y, act, "element-wise", kind="mlp", h=28, role="act", name=name)
        self.arrow(self.shape("pos", f"d_mlp={cfg.d_mlp}"))
        self.y = d.box(self.cx, self.y, "W_out", f"[d_mlp={cfg.d_mlp}, d_model={cfg.d_model}]", kind="mlp", role="W_out", name=name)

    def sublayer(self, kind: str, block: str):
        """One residual sublayer: split, [norm], sublayer, ⊕, [norm], with its skip line beside it."""
        cfg, d = self.cfg, self.d
        norm = {"attn": "ln1", "cross": "ln_cross", "mlp": "ln2"}[kind]
        has_norm = cfg.norm != "none"
        split = self.y + 8
        d.line([(self.cx, self.y), (self.cx, split)], arrow=False)
        d.dot(self.cx, split)
        self.y = split
        if cfg.norm_position == "pre" and has_norm:
            self.arrow("")
            self.y = self.norm_box(f"{block}.{norm}", "branch")
        self.arrow(self.resid() if cfg.norm_position == "post" or not has_norm else "")
        if kind == "mlp":
            self.mlp_box(f"{block}.mlp")
        else:
            mid = self.attention_box(kind, f"{block}.{'attn' if kind == 'attn' else 'cross_attn'}")
            if kind == "cross":
                self.cross_inputs.append(mid)
        self.arrow(self.resid(), GAP * 0.8)
        add = self.y + 9
        d.plus(self.cx, add)
        sx = self.cx + self.skip * (BOX_W / 2 + SKIP)
        d.line([(self.cx, split), (sx, split), (sx, add), (self.cx + self.skip * 9, add)], role="skip")
        self.y = add + 9
        if cfg.norm_position == "post" and has_norm:
            self.arrow("", GAP * 0.6)
            self.y = self.norm_box(f"{block}.{norm}", "trunk")

    def block(self, prefix: str, i: int, cross: bool, label: str):
        start = self.y
        self.y += 10
        b = f"{prefix}blocks.{i}"
        self.sublayer("attn", b)
        if cross:
            self.arrow(self.resid())
            self.sublayer("cross", b)
        if not self.cfg.attn_only:
            self.arrow(self.resid())
            self.sublayer("mlp", b)
        self.y += 10
        left = self.cx - BOX_W / 2 - SKIP - 14
        right = self.cx + BOX_W / 2 + SKIP + 14
        self.d.frame(left, start, right, self.y, label, "left" if self.skip < 0 else "right")

    def blocks(self, prefix: str, n: int, cross: bool):
        if self.expanded:
            for i in range(n):
                self.arrow(self.resid())
                self.block(prefix, i, cross, f"block {i}")
        else:
            self.arrow(self.resid())
            self.block(prefix, 0, cross, f"× {n}")

    def final_norm(self, prefix: str):
        self.arrow(self.resid())
        if self.cfg.final_norm and self.cfg.norm != "none":
            self.y = self.norm_box(f"{prefix}ln_final", "trunk")
            self.arrow(self.resid())


def _title(cfg: ModelConfig, expanded: bool) -> str:
    n = f"{cfg.n_layers}+{cfg.n_decoder_layers} layers" if cfg.arch == "encoder-decoder" else f"{cfg.n_layers} layers"
    norm = "no norm" if cfg.norm == "none" else f"{'Pre' if cfg.norm_position == 'pre' else 'Post'}-LN ({NORM_NAMES[cfg.norm]})"
    view = "expanded" if expanded else "compact"
    return f"{cfg.arch} · {n} · d_model={cfg.d_model} · {cfg.n_heads} heads · {norm} · {cfg.positional} positions · {view}"


def diagram(config: ModelConfig, expanded: bool = False) -> str:
    """The architecture of ``config`` as an SVG document (a string)."""
    d = _Drawing()
    cfg = config
    if cfg.arch == "encoder-decoder":
        enc = _Column(d, cfg, 0.0, -1, expanded, outer=-1)
        enc.embedding("source token ids")
        enc.blocks("encoder.", cfg.n_layers, cross=False)
        enc.final_norm("encoder.")
        memory_top = d.box(enc.cx, enc.y, f"memory m  [src_pos, d_model={cfg.d_model}]", "", kind="io", h=26, role="memory")
        dec = _Column(d, cfg, BOX_W + 250.0, +1, expanded, outer=+1)
        dec.embedding("target token ids (shifted right)")
        dec.blocks("", cfg.n_decoder_layers, cross=True)
        bus = (enc.cx + dec.cx) / 2 - 6
        top = memory_top + 20
        d.line([(enc.cx, memory_top), (enc.cx, top), (bus, top)], arrow=False, role="memory")
        span = [top, *dec.cross_inputs]
        d.line([(bus, min(span)), (bus, max(span))], arrow=False, role="memory")
        for y in dec.cross_inputs:
            d.line([(bus, y), (dec.cx - BOX_W / 2, y)], role="memory")
        column = dec
        column.final_norm("")
    else:
        column = _Column(d, cfg, 0.0, -1, expanded, outer=+1)
        column.embedding("token ids")
        column.blocks("", cfg.n_layers, cross=False)
        column.final_norm("")
    _output(column, cfg)
    return d.svg(_title(cfg, expanded))


def _output(col: _Column, cfg: ModelConfig) -> None:
    d = col.d
    if cfg.unembed_transform:
        col.y = d.box(col.cx, col.y, "MLM transform", "Norm(act(x W_T + b_T))", kind="out", role="unembed_transform")
        col.arrow(col.resid())
    if cfg.n_classes:  # BERT's classifier reads position 0 of the final stream
        cx, branch = col.cx + BOX_W / 2 + 130, col.y - GAP + 5
        d.line([(col.cx, branch), (cx, branch), (cx, col.y)])
        d.box(cx, col.y, "Classifier (position 0)", f"[d_model={cfg.d_model}, n_classes={cfg.n_classes}] → class logits", kind="out", w=230, role="classifier")
    tied = " = W_Eᵀ (tied)" if cfg.tie_embeddings else ""
    col.y = d.box(col.cx, col.y, f"Unembedding W_U{tied}", f"[d_model={cfg.d_model}, d_vocab_out={cfg.d_vocab_out}]", kind="out", role="unembed")
    col.arrow(col.shape("pos", f"d_vocab_out={cfg.d_vocab_out}"))
    col.y = d.box(col.cx, col.y, "softmax", "", kind="out", h=26, role="softmax")
    col.arrow("")
    what = "next-token probabilities" if cfg.causal else "token probabilities (masked-LM)"
    d.box(col.cx, col.y, what, "", kind="io", h=26)
def save_diagram(config: ModelConfig, path: str | Path, expanded: bool = False) -> Path:
    path = Path(path)
    path.write_text(diagram(config, expanded), encoding="utf-8")
    return path
