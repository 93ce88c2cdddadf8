"""`glassformer diagram`: the architecture drawn from the model's own modules, as a hand-written SVG (no
network, no fonts to fetch, no plotting library).

The drawing walks the module tree (the embedding, each block's norms, attention and MLP, the final norm,
the unembedding) and draws each component as its ``describe()`` says, so a new variant appears by
itself and the picture cannot drift from the model. Every component box carries ``data-module``, its
name in the model (``blocks.0.attn.rotary``); a test builds every variant and checks that each module
is drawn. Components that act inside attention (RoPE, ALiBi, T5 bias, QK-norm) and a Transformer-XL
memory are drawn beside the attention box, joined by a dashed arrow.

Read bottom-up, as in the paper's Figure 1: token ids, embeddings (and the positional scheme), the
blocks, the final norm, the unembedding. Each block's sublayers sit on the residual stream (the central
line) with their skip connection drawn beside them and joining at a ⊕:

* Pre-LN  (``norm_position="pre"``):  the norm is *inside* the branch, before the sublayer;
  the trunk itself is never normalised:           x -> x + Sublayer(Norm(x)).
* Post-LN (``norm_position="post"``): the norm sits *on the trunk*, after the ⊕ ("Add & Norm"):
                                                  x -> Norm(x + Sublayer(x)).

Arrows carry the shape of what flows along them (``[pos, d_model=64]``). The compact view draws one
block with "× n_layers" (every block when layers differ in size); the expanded view draws every block and every head (with the concatenation
and W_O), and the MLP as W_in, the activation and W_out. An encoder-decoder gets two columns and the
encoder's output (the memory) is wired into each decoder block's cross-attention.

Every box carries ``data-role`` (and ``data-on="trunk"|"branch"`` for norms), so tests can check the
structure, not only that an SVG came out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from glassformer.errors import InputError
from glassformer.model.config import ModelConfig
from glassformer.model.describe import Description, describe
from glassformer.model.norms import RESIDUAL_EQUATIONS, NoNorm
from glassformer.model.segment_memory import describe_memory

BOX_W, BOX_H, GAP, SKIP = 236, 34, 30, 22  # box size, vertical gap (arrows), skip-line offset from a box
COLOURS = {  # fill, stroke: the paper's palette, roughly
    "embed": ("#f6d5dc", "#b9707f"), "pos": ("#ece1f5", "#8d6aa8"), "norm": ("#f4f1c4", "#a59d3a"),
    "attn": ("#fde0b6", "#c98a2c"), "cross": ("#fbcfa2", "#b8702a"), "head": ("#fff0d9", "#c98a2c"),
    "mlp": ("#cfe6f7", "#4f8bb8"), "out": ("#d9edd3", "#5b9650"), "io": ("#ffffff", "#888888"),
}


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

    def note(self, x, y, lines, anchor="start", **data):
        """Lines of small text, the first at height y, in one group carrying ``data-*`` attributes."""
        self.items.append(("note", x, y, lines, anchor, data))

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
            elif it[0] == "note":
                width = 6.2 * max(len(line) for line in it[3])
                xs += [it[1] - (width if it[4] == "end" else 0), it[1] + (0 if it[4] == "end" else width)]
                ys += [it[2] - 14 * len(it[3]), it[2] + 12]
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
                fit = _fit(title_, w, 13 if cls == "title" else 11) + ""  # long names shrink to fit the box
                if detail:
                    out.append(f'<text x="{X(cx)}" y="{Y(y + h * 0.58)}" text-anchor="middle" class="{cls}"{fit}>{escape(title_)}</text>')
                    out.append(f'<text x="{X(cx)}" y="{Y(y + h * 0.18)}" text-anchor="middle" class="detail"{_fit(detail, w, 10)}>{escape(detail)}</text></g>')
                else:
                    out.append(f'<text x="{X(cx)}" y="{Y(y + h / 2 - 4)}" text-anchor="middle" class="{cls}"{fit}>{escape(title_)}</text></g>')
            elif kind == "text":
                _, tx, ty, s, anchor, cls = it
                out.append(f'<text x="{X(tx)}" y="{Y(ty)}" text-anchor="{anchor}" class="{cls}">{escape(s)}</text>')
            elif kind == "plus":
                _, cx, cy = it
                out.append(f'<g data-role="add"><circle cx="{X(cx)}" cy="{Y(cy)}" r="9" fill="white" stroke="#555" stroke-width="1.4"/>'
                           f'<path d="M {X(cx) - 5} {Y(cy)} h 10 M {X(cx)} {Y(cy) - 5} v 10" stroke="#555" stroke-width="1.6"/></g>')
            elif kind == "note":
                _, tx, ty, lines, anchor, data = it
                attrs = "".join(f' data-{k.replace("_", "-")}="{escape(str(v))}"' for k, v in data.items())
                texts = "".join(f'<text x="{X(tx)}" y="{Y(ty - 14 * k)}" text-anchor="{anchor}" class="detail">{escape(line)}</text>'
                                for k, line in enumerate(lines))
                out.append(f"<g{attrs}>{texts}</g>")
            elif kind == "dot":
                out.append(f'<circle cx="{X(it[1])}" cy="{Y(it[2])}" r="3" fill="#555"/>')
        out.append("</svg>")
        return "\n".join(out) + "\n"


def _fit(text: str, width: float, size: float) -> str:
    """A smaller font-size attribute when ``text`` at ``size`` px would not fit ``width`` (about 0.6 em per character)."""
    need = 0.6 * size * len(text) + 10
    return f' style="font-size:{size * width / need:.1f}px"' if need > width else ""


class _Column:
    """One stack drawn bottom-up around the vertical line x = cx; ``skip`` = -1 (skips on the left) or +1.
    It reads the stack's modules (``stack.embed``, ``stack.blocks``, ...) and draws each as its ``describe()``
    says; every box carries ``data-module``, the module's name in the model."""

    def __init__(self, d: _Drawing, model, stack, prefix: str, cx: float, skip: int, expanded: bool, outer: int = 1):
        self.d, self.model, self.stack, self.prefix, self.cx, self.skip, self.expanded = d, model, stack, prefix, cx, skip, expanded
        self.d_model = model.config.d_model
        self.outer = outer  # the side with nothing beside it: where side boxes (positions, memory) go
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
        return self.shape("pos", f"d_model={self.d_model}")

    def norm_box(self, name: str, module, on: str):
        label = name if self.expanded else name.rsplit(".", 1)[-1]  # compact: one block stands for all
        return self.d.box(self.cx, self.y, describe(module).title, label, kind="norm", role="norm", on=on, name=name, module=name)

    def side_box(self, y: float, target_y: float, module_name: str, desc: Description, kind: str, role: str, **data) -> None:
        """A component drawn beside the trunk (positional schemes inside attention, QK-norm, memory), its dashed
        arrow bending down to the middle of the box it acts in (at height ``target_y``)."""
        px = self.cx + self.outer * (BOX_W / 2 + SKIP + 130)  # clear of the block's frame
        self.d.box(px, y, desc.title, desc.detail, kind=kind, w=200, role=role, module=module_name, **data)
        bend = self.cx + self.outer * (BOX_W / 2 + 12)
        self.d.line([(px - self.outer * 100, y + BOX_H / 2), (bend, y + BOX_H / 2), (bend, target_y),
                     (self.cx + self.outer * BOX_W / 2, target_y)], arrow=True, dashed=True, role=role)

    def embedding(self, what: str):
        d, p, stack = self.d, self.prefix, self.stack
        d.box(self.cx, self.y, what, "", kind="io", h=26)
        self.y += 26
        image = hasattr(stack.embed, "W_patch")
        self.arrow(self.shape("channels", "H", "W") if image else self.shape("pos"))
        emb = describe(stack.embed)
        self.y = d.box(self.cx, self.y, emb.title, emb.detail, kind="embed", role="embed", module=f"{p}embed")
        if stack.pos_embed is not None:
            self.arrow("", GAP * 0.6)
            d.plus(self.cx, self.y + 9)
            side = self.outer
            px = self.cx + side * (BOX_W / 2 + 70)
            pe = describe(stack.pos_embed)
            scheme = "learned" if hasattr(stack.pos_embed, "W_pos") else "sinusoidal"
            d.box(px, self.y - 8, pe.title, pe.detail, kind="pos", w=200, role="positional", scheme=scheme, module=f"{p}pos_embed")
            edge = px - side * 100
            d.line([(edge, self.y + 9), (self.cx + side * 9, self.y + 9)])
            self.y += 18
        if stack.ln_embed is not None:
            self.arrow("")
            self.y = self.norm_box(f"{p}ln_embed", stack.ln_embed, "trunk")
        attn = stack.blocks[0].attn
        if stack.pos_embed is None and attn.rotary is None and attn.score_bias is None:
            d.text(self.cx - self.skip * (BOX_W / 2 + 8), self.y - 20, "no positional information",
                   anchor="end" if self.skip > 0 else "start", cls="detail")

    def attention_box(self, name: str, attn, cross: bool):
        d = self.d
        desc = describe(attn)
        parts = [(f"{name}.{part}", getattr(attn, part)) for part in ("rotary", "score_bias", "q_norm", "k_norm")]
        parts = [(n, m) for n, m in parts if m is not None]
        title = desc.title + "".join(f" + {describe(m).title}" for n, m in parts if not n.endswith("_norm"))
        kind = "cross" if cross else "attn"
        start = self.y
        if not self.expanded:
            top = d.box(self.cx, self.y, title, desc.detail, kind=kind, role=kind, name=name, module=name)
            mid = self.y + BOX_H / 2
            self.y = top
        else:  # a caption bar, one box per head, then Concat · W_O
            bar = d.box(self.cx, self.y, title, f"q, k, v: [pos, d_head={attn.d_head}] per head", kind="head", h=28, role="heads", name=name, module=name)
            n = attn.n_heads
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
            self.y = d.box(self.cx, self.y, "Concat · W_O", f"[pos, {n}×{attn.d_head}] @ W_O [{n}, {attn.d_head}, {self.d_model}]",
                           kind=kind, role="W_O", name=name)
        side_y = start
        if not cross and getattr(self.model.config, "memory_len", 0):  # Transformer-XL: state, not a module
            self.side_box(side_y, mid, f"{name}.memory", describe_memory(self.model.config.memory_len), "pos", "segment-memory")
            side_y += BOX_H + 6
        for part_name, module in parts:
            part = describe(module)
            kind_ = "norm" if part_name.endswith("_norm") else "pos"
            self.side_box(side_y, mid, part_name, Description(f"{part.title} ({part_name.rsplit('.', 1)[-1]})" if kind_ == "norm" else part.title, detail=part.detail),
                          kind_, "attn-part")
            side_y += BOX_H + 6
        self.y = max(self.y, side_y - 6)
        return mid

    def mlp_box(self, name: str, mlp):
        d, desc = self.d, describe(mlp)
        if not self.expanded:
            self.y = d.box(self.cx, self.y, desc.title, desc.detail, kind="mlp", role="mlp", name=name, module=name)
            return
        d_mlp = mlp.W_out.shape[0]
        gated = hasattr(mlp, "W_gate")
        self.y = d.box(self.cx, self.y, "W_gate, W_in" if gated else "W_in", f"[d_model={self.d_model}, d_mlp={d_mlp}]" + (" each" if gated else ""),
                       kind="mlp", role="W_in", name=name, module=name)
        self.arrow(self.shape("pos", f"d_mlp={d_mlp}"))
        act = desc.title[desc.title.index("(") + 1 : desc.title.rindex(")")]
        self.y = d.box(self.cx, self.y, act, "act(gate) ⊙ linear" if gated else "element-wise", kind="mlp", h=28, role="act", name=name)
        self.arrow(self.shape("pos", f"d_mlp={d_mlp}"))
        self.y = d.box(self.cx, self.y, "W_out", f"[d_mlp={d_mlp}, d_model={self.d_model}]", kind="mlp", role="W_out", name=name)

    def sublayer(self, block, norm_name: str, body):
        """One residual sublayer: split, [norm], sublayer, ⊕, [norm], with its skip line beside it."""
        d = self.d
        norm = getattr(block, norm_name.rsplit(".", 1)[-1])
        has_norm = not isinstance(norm, NoNorm)
        pre = RESIDUAL_EQUATIONS[block.residual][2] == "branch"
        split = self.y + 8
        d.line([(self.cx, self.y), (self.cx, split)], arrow=False)
        d.dot(self.cx, split)
        self.y = split
        if pre and has_norm:
            self.arrow("")
            self.y = self.norm_box(norm_name, norm, "branch")
        self.arrow(self.resid() if not pre or not has_norm else "")
        body()
        post = getattr(block, norm_name.rsplit(".", 1)[-1] + "_post", None)  # Gemma 2 / 3: the sublayer's output normed too
        if post is not None:
            self.arrow("")
            self.y = self.norm_box(norm_name + "_post", post, "branch")
        self.arrow(self.resid(), GAP * 0.8)
        add = self.y + 9
        d.plus(self.cx, add)
        sx = self.cx + self.skip * (BOX_W / 2 + SKIP)
        d.line([(self.cx, split), (sx, split), (sx, add), (self.cx + self.skip * 9, add)], role="skip")
        self.y = add + 9
        if not pre and has_norm:
            self.arrow("", GAP * 0.6)
            self.y = self.norm_box(norm_name, norm, "trunk")

    def parallel(self, block, b: str) -> float:
        """GPT-J / GPT-NeoX's parallel block, x + Attn(Norm1(x)) + MLP(Norm2(x)): both branches read the same x
        and side by side (attention on the outer side, where its positional side boxes go), the trunk runs
        straight down between them, and one ⊕ sums the three. Returns the half-width the block's frame needs."""
        d, cx = self.d, self.cx
        off = BOX_W / 2 + 16  # each branch's centre, this far from the trunk
        split = self.y + 8
        d.line([(cx, self.y), (cx, split)], arrow=False)
        d.dot(cx, split)
        ends = []
        branches = ((self.outer, f"{b}.ln1", lambda: self.attention_box(f"{b}.attn", block.attn, cross=False)),
                    (-self.outer, f"{b}.ln2", lambda: self.mlp_box(f"{b}.mlp", block.mlp)))
        for side, norm_name, body in branches:
            self.cx, self.y = cx + side * off, split
            d.line([(cx, split), (self.cx, split)], arrow=False)
            norm = getattr(block, norm_name.rsplit(".", 1)[-1])
            if not isinstance(norm, NoNorm):
                self.arrow("")
                self.y = self.norm_box(norm_name, norm, "branch")
            self.arrow(self.resid())
            body()
            ends.append((self.cx, self.y))
        self.cx = cx
        add = max(y for _, y in ends) + GAP * 0.8 + 9
        for x, y in ends:
            d.line([(x, y), (x, add), (cx + (9 if x > cx else -9), add)])
        d.line([(cx, split), (cx, add - 9)], role="skip")  # the identity path: x itself
        d.plus(cx, add)
        self.y = add + 9
        return off + BOX_W / 2 + 14

    def block(self, i: int, label: str):
        start = self.y
        self.y += 10
        block, b = self.stack.blocks[i], f"{self.prefix}blocks.{i}"
        if getattr(block, "parallel", False):
            half = self.parallel(block, b)
            self.y += 10
            self.d.frame(self.cx - half, start, self.cx + half, self.y, label, "left" if self.skip < 0 else "right")
            return
        self.sublayer(block, f"{b}.ln1", lambda: self.attention_box(f"{b}.attn", block.attn, cross=False))
        if block.cross_attn is not None:
            self.arrow(self.resid())
            self.sublayer(block, f"{b}.ln_cross", lambda: self.cross_inputs.append(self.attention_box(f"{b}.cross_attn", block.cross_attn, cross=True)))
        if block.mlp is not None:
            self.arrow(self.resid())
            self.sublayer(block, f"{b}.ln2", lambda: self.mlp_box(f"{b}.mlp", block.mlp))
        self.y += 10
        left = self.cx - BOX_W / 2 - SKIP - 14
        right = self.cx + BOX_W / 2 + SKIP + 14
        self.d.frame(left, start, right, self.y, label, "left" if self.skip < 0 else "right")

    def blocks(self):
        n = len(self.stack.blocks)
        cfg = self.model.config  # blocks that differ (per-layer sizes, Gemma's local / global layers) are drawn one by one
        every = self.expanded or cfg.per_layer or getattr(cfg, "global_every", None) is not None
        for i in range(n if every else 1):
            self.arrow(self.resid())
            self.block(i, f"block {i}" if every else f"× {n}")

    def final_norm(self):
        self.arrow(self.resid())
        if not isinstance(self.stack.ln_final, NoNorm):
            self.y = self.norm_box(f"{self.prefix}ln_final", self.stack.ln_final, "trunk")
            self.arrow(self.resid())


