"""Every plot writes a real PNG or SVG, checks its inputs, and the HTML helpers inline what they are given."""

import base64

import pytest
import torch
from matplotlib.figure import Figure

from glassformer.errors import InputError
from glassformer.viz import html as H
from glassformer.viz.lens_plots import plot_attribution, plot_curves, plot_head_scores, plot_heatmap, plot_logit_lens, show_token
from glassformer.viz.patterns import plot_head, plot_layer, plot_token_attention

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def causal_pattern(heads: int, n: int) -> torch.Tensor:
    scores = torch.randn(heads, n, n, generator=torch.Generator().manual_seed(0))
    return scores.masked_fill(torch.ones(n, n).triu(1).bool(), float("-inf")).softmax(-1)  # [heads, n, n]


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 3_000


def test_pattern_plots(tmp_path):
    tokens = list("the cat sat")
    patterns = causal_pattern(3, len(tokens))
    assert isinstance(plot_head(patterns[0], tokens, path=tmp_path / "head.png"), Figure)
    plot_layer(patterns, tokens, layer=1, path=tmp_path / "layer.png")
    plot_token_attention(patterns[1], tokens, query=-1, path=tmp_path / "tokens.svg")
    for name in ("head.png", "layer.png"):
        assert_png(tmp_path / name)
    svg = (tmp_path / "tokens.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    with pytest.raises(InputError, match="query"):
        plot_token_attention(patterns[0], tokens, query=20)
    with pytest.raises(InputError, match="tokens"):
        plot_head(patterns[0], tokens[:-1])
    with pytest.raises(InputError, match="3-d"):
        plot_layer(patterns[0], tokens)


def test_lens_plots(tmp_path):
    plot_heatmap(torch.randn(2, 5), ["L0", "L1"], list("abcde"), diverging=True, path=tmp_path / "heat.png")
    plot_logit_lens(torch.rand(3, 4), [list("abcd")] * 3, ["0_pre", "1_pre", "final"], list("wxyz"), path=tmp_path / "lens.png")
    plot_attribution(torch.randn(30), [f"c{i}" for i in range(30)], top=10, path=tmp_path / "bars.png")
    plot_head_scores({"previous_token": torch.rand(2, 4), "induction": torch.rand(2, 4)}, path=tmp_path / "scores.png")
    plot_curves({"train": ([1, 2, 3], [0.1, 0.5, 1.0]), "test": ([1, 2, 3], [0.0, 0.1, 0.9])}, logx=True, path=tmp_path / "curves.png")
    for name in ("heat.png", "lens.png", "bars.png", "scores.png", "curves.png"):
        assert_png(tmp_path / name)
    with pytest.raises(InputError, match="labels"):
        plot_heatmap(torch.randn(2, 5), ["L0"], list("abcde"))
    with pytest.raises(InputError, match="layers"):
        plot_logit_lens(torch.rand(3, 4), [list("abcd")] * 3, ["a", "b"], list("wxyz"))
    assert show_token(" ") == "␣" and show_token("\n") == "⏎" and len(show_token("a" * 20)) == 8


def test_html_helpers_inline_and_escape():
    fig = plot_curves({"x": ([0, 1], [0, 1])})
    uri = H.figure_data_uri(fig)
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1])[:8] == PNG_MAGIC
    assert H.figure_data_uri(fig, "svg").startswith("data:image/svg+xml;base64,")
    page = H.page("a <b> title", [("Section & one", H.table(["k"], [["<script>"]]) + H.img(fig, "plot"))])
    assert "<script>" not in page and "&lt;script&gt;" in page and "a &lt;b&gt; title" in page
    assert page.count("<img") == 1 and "http" not in page.replace('name="viewport"', "")
    with pytest.raises(InputError, match="png or svg"):
        H.figure_data_uri(fig, "jpg")
