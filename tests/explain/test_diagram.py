"""Architecture diagrams: valid SVG whose structure follows the config."""

import re
import xml.etree.ElementTree as ET

import pytest

from glassformer import ModelConfig
from glassformer.explain.diagram import diagram, save_diagram

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str):
    root = ET.fromstring(svg)
    groups = [g for g in root.iter(f"{SVG}g")]
    boxes = [g for g in groups if g.get("data-role")]
    return root, boxes


def role(boxes, name):
    return [b for b in boxes if b.get("data-role") == name]


def box_y(group) -> float:
    """Vertical centre of a box or ⊕ (SVG y grows downwards)."""
    rect = group.find(f"{SVG}rect")
    if rect is not None:
        return float(rect.get("y")) + float(rect.get("height")) / 2
    return float(group.find(f"{SVG}circle").get("cy"))


def cfg(**kw):
    return ModelConfig(**{**dict(d_model=64, n_layers=2, n_heads=4, d_vocab=50, n_ctx=64), **kw})


@pytest.mark.parametrize("position", ["pre", "post"])
def test_norm_placement_differs_between_pre_and_post_ln(position):
    root, boxes = parse(diagram(cfg(norm_position=position), expanded=True))
    norms = [b for b in role(boxes, "norm") if ".blocks." in "." + b.get("data-name")]
    assert len(norms) == 4  # ln1 and ln2 of two blocks
    assert {b.get("data-on") for b in norms} == {"branch" if position == "pre" else "trunk"}
    ln1 = next(b for b in norms if b.get("data-name") == "blocks.0.ln1")
    adds = sorted(role(boxes, "add"), key=box_y, reverse=True)  # lowest on the page first
    first_block_add = adds[1] if role(boxes, "positional") else adds[0]  # skip the embedding's ⊕
    attn = next(b for b in role(boxes, "W_O") if b.get("data-name") == "blocks.0.attn")
    if position == "pre":  # norm, then attention, then ⊕ (reading upwards: larger SVG y first)
        assert box_y(ln1) > box_y(attn) > box_y(first_block_add)
    else:  # attention, ⊕, then the norm on the trunk
        assert box_y(attn) > box_y(first_block_add) > box_y(ln1)
    final = [b for b in role(boxes, "norm") if b.get("data-name") == "ln_final"]
    assert len(final) == (1 if position == "pre" else 0)  # Post-LN needs no final norm


def test_compact_and_expanded_views():
    c = cfg(n_layers=3, n_heads=4, d_mlp=100)
    compact, expanded = diagram(c), diagram(c, expanded=True)
    _, cb = parse(compact)
    _, eb = parse(expanded)
    assert len(role(cb, "head")) == 0 and len(role(cb, "attn")) == 1 and "× 3" in compact
    assert len(role(eb, "head")) == 3 * 4 and len(role(eb, "W_O")) == 3
    assert len(role(eb, "W_in")) == 3 and len(role(eb, "act")) == 3
    for shape in ("[pos, d_model=64]", "[pos, d_vocab_out=50]", "[pos]"):
        assert shape in compact and shape in expanded
    assert "[pos, d_mlp=100]" in expanded


def test_encoder_decoder_has_cross_attention_fed_by_the_memory():
    c = cfg(arch="encoder-decoder", n_layers=2, n_decoder_layers=3)
    for expanded, n_cross in ((False, 1), (True, 3)):
        root, boxes = parse(diagram(c, expanded=expanded))
        cross = [b for b in boxes if b.get("data-name", "").endswith("cross_attn") and b.get("data-role") in ("cross", "W_O")]
        assert len(cross) == n_cross
        memory_arrows = [p for p in root.iter(f"{SVG}polyline") if p.get("data-role") == "memory" and p.get("marker-end")]
        assert len(memory_arrows) == n_cross
        assert len(role(boxes, "memory")) == 1
        assert any(b.get("data-name", "").startswith("encoder.blocks.") for b in boxes)


def test_positional_schemes_are_drawn_where_they_act():
    _, learned = parse(diagram(cfg(positional="learned")))
    assert [b.get("data-scheme") for b in role(learned, "positional")] == ["learned"]
    _, sinus = parse(diagram(cfg(positional="sinusoidal")))
    assert [b.get("data-scheme") for b in role(sinus, "positional")] == ["sinusoidal"]
    for scheme, label in (("rope", "RoPE"), ("alibi", "ALiBi")):
        svg = diagram(cfg(positional=scheme))
        assert not role(parse(svg)[1], "positional") and f"Masked self-attention + {label}" in svg


def test_encoder_classifier_tied_unembedding_and_no_norm():
    svg = diagram(cfg(arch="encoder", n_classes=3, tie_embeddings=True, norm="none"))
    _, boxes = parse(svg)
    assert len(role(boxes, "classifier")) == 1 and "n_classes=3" in svg
    assert "W_Eᵀ (tied)" in svg and not role(boxes, "norm")
    assert "Self-attention" in svg and "Masked" not in svg


def test_many_heads_are_elided_and_the_file_is_written(tmp_path):
    path = save_diagram(cfg(n_heads=16, n_layers=1), tmp_path / "a.svg", expanded=True)
    _, boxes = parse(path.read_text())
    assert len(role(boxes, "head")) == 10 and "…" in path.read_text()
    width = float(re.search(r'width="(\d+)"', path.read_text()).group(1))
    assert 300 < width < 2000


