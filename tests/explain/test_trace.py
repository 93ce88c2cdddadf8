"""The explain document: its numbers, read back from the Markdown and the HTML, are the model's numbers."""

import math
import re
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

from glassformer import InputError, ModelConfig, Transformer
from glassformer.explain import reference as ref
from glassformer.explain import reference_variants as rv
from glassformer.explain import trace as explain_trace
from glassformer.explain.mathml import to_mathml

CAPTION = re.compile(r"^\*\*(?P<caption>.+?)\*\* · `(?P<source>.+?)` \((?P<kind>hook|param|derived)\) · shape \[(?P<shape>.*?)\]$")


def number(text: str) -> float:
    return {"−∞": -math.inf, "∞": math.inf}.get(text, None) if text in ("−∞", "∞") else float(text)


def label_index(text: str) -> int | None:
    """Row/column headers start with the index they show ("3 c" -> 3); ⋮ ⋯ — have none."""
    m = re.match(r"^(\d+)", text)
    return int(m.group(1)) if m else None


def split_source(source: str) -> tuple[str, tuple]:
    m = re.match(r"^(.*?)(\[[^\[\]]*\])?$", source)
    name, index = m.group(1), m.group(2)
    parts = [] if not index else [p.strip() for p in index[1:-1].split(",")]
    return name, tuple(slice(int(p[:-1]) if p[:-1] else None, None) if p.endswith(":") else int(p) for p in parts)


def parse_markdown(md: str) -> list[dict]:
    """Every tensor table: its source and the (row, col) -> value cells it shows."""
    lines, tables, i = md.splitlines(), [], 0
    while i < len(lines):
        m = CAPTION.match(lines[i])
        if not m:
            i += 1
            continue
        header = [c.strip() for c in lines[i + 2].strip("|").split("|")][1:]
        cols = [label_index(c) for c in header]
        cells, j = {}, i + 4
        while j < len(lines) and lines[j].startswith("|"):
            row = [c.strip() for c in re.split(r"(?<!\\)\|", lines[j].strip()[1:-1])]
            r = None if row[0] == "—" else label_index(row[0])
            if row[0] != "⋮":
                for c, text in zip(cols, row[1:]):
                    if c is not None:
                        cells[(r, c)] = number(text)
            j += 1
        tables.append(dict(source=m.group("source"), kind=m.group("kind"), cells=cells))
        i = j
    return tables


class TensorTables(HTMLParser):
    """Collects <figure class="tensor"> tables from the HTML trace."""

    def __init__(self):
        super().__init__()
        self.tables, self.current, self.cell, self.in_head, self.row = [], None, None, False, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "figure" and attrs.get("class") == "tensor":
            self.current = dict(source=attrs["data-name"] + attrs["data-index"], kind=attrs["data-source"], cells={}, cols=[])
        elif self.current is not None:
            if tag == "thead":
                self.in_head = True
            elif tag == "tr":
                self.row = []
            elif tag in ("td", "th"):
                self.cell = ""

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data

    def handle_endtag(self, tag):
        if self.current is None:
            return
        if tag in ("td", "th"):
            self.row.append(self.cell.strip())
            self.cell = None
        elif tag == "tr":
            if self.in_head:
                self.current["cols"] = [label_index(c) for c in self.row[1:]]
            elif self.row[0] != "⋮":
                r = None if self.row[0] == "—" else label_index(self.row[0])
                for c, text in zip(self.current["cols"], self.row[1:]):
                    if c is not None:
                        self.current["cells"][(r, c)] = number(text)
        elif tag == "thead":
            self.in_head = False
        elif tag == "figure":
            self.tables.append(self.current)
            self.current = None