def _title(model, expanded: bool) -> str:
    cfg = model.config
    n = f"{len(model.encoder.blocks)}+{len(model.blocks)} layers" if model.encoder is not None else f"{len(model.blocks)} layers"
    block = model.blocks[0]
    rule = RESIDUAL_EQUATIONS[block.residual][1]
    norm = "no norm" if isinstance(block.ln1, NoNorm) else f"{rule} ({describe(block.ln1).title})"
    view = "expanded" if expanded else "compact"
    heads = "/".join(str(b.attn.n_heads) for b in model.blocks) if cfg.per_layer else cfg.n_heads
    return f"{cfg.arch} · {n} · d_model={cfg.d_model} · {heads} heads · {norm} · {cfg.positional} positions · {view}"


def diagram(model, expanded: bool = False, residual_labels: list[str] | None = None) -> str:
    """The architecture of ``model`` (a :class:`~glassformer.Transformer`, or a :class:`ModelConfig`, which is
    built first) as an SVG document (a string), drawn from its modules. ``residual_labels`` (one name per
    residual dimension, e.g. a compiled RASP model's ``tokens=a``) are listed beside the residual stream."""
    if isinstance(model, ModelConfig):
        from glassformer.model.transformer import Transformer

        model = Transformer(model)
    d = _Drawing()
    if model.encoder is not None:
        enc = _Column(d, model, model.encoder, "encoder.", 0.0, -1, expanded, outer=-1)
        enc.embedding("source token ids")
        enc.blocks()
        enc.final_norm()
        memory_top = d.box(enc.cx, enc.y, f"memory m  [src_pos, d_model={model.config.d_model}]", "", kind="io", h=26, role="memory")
        column = _Column(d, model, model, "", BOX_W + 250.0, +1, expanded, outer=+1)
        column.embedding("target token ids (shifted right)")
        column.blocks()
        bus = (enc.cx + column.cx) / 2 - 6
        top = memory_top + 20
        d.line([(enc.cx, memory_top), (enc.cx, top), (bus, top)], arrow=False, role="memory")
        span = [top, *column.cross_inputs]
        d.line([(bus, min(span)), (bus, max(span))], arrow=False, role="memory")
        for y in column.cross_inputs:
            d.line([(bus, y), (column.cx - BOX_W / 2, y)], role="memory")
    else:
        column = _Column(d, model, model, "", 0.0, -1, expanded, outer=+1)
        column.embedding("image" if hasattr(model.embed, "W_patch") else "token ids")
        if residual_labels is not None:
            _residual_names(d, column, residual_labels)
        column.blocks()
    column.final_norm()
    _output(column, model)
    return d.svg(_title(model, expanded))


