"""TeX -> MathML: escaped characters inside \\mathrm / \\text read as the characters themselves."""

from glassformer.explain.mathml import to_mathml


def test_escaped_underscore_in_mathrm_is_an_underscore_not_a_backslash():
    out = to_mathml(r"x_{\mathrm{resid\_mid}} = x_{\mathrm{resid\_pre}} + \text{attn\_out}")
    assert "resid_mid" in out and "resid_pre" in out and "attn_out" in out
    assert "\\" not in out


def test_plain_mathrm_is_unchanged():
    assert "softmax" in to_mathml(r"\mathrm{softmax}(x)") and "\\" not in to_mathml(r"\mathrm{softmax}(x)")
