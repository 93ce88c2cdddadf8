"""Every lens tool of this folder (head detectors, logit lens, direct logit attribution, patching with the logit
difference, HTML report) on every variant of the model: it works, or refuses with an InputError whose message
gives the reason (never a deep traceback)."""

import pytest
import torch

from glassformer import InputError, ModelConfig, Transformer
from glassformer.lens import detect_heads, direct_logit_attribution, logit_diff_metric, logit_lens, patch_heads
from glassformer.lens.report import build_report

VARIANTS = {
    "t5": dict(positional="t5"),
    "sliding": dict(attention="sliding", window=3, positional="alibi"),
    "sparse": dict(attention="sparse", sparse_pattern="fixed"),
    "linear": dict(attention="linear", positional="rope"),
    "linformer": dict(arch="encoder", attention="linformer", linformer_k=4),
    "transformer-xl": dict(memory_len=4, positional="rope"),
    "vit": dict(arch="encoder", input="patches", image_size=4, patch_size=2, n_classes=3),
}
REFUSED = {  # (variant, tool) -> what the reason must say
    ("linformer", "detect_heads"): "over slots, not key positions",
    ("vit", "logit_lens"): "no unembedding",
}


def model_and_inputs(name: str):
    torch.manual_seed(0)
    model = Transformer(ModelConfig(d_model=16, n_layers=2, n_heads=2, d_vocab=10, n_ctx=16, **VARIANTS[name])).eval()
    if model.config.input == "patches":
        return model, torch.randn(2, 1, 4, 4)
    return model, torch.tensor([[1, 2, 3, 4, 1, 2, 3, 4], [5, 6, 7, 8, 5, 6, 7, 8]])


REPORTED = ("sparse", "linformer", "vit")  # the report (seconds each) where a variant changes what it can show;
# the others take the same paths as sparse (a dense pattern over positions), and a Transformer-XL is reported below
TOOLS = ("detect_heads", "logit_lens", "dla", "patch_heads")
CASES = [(name, tool) for name in VARIANTS for tool in TOOLS] + [(name, "report") for name in REPORTED]


@pytest.mark.parametrize("name,tool", CASES)
def test_every_lens_tool_works_or_says_why_not(name, tool):
    model, inputs = model_and_inputs(name)
    corrupted = inputs.flip(0)  # the other row: a different answer
    run = {"detect_heads": lambda: detect_heads(model, inputs), "logit_lens": lambda: logit_lens(model, inputs),
           "dla": lambda: direct_logit_attribution(model, inputs, 1, 2),  # a ViT: class 1 minus class 2
           "patch_heads": lambda: patch_heads(model, inputs, corrupted, logit_diff_metric(1, 2), normalize=False),
           "report": lambda: build_report(model, inputs)}[tool]
    reason = REFUSED.get((name, tool))
    if reason is not None:
        with pytest.raises(InputError, match=reason):
            run()
        return
    result = run()
    if tool == "detect_heads":  # previous-token and first-token apply to every variant; token detectors to token models
        assert result["previous_token"].shape == (2, 2) and torch.isfinite(result["previous_token"]).all()
        assert ("induction" in result) == (name != "vit")
    elif tool == "dla":  # the components sum to the model's logit difference (a ViT's: of its class logits)
        logits = model(inputs)
        want = logits[:, 1] - logits[:, 2] if name == "vit" else logits[:, -1, 1] - logits[:, -1, 2]
        torch.testing.assert_close(result.total, want, atol=1e-5, rtol=0)
        torch.testing.assert_close(result.values.sum(0), result.total, atol=1e-5, rtol=0)
    elif tool == "patch_heads":  # one finite value per head: [layers, heads]
        assert result.values.shape == (2, 2) and torch.isfinite(result.values).all()
    elif tool == "report":
        page, summary = result
        assert summary["prediction"] and page.count("<img") >= 3
        if name in ("linformer", "vit"):
            assert "Not available for this model" in page  # the section says why, the rest of the report is there


def test_a_long_transformer_xl_input_is_refused_by_the_detectors_but_reported():
    model, _ = model_and_inputs("transformer-xl")
    tokens = torch.randint(0, 10, (1, 40))  # 40 tokens, n_ctx = 16: three segments; the cache keeps the last
    with pytest.raises(InputError, match="segments of n_ctx = 16"):
        detect_heads(model, tokens)
    assert logit_lens(model, tokens).log_probs.shape[2] == 8  # the last segment
    page, _ = build_report(model, tokens)
    assert "Not available for this model" in page