def truth(model, cache, kind: str, source: str, image=None) -> np.ndarray:
    """What a table claims to show, computed independently from the model and run_with_cache."""
    name, index = split_source(source)
    if kind == "hook":
        return cache[name].double().numpy()[index]
    if kind == "param":
        return model.state_dict()[name].double().numpy()[index]
    if name == "softmax(logits)":
        return torch.softmax(cache["logits"].double(), -1).numpy()[index]
    if " + " in name and "@" not in name:
        a, b = name.split(" + ")
        return (cache[a].double() + cache[b].double()).numpy()[index]
    if name == "ln_final[0, 0] @ classifier.W + classifier.b":
        return (cache["ln_final"][0, 0].double() @ model.classifier.W.double() + model.classifier.b.double()).detach().numpy()
    if name.endswith(".score_bias"):  # ALiBi / T5: recomputed by the NumPy reference's own equations
        attn, cfg = model.get_submodule(name.rsplit(".", 1)[0]), model.config
        n_q, n_k = cache[name.replace("score_bias", "q")].shape[1], cache[name.replace("score_bias", "k")].shape[1]
        q_pos, k_pos = np.arange(n_k - n_q, n_k), np.arange(n_k)
        if cfg.positional == "alibi":
            return ref.alibi_bias(cfg.n_heads, q_pos, k_pos)[index]
        W = attn.score_bias.W_bias.detach().double().numpy()
        return rv.t5_bias(W, q_pos, k_pos, not attn.causal, cfg.t5_max_distance)[index]
    if name.endswith(".E @ k") or name.endswith(".F @ v"):  # Linformer's projected keys / values
        a, what = name.split(".E @ " if "E @" in name else ".F @ ")
        E = model.state_dict()[f"{a}.{'E' if what == 'k' else 'F'}"].double().numpy()
        return rv.linformer_project(E, cache[f"{a}.{what}"].double().numpy())[index]
    if name == "image_patches(image)":
        return rv.image_patches(image.double().numpy(), model.config.patch_size)[index]
    raise AssertionError(f"the test does not know the derived tensor {name!r}")


def check_tables(model, cache, tables, image=None) -> set[str]:
    assert tables
    checked = set()
    for t in tables:
        expected = truth(model, cache, t["kind"], t["source"], image)
        assert t["cells"], t["source"]
        # float32 rounding: an entry near zero (cancellation) is only as exact as the tensor's scale allows
        tiny = 1e-5 * float(np.nanmax(np.abs(np.where(np.isinf(expected), np.nan, expected)))) + 1e-9
        for (r, c), shown in t["cells"].items():
            value = expected[c] if r is None else expected[r, c]
            if math.isinf(shown):
                assert value == shown, (t["source"], r, c)
            else:
                assert shown == pytest.approx(value, rel=6e-4, abs=tiny), (t["source"], r, c, shown, value)
        if t["kind"] == "hook":
            checked.add(split_source(t["source"])[0])
    return checked


CASES = [
    (dict(arch="decoder"), None),
    (dict(arch="decoder", norm_position="post", norm="rmsnorm", positional="sinusoidal", n_kv_heads=1, act="relu"), None),
    (dict(arch="decoder", positional="rope", tie_embeddings=True, bias=False, attn_only=True), None),
    (dict(arch="decoder", positional="alibi", d_mlp=20), None),
    (dict(arch="encoder", n_classes=3, positional="none"), None),
    (dict(arch="encoder-decoder", n_decoder_layers=1), [5, 4, 3]),
    (dict(arch="encoder", embed_norm=True, unembed_transform=True, norm_position="post"), None),  # BERT
    (dict(arch="decoder", qk_norm=True, act="swiglu", norm="rmsnorm", positional="rope", n_kv_heads=1), None),
]


@pytest.mark.parametrize("overrides,src", CASES)
def test_trace_numbers_are_the_models_numbers(overrides, src):
    torch.manual_seed(1)
    model = Transformer(ModelConfig(**{**dict(d_model=4, n_layers=2, n_heads=2, d_vocab=7, n_ctx=12), **overrides})).eval()
    with torch.no_grad():  # gains and biases away from 1 and 0, so a swapped parameter would show
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    tokens = [1, 2, 3, 4, 5, 6, 0, 1, 2, 3][: 10 if overrides.get("d_mlp") else 5]
    doc = explain_trace(model, tokens, src=src)
    kwargs = {"src": torch.tensor([src])} if src else {}
    _, cache = model.run_with_cache(torch.tensor([tokens]), **kwargs)
    md_tables = parse_markdown(doc.to_markdown())
    parser = TensorTables()
    parser.feed(doc.to_html())
    assert len(parser.tables) == len(md_tables)
    shown = check_tables(model, cache, md_tables)
    assert check_tables(model, cache, parser.tables) == shown
    # every hook point's numbers appear, under its own name or (residual aliases) under another one
    for name in set(cache) - shown:
        assert any(torch.equal(cache[name], cache[other]) for other in shown), name


