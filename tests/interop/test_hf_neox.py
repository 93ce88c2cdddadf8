"""GPT-NeoX / Pythia: partial rotary embeddings and the parallel residual give HF's logits within 1e-4,
with and without the KV cache; a saved folder imports with the same result."""

import pytest
import torch
from hf_models import VOCAB, assert_logits_match, randomize, tokens

from glassformer import ModelConfig, Transformer
from glassformer.errors import ConfigError
from glassformer.interop import from_hf

transformers = pytest.importorskip("transformers")


def neox(**overrides):
    kwargs = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                  max_position_embeddings=64, rotary_pct=0.25, rotary_emb_base=500)
    return randomize(transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(**{**kwargs, **overrides})))


@pytest.mark.parametrize("parallel", [True, False])
def test_neox_logits_match_hf(parallel, tmp_path):
    hf = neox(use_parallel_residual=parallel, rotary_pct=0.5 if parallel else 0.25)
    model = from_hf(hf)
    c = model.config
    assert (c.positional, c.rope_fraction, c.rope_base, c.parallel_residual) == ("rope", 0.5 if parallel else 0.25, 500.0, parallel)
    x = tokens(pos=20)
    with torch.no_grad():
        assert_logits_match(model(x), hf(x).logits)
        cache = model.new_cache()
        model(x[:, :10], cache=cache)
        torch.testing.assert_close(model(x[:, 10:], cache=cache), hf(x).logits[:, 10:], atol=1e-4, rtol=0)
    hf.save_pretrained(tmp_path / "pythia")
    with torch.no_grad():
        assert_logits_match(from_hf(tmp_path / "pythia")(x), hf(x).logits)


def test_parallel_residual_is_its_equation():
    """resid_post = resid_pre + Attn(LN1(resid_pre)) + MLP(LN2(resid_pre)): both sublayers read the input."""
    model = Transformer(ModelConfig(arch="decoder", d_model=16, n_layers=1, n_heads=2, d_vocab=10, n_ctx=8, parallel_residual=True))
    _, cache = model.run_with_cache(torch.randint(0, 10, (2, 5)))
    block, x = model.blocks[0], cache["blocks.0.resid_pre"]
    torch.testing.assert_close(cache["blocks.0.mlp_out"], block.mlp(block.ln2(x)))
    torch.testing.assert_close(cache["blocks.0.resid_post"], x + cache["blocks.0.attn_out"] + cache["blocks.0.mlp_out"])
    with pytest.raises(ConfigError, match="parallel_residual needs norm_position='pre'"):
        ModelConfig(parallel_residual=True, norm_position="post")


def test_explain_writes_out_an_imported_pythia(tmp_path, capsys):
    """The parallel block in the NumPy reference equals the imported model at every hook (float64), and the explain
    trace shows it: both norms read x, one residual step adds both outputs, every number the model's own."""
    import numpy as np

    from glassformer.cli import main
    from glassformer.explain import reference as ref
    from glassformer.explain.trace import trace

    hf = neox(use_parallel_residual=True, rotary_pct=0.5)
    model = from_hf(hf).double()
    x = tokens(pos=9)
    logits, cache = model.run_with_cache(x)
    recorded = {}
    ref_logits = ref.forward(ref.params_of(model), model.config, x.numpy(), record=recorded.__setitem__)
    assert set(recorded) == set(cache), set(recorded) ^ set(cache)
    for name, value in cache.items():
        np.testing.assert_allclose(recorded[name], value.numpy(), rtol=1e-9, atol=1e-10, err_msg=name)
    np.testing.assert_allclose(ref_logits, logits.detach().numpy(), rtol=1e-9, atol=1e-10)

    doc = trace(model, x[0])
    block = next(s for s in doc.sections if s.title == "Block 1")
    assert "Parallel residual" in block.intro
    titles = [step.title for step in block.steps]
    assert titles[-1] == "Residual addition of both sublayers" and sum("Residual addition" in t for t in titles) == 1
    ln2 = next(step for step in block.steps if step.title.startswith("Norm before the MLP"))
    assert ln2.tensors[0].name == "blocks.1.resid_pre"  # the MLP's norm reads the block's input, not resid_mid
    shown = [t for s in doc.sections for step in s.steps for t in step.tensors if t.source == "hook"]
    assert {"blocks.1.resid_mid", "blocks.1.mlp_out", "blocks.1.resid_post", "blocks.1.ln2"} <= {t.name for t in shown}
    for t in shown:  # every number shown is the model's: its index reads "[0, :, 1, :]", "[0, 3:]" or ""
        parts = t.index.strip("[]").split(", ") if t.index else []
        index = tuple(slice(None) if p == ":" else slice(int(p[:-1]), None) if p.endswith(":") else int(p) for p in parts)
        np.testing.assert_allclose(t.values, cache[t.name].numpy()[index], rtol=1e-12)

    hf.save_pretrained(tmp_path / "pythia")
    assert main(["import", str(tmp_path / "pythia"), "--out", str(tmp_path / "run"), "--no-tokenizer"]) == 0
    assert main(["explain", str(tmp_path / "run"), "--input", "3,1,4,1,5", "--out", str(tmp_path / "forward.html")]) == 0
    assert "Parallel residual" in (tmp_path / "forward.html").read_text()
