"""Every lens tool of this folder (head detectors, logit lens, HTML report) on every variant of the model: it
works, or refuses with an InputError whose message gives the reason (never a deep traceback)."""

import pytest
import torch

from glassformer import InputError, ModelConfig, Transformer
from glassformer.lens import detect_heads, logit_lens
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
CASES = [(name, tool) for name in VARIANTS for tool in ("detect_heads", "logit_lens")] + [(name, "report") for name in REPORTED]


@pytest.mark.parametrize("name,tool", CASES)
def test_every_lens_tool_works_or_says_why_not(name, tool):
    model, inputs = model_and_inputs(name)
    run = {"detect_heads": lambda: detect_heads(model, inputs), "logit_lens": lambda: logit_lens(model, inputs),
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