def _residual_names(d: _Drawing, col: _Column, labels: list[str]) -> None:
    """The residual stream's named dimensions (a compiled program's variables), grouped by variable, beside it."""
    if len(labels) != col.d_model:
        raise InputError(f"residual_labels has {len(labels)} names but the model has d_model = {col.d_model}")
    groups: dict[str, list[str]] = {}
    for label in labels:
        name, _, value = str(label).partition("=")
        groups.setdefault(name, []).append(value)
    lines = [f"residual stream: {len(labels)} named dimensions"]
    for name, values in groups.items():
        shown = ", ".join(v for v in values if v)
        lines.append(f"{name}" + (f" = {shown[:48]}{'…' if len(shown) > 48 else ''}" if shown else ""))
    top = col.y + 14 * len(lines)
    d.note(col.cx + col.outer * (BOX_W / 2 + 24), top, lines, "start" if col.outer > 0 else "end", role="residual-labels", n=len(labels))
    col.y = top


def _output(col: _Column, model) -> None:
    d, cfg = col.d, model.config
    if model.unembed_transform is not None:
        tr = describe(model.unembed_transform)
        col.y = d.box(col.cx, col.y, tr.title, tr.detail, kind="out", role="unembed_transform", module="unembed_transform")
        col.arrow(col.resid())
    if model.classifier is not None:  # the classifier reads position 0 of the final stream
        W = model.classifier.W
        detail = f"[d_model={W.shape[0]}, n_classes={W.shape[1]}] → class logits"
        if model.unembed is None:  # a vision model: the class token is all there is to read
            col.y = d.box(col.cx, col.y, "Classifier (class token)", detail, kind="out", role="classifier", module="classifier")
            col.arrow(col.shape(f"n_classes={W.shape[1]}"))
            d.box(col.cx, col.y, "class probabilities", "", kind="io", h=26)
            return
        cx, branch = col.cx + BOX_W / 2 + 130, col.y - GAP + 5
        d.line([(col.cx, branch), (cx, branch), (cx, col.y)])
        d.box(cx, col.y, "Classifier (position 0)", detail, kind="out", w=230, role="classifier", module="classifier")
    un = describe(model.unembed)
    col.y = d.box(col.cx, col.y, un.title, un.detail, kind="out", role="unembed", module="unembed")
    col.arrow(col.shape("pos", f"d_vocab_out={cfg.d_vocab_out}"))
    col.y = d.box(col.cx, col.y, "softmax", "", kind="out", h=26, role="softmax")
    col.arrow("")
    what = "next-token probabilities" if cfg.causal else "token probabilities (masked-LM)"
    d.box(col.cx, col.y, what, "", kind="io", h=26)


def save_diagram(model, path: str | Path, expanded: bool = False, residual_labels: list[str] | None = None) -> Path:
    """Write the SVG of ``model`` (a Transformer or a ModelConfig) to ``path``."""
    path = Path(path)
    path.write_text(diagram(model, expanded, residual_labels), encoding="utf-8")
    return path
