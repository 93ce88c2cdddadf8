"""Gemma: the (1 + w) RMSNorm and the sqrt(d_model) embedding scale folded into the weights, a GELU-tanh gated
MLP and multi-query attention with its own head_dim give HF's logits within 1e-4."""

import pytest
import torch
from hf_models import VOCAB, assert_logits_match, randomize, tokens

from glassformer.interop import from_hf

transformers = pytest.importorskip("transformers")


def test_gemma_logits_match_hf(tmp_path):
    config = transformers.GemmaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=1, head_dim=16, max_position_embeddings=64)
    hf = randomize(transformers.GemmaForCausalLM(config))
    model = from_hf(hf)
    c = model.config
    assert (c.act, c.norm, c.d_head, c.n_kv_heads, c.tie_embeddings) == ("geglu_tanh", "rmsnorm", 16, 1, False)
    x = tokens(pos=20)
    with torch.no_grad():
        assert_logits_match(model(x), hf(x).logits)
    hf.save_pretrained(tmp_path / "gemma")
    with torch.no_grad():
        assert_logits_match(from_hf(tmp_path / "gemma")(x), hf(x).logits)


def gemma2_or_3(version: int):
    kwargs = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                  sliding_window=5, query_pre_attn_scalar=12, max_position_embeddings=64)
    if version == 2:  # caps small enough that they bend the random model's scores and logits
        config = transformers.Gemma2Config(num_hidden_layers=4, attn_logit_softcapping=3.0, final_logit_softcapping=2.5, **kwargs)
        return randomize(transformers.Gemma2ForCausalLM(config))
    config = transformers.Gemma3TextConfig(num_hidden_layers=6, **kwargs)
    return randomize(transformers.Gemma3ForCausalLM(config))


@pytest.mark.parametrize("version", [2, 3])
def test_gemma2_and_3_logits_match_hf(version, tmp_path):
    """Sandwich norms, query_pre_attn_scalar, sliding layers with every k-th global (k = 2 / 6), soft-capping (Gemma 2),
    QK-norm and local/global RoPE bases (Gemma 3): within 1e-4 of HF, also through the KV cache past the window."""
    from hf_models import incremental_logits

    hf = gemma2_or_3(version)
    model = from_hf(hf)
    c = model.config
    assert (c.sandwich_norm, c.attention, c.window, c.attn_scale) == (True, "sliding", 5, 12**-0.5)
    if version == 2:
        assert (c.global_every, c.attn_softcap, c.logit_softcap, c.qk_norm) == (2, 3.0, 2.5, False)
    else:
        assert (c.global_every, c.rope_base, c.rope_local_base, c.qk_norm, c.attn_softcap) == (6, 1e6, 1e4, True, None)
    windows = [getattr(b.attn, "window", None) for b in model.blocks]
    assert windows == [5 if (i + 1) % c.global_every else None for i in range(c.n_layers)]  # every k-th layer global
    x = tokens(pos=20)  # 4 windows long
    with torch.no_grad():
        theirs = hf(x).logits
        assert_logits_match(model(x), theirs)
        assert_logits_match(incremental_logits(model, x), theirs)
        if version == 2:
            assert theirs.abs().max() < 2.5  # the final cap binds
    hf.save_pretrained(tmp_path / "gemma")
    with torch.no_grad():
        assert_logits_match(from_hf(tmp_path / "gemma")(x), theirs)