def every_variant():
    """One small config per value of every categorical field (CHOICES), and the switches beside them."""
    from glassformer.model.config import CHOICES

    needs = {  # what a value needs besides itself
        ("attention", "sliding"): dict(window=3), ("attention", "linformer"): dict(arch="encoder", linformer_k=4),
        ("input", "patches"): dict(arch="encoder", image_size=4, patch_size=2, n_classes=3),
        ("norm", "none"): dict(final_norm=False),
    }
    for field, values in CHOICES.items():
        for value in values:
            yield {field: value, **needs.get((field, value), {})}
    yield from (dict(memory_len=4, positional="rope"), dict(qk_norm=True, n_kv_heads=2), dict(attn_only=True, tie_embeddings=True),
                dict(arch="encoder", embed_norm=True, unembed_transform=True, n_classes=2),
                dict(arch="encoder-decoder", positional="t5", attention="sparse", act="swiglu"))


def drawn_components(model):
    """The modules a diagram must show: every component that describes itself (attention's parts included),
    and the classifier, but not the inner parts of other components (the MLM transform's own norm) nor the
    identity (NoNorm: norm="none")."""
    from glassformer.model.attention import Attention
    from glassformer.model.norms import NoNorm

    names = [n for n, m in model.named_modules() if n and (hasattr(m, "describe") or n == "classifier") and not isinstance(m, NoNorm)]
    inside = lambda n: any(n.startswith(o + ".") and not isinstance(model.get_submodule(o), Attention) for o in names)  # noqa: E731
    return {n for n in names if not inside(n)}


@pytest.mark.parametrize("overrides", list(every_variant()), ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_every_module_of_every_variant_is_drawn(overrides):
    from glassformer import Transformer

    model = Transformer(cfg(n_layers=2, d_model=16, n_ctx=16, **overrides))
    root, boxes = parse(diagram(model, expanded=True))
    drawn = {b.get("data-module") for b in boxes if b.get("data-module")}
    assert drawn_components(model) <= drawn, drawn_components(model) - drawn
    _, compact = parse(diagram(model))
    first_block = {n for n in drawn_components(model) if ".blocks." not in f".{n}" or ".blocks.0." in f".{n}"}
    assert first_block <= {b.get("data-module") for b in compact}, first_block - {b.get("data-module") for b in compact}
    if model.config.memory_len:
        assert role(boxes, "segment-memory")
    if model.config.input == "patches":
        assert "Patch embedding" in diagram(model) and "Token embedding" not in diagram(model)


def test_a_compiled_models_residual_names_are_listed():
    names = ["one", "tokens=a", "tokens=b", "indices=0", "indices=1", "frac_prevs"] + [f"x={i}" for i in range(10)]
    svg = diagram(cfg(d_model=16, n_heads=2, norm="none", final_norm=False), residual_labels=names)
    root, boxes = parse(svg)
    note = role(boxes, "residual-labels")
    assert len(note) == 1 and note[0].get("data-n") == "16"
    assert "tokens = a, b" in svg and "indices = 0, 1" in svg and "frac_prevs" in svg
    with pytest.raises(ValueError, match="d_model = 16"):
        diagram(cfg(d_model=16, n_heads=2), residual_labels=names[:3])


def box_x(group) -> float:
    rect = group.find(f"{SVG}rect")
    return float(rect.get("x")) + float(rect.get("width")) / 2


def test_parallel_block_draws_its_branches_side_by_side_into_one_sum():
    """GPT-NeoX / Pythia: x + Attn(LN1 x) + MLP(LN2 x). Both branches read the block's input, so they are drawn
    beside each other (not one after the other) and one ⊕ per block adds both to the trunk."""
    sequential = cfg(positional="rope", n_layers=2)
    parallel = cfg(positional="rope", n_layers=2, parallel_residual=True)
    _, seq_boxes = parse(diagram(sequential, expanded=True))
    _, par_boxes = parse(diagram(parallel, expanded=True))
    assert len(role(par_boxes, "add")) == len(role(seq_boxes, "add")) - 2  # one ⊕ per block instead of two
    for i in range(2):
        attn = next(b for b in role(par_boxes, "W_O") if b.get("data-name") == f"blocks.{i}.attn")
        w_in = next(b for b in role(par_boxes, "W_in") if b.get("data-name") == f"blocks.{i}.mlp")
        ln1, ln2 = (next(b for b in role(par_boxes, "norm") if b.get("data-name") == f"blocks.{i}.{n}") for n in ("ln1", "ln2"))
        assert box_x(attn) != box_x(w_in) and box_x(ln1) == box_x(attn) and box_x(ln2) == box_x(w_in)
        assert box_y(ln1) == box_y(ln2)  # both norms read the same x, at the same height
    seq_ln2 = next(b for b in role(seq_boxes, "norm") if b.get("data-name") == "blocks.0.ln2")
    assert box_y(seq_ln2) != box_y(next(b for b in role(seq_boxes, "norm") if b.get("data-name") == "blocks.0.ln1"))
    compact = diagram(parallel)
    assert "× 2" in compact and len(role(parse(compact)[1], "add")) == len(role(parse(diagram(sequential))[1], "add")) - 1


def test_compact_view_draws_alternating_local_and_global_layers_one_by_one():
    """Gemma 2 / 3: sliding-window layers with a global one every ``global_every``: one block cannot stand for
    all, so even the compact view draws each block (the global one says 'full')."""
    c = cfg(n_layers=4, attention="sliding", window=8, global_every=2)
    svg = diagram(c)
    _, boxes = parse(svg)
    assert "× 4" not in svg and len(role(boxes, "attn")) == 4
    titles = [b.find(f"{SVG}text").text for b in role(boxes, "attn")]
    assert len(set(titles)) == 2  # sliding and global attention look different