def test_elided_tensors_show_first_and_last_entries():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(d_model=16, n_layers=1, n_heads=2, d_vocab=40, n_ctx=32)).eval()
    tokens = list(range(20))
    doc = explain_trace(model, tokens, max_rows=6, max_cols=4)
    md = doc.to_markdown()
    assert "⋮" in md and "⋯" in md
    tables = parse_markdown(md)
    _, cache = model.run_with_cache(torch.tensor([tokens]))
    check_tables(model, cache, tables)
    pattern = next(t for t in tables if t["source"] == "blocks.0.attn.pattern[0, 0]")
    assert {r for r, _ in pattern["cells"]} == {0, 1, 2, 17, 18, 19}
    assert {c for _, c in pattern["cells"]} == {0, 1, 18, 19}


def test_softmax_rows_and_the_causal_mask_are_written_out():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(d_model=4, n_layers=1, n_heads=1, d_vocab=5, n_ctx=8)).eval()
    md = explain_trace(model, [0, 1, 2]).to_markdown()
    assert "row 0 #0: s = [" in md and "−∞" in md  # the first query sees only itself
    assert "[pos=3, d_model=4] @ [d_model=4, d_head=4] -> [pos=3, d_head=4]" in md
    _, cache = model.run_with_cache(torch.tensor([[0, 1, 2]]))
    pattern = cache["blocks.0.attn.pattern"][0, 0]
    last_row = re.search(r"row 2 #2: .*pattern = \[(.*?)\]", md).group(1)
    assert [float(x) for x in last_row.split(", ")] == pytest.approx(pattern[2].tolist(), rel=6e-4)


def test_html_is_self_contained_and_typeset():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(d_model=4, n_layers=1, n_heads=2, d_vocab=5, n_ctx=8))
    html = explain_trace(model, [0, 1, 2]).to_html()
    assert html.startswith("<!DOCTYPE html>") and "<math" in html and "<msqrt>" in html
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/1998/Math/MathML", "")
    assert "https://" not in html and "$$" not in html


def test_save_picks_the_format_from_the_suffix(tmp_path):
    model = Transformer(ModelConfig(d_model=4, n_layers=1, n_heads=1, d_vocab=5, n_ctx=8))
    doc = explain_trace(model, [1, 2])
    assert doc.save(tmp_path / "a.md").read_text().startswith("# Forward pass")
    assert doc.save(tmp_path / "a.html").read_text().startswith("<!DOCTYPE html>")
    with pytest.raises(InputError, match=r"\.md or \.html"):
        doc.save(tmp_path / "a.txt")


VARIANTS = [  # every variant beyond the 2017 family, each written out with its own equation
    (dict(arch="decoder", positional="t5", t5_buckets=8, t5_max_distance=16), r"\mathrm{bucket}(j - i)"),
    (dict(arch="encoder", attention="sliding", window=2, positional="alibi"), r"|i - j| < 2"),
    (dict(arch="decoder", attention="sparse", sparse_pattern="fixed", stride=2, positional="rope"), r"\bmod 2"),
    (dict(arch="decoder", attention="linear", qk_norm=True, positional="none"), r"\mathrm{elu}(x) + 1"),
    (dict(arch="encoder", attention="linformer", linformer_k=3, n_kv_heads=1), "E_{[:, :n]}"),
    (dict(arch="decoder", memory_len=3, positional="rope", n_ctx=4), r"\mathrm{SG}(\mathrm{mem}_l)"),
    (dict(arch="encoder", input="patches", image_size=4, patch_size=2, n_classes=3, n_ctx=5), "W_{\\mathrm{cls}}"),
]


@pytest.mark.parametrize("overrides,equation", VARIANTS)
def test_every_variant_is_traced_with_its_own_equation(overrides, equation):
    torch.manual_seed(2)
    model = Transformer(ModelConfig(**{**dict(d_model=4, n_layers=2, n_heads=2, d_vocab=7, n_ctx=12), **overrides})).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    image = torch.randn(1, 1, 4, 4) if model.config.input == "patches" else None
    inputs = image if image is not None else torch.tensor([[1, 2, 3, 4, 5, 6]])  # 6 tokens: two segments at n_ctx = 4
    doc = explain_trace(model, image[0] if image is not None else inputs[0])
    _, cache = model.run_with_cache(inputs)
    md = doc.to_markdown()
    assert equation in md, equation
    parser = TensorTables()
    parser.feed(doc.to_html())
    shown = check_tables(model, cache, parse_markdown(md), image)
    assert check_tables(model, cache, parser.tables, image) == shown
    assert {n for n in cache if n.endswith(("attn.scores", "attn.pattern"))} <= shown