def test_gemma2_fields_are_their_equations():
    """The soft-caps are c tanh(. / c) of the uncapped values; a sandwich norm normalises each sublayer's output; bad
    combinations are refused by name."""
    from glassformer import ModelConfig, Transformer
    from glassformer.errors import ConfigError

    base = dict(arch="decoder", d_model=16, n_layers=2, n_heads=2, d_vocab=11, n_ctx=12, norm="rmsnorm")
    torch.manual_seed(0)
    capped = Transformer(ModelConfig(**base, attn_softcap=0.5, logit_softcap=0.7, sandwich_norm=True)).eval()
    x = torch.randint(0, 11, (2, 9))
    logits, cache = capped.run_with_cache(x)
    q, k = cache["blocks.0.attn.q"], cache["blocks.0.attn.k"]
    raw = torch.einsum("bqhe,bkhe->bhqk", q, k) / 8**0.5
    causal = torch.ones(9, 9, dtype=torch.bool).tril()
    torch.testing.assert_close(cache["blocks.0.attn.scores"][..., causal], (0.5 * torch.tanh(raw / 0.5))[..., causal])
    block = capped.blocks[1]
    torch.testing.assert_close(cache["blocks.1.mlp_out"], block.ln2_post(block.mlp(block.ln2(cache["blocks.1.resid_mid"]))))
    assert logits.abs().max() < 0.7
    torch.testing.assert_close(logits, 0.7 * torch.tanh(torch.nn.functional.linear(cache["ln_final"], capped.unembed.weight.T, capped.unembed.b_U) / 0.7))
    for bad, match in ((dict(global_every=2), "global_every .* needs attention='sliding'"),
                       (dict(sandwich_norm=True, norm_position="post"), "sandwich_norm needs"),
                       (dict(attn_softcap=0.0), "attn_softcap = 0.0 must be a positive"),
                       (dict(attention="sliding", window=3, global_every=2, rope_local_base=10.0), "rope_local_base")):
        with pytest.raises(ConfigError, match=match):
            ModelConfig(**{**base, **bad})


@pytest.mark.parametrize("version", [2, 3])
def test_explain_writes_out_gemma2_and_3(version, tmp_path):
    """The NumPy reference (soft-caps, sandwich norms, per-layer sliding / global attention and RoPE bases) equals
    the imported model at every hook in float64; the explain trace shows each sandwich norm, every hook number is
    the model's, and the output shown before a sandwich norm, normalised, is the sublayer output the stream adds."""
    import numpy as np

    from glassformer.explain import reference as ref
    from glassformer.explain.trace import trace

    model = from_hf(gemma2_or_3(version)).double()
    x = tokens(pos=13)
    logits, cache = model.run_with_cache(x)
    recorded = {}
    ref_logits = ref.forward(ref.params_of(model), model.config, x.numpy(), record=recorded.__setitem__)
    assert set(recorded) == set(cache), set(recorded) ^ set(cache)
    for name, value in cache.items():
        np.testing.assert_allclose(recorded[name], value.numpy(), rtol=1e-9, atol=1e-10, err_msg=name)
    np.testing.assert_allclose(ref_logits, logits.detach().numpy(), rtol=1e-9, atol=1e-10)

    doc = trace(model, x[0])
    steps = [step for section in doc.sections for step in section.steps]
    assert sum("sandwich norm" in step.title for step in steps) == 2 * model.config.n_layers
    shown = [t for step in steps for t in step.tensors]
    for t in shown:
        if t.source == "hook":
            parts = t.index.strip("[]").split(", ") if t.index else []
            index = tuple(slice(None) if p == ":" else slice(int(p[:-1]), None) if p.endswith(":") else int(p) for p in parts)
            np.testing.assert_allclose(t.values, cache[t.name].numpy()[index], rtol=1e-12)
    before = next(t for t in shown if t.caption == "attn_out before its sandwich norm" and t.name.startswith("blocks.1."))
    block = model.blocks[1]
    normed = block.ln1_post(torch.from_numpy(before.values)[None])
    torch.testing.assert_close(normed, cache["blocks.1.attn_out"][:1])
    if version == 2:
        assert any("\\tanh" in eq for step in steps for eq in step.equations)  # the caps are written out
    hf = gemma2_or_3(version)
    hf.save_pretrained(tmp_path / "gemma")
    from glassformer.cli import main

    assert main(["import", str(tmp_path / "gemma"), "--out", str(tmp_path / "run"), "--no-tokenizer"]) == 0
    assert main(["explain", str(tmp_path / "run"), "--input", "3,1,4,1,5", "--out", str(tmp_path / "forward.html")]) == 0
    assert "sandwich norm" in (tmp_path / "forward.html").read_text()
    assert main(["diagram", str(tmp_path / "run"), "--expanded", "--out", str(tmp_path / "model.svg")]) == 0
    svg = (tmp_path / "model.svg").read_text()
    assert all(f'module="blocks.{i}.ln{j}_post"' in svg for i in range(model.config.n_layers) for j in (1, 2))  # drawn