def test_a_transformer_xl_trace_shows_the_memory_as_the_first_keys():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(d_model=4, n_layers=1, n_heads=1, d_vocab=7, n_ctx=4, memory_len=3, positional="alibi")).eval()
    md = explain_trace(model, [1, 2, 3, 4, 5, 6]).to_markdown()  # segments [1 2 3 4] [5 6]: the trace shows the last
    assert "Transformer-XL memory" in md and "the first 3 rows of k and v below (keys 0..2) come from the memory" in md
    assert "| 0 #2 | 1 #3 | 2 #4 | 3 #5 | 4 #6 |" in md  # keys: tokens 2 3 4 remembered, then the segment's 5 6
    pattern = next(t for t in parse_markdown(md) if t["source"] == "blocks.0.attn.pattern[0, 0]")
    assert {c for _, c in pattern["cells"]} == {0, 1, 2, 3, 4} and {r for r, _ in pattern["cells"]} == {0, 1}


def test_residual_labels_name_the_columns_of_the_residual_stream():
    model = Transformer(ModelConfig(d_model=4, n_layers=1, n_heads=1, d_vocab=5, n_ctx=8)).eval()
    names = ["bos", "tokens=a", "tokens=b", "indices=0"]
    md = explain_trace(model, [1, 2], residual_labels=names).to_markdown()
    assert "| tokens=a |" in md.replace("  ", " ") or "tokens=a" in md
    with pytest.raises(InputError, match="d_model = 4"):
        explain_trace(model, [1, 2], residual_labels=names[:3])


def test_bad_inputs_are_named():
    model = Transformer(ModelConfig(d_model=4, n_layers=1, n_heads=1, d_vocab=5, n_ctx=8))
    with pytest.raises(InputError, match="outside the vocabulary"):
        explain_trace(model, [1, 9])
    with pytest.raises(InputError, match="integer token ids"):
        explain_trace(model, [])
    with pytest.raises(InputError, match="no source"):
        explain_trace(model, [1], src=[2])
    enc_dec = Transformer(ModelConfig(arch="encoder-decoder", d_model=4, n_layers=1, n_heads=1, d_vocab=5, n_ctx=8))
    with pytest.raises(InputError, match="source sequence"):
        explain_trace(enc_dec, [1])


def test_mathml_translation():
    assert to_mathml(r"\frac{a}{b}") == '<math xmlns="http://www.w3.org/1998/Math/MathML" display="block"><mfrac><mrow><mi>a</mi></mrow><mrow><mi>b</mi></mrow></mfrac></math>'
    assert "<msubsup><mi>W</mi><mrow><mi>Q</mi></mrow><mrow><mn>0</mn></mrow></msubsup>" in to_mathml("W_{Q}^{0}")
    assert "<mi>σ</mi>" in to_mathml(r"\sigma") and "<mo>⊙</mo>" in to_mathml(r"a \odot b")
    with pytest.raises(InputError, match="unknown command"):
        to_mathml(r"\sigmaa")
    with pytest.raises(InputError, match="unclosed"):
        to_mathml(r"x_{1")


def test_the_trace_is_plain_data_for_other_programs():
    import json

    torch.manual_seed(0)
    model = Transformer(ModelConfig(d_model=4, n_layers=1, n_heads=1, d_vocab=5, n_ctx=8, attention="sliding", window=2)).eval()
    data = json.loads(json.dumps(explain_trace(model, [0, 1, 2]).to_dict(), allow_nan=False))  # strict JSON
    steps = [st for s in data["sections"] for st in s["steps"]]
    scores = next(st for st in steps if st["title"].endswith("head 0: scores"))
    assert r"0 \le i - j < 2" in scores["equations"][0]
    table = scores["tensors"][0]
    _, cache = model.run_with_cache(torch.tensor([[0, 1, 2]]))
    expected = cache["blocks.0.attn.scores"][0, 0]
    assert table["shape"] == [3, 3] and table["infinite"][2][0] and table["values"][2][0] is None  # -inf: null + flag
    assert table["values"][2][2] == pytest.approx(float(expected[2, 2]))
