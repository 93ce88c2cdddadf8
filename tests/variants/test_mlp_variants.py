"""MLP variants: ReLU^2 and the gated SwiGLU / GeGLU, against their equations and Hugging Face's Llama MLP."""

import pytest
import torch
import torch.nn.functional as F

from glassformer import ModelConfig, Transformer


def test_relu_squared_is_relu_then_square():
    model = Transformer(ModelConfig(act="relu2", d_model=16, n_heads=2, d_vocab=7)).eval()
    _, cache = model.run_with_cache(torch.randint(0, 7, (2, 5)), names=["blocks.0.mlp.pre", "blocks.0.mlp.post"])
    pre, post = cache["blocks.0.mlp.pre"], cache["blocks.0.mlp.post"]
    assert (pre < 0).any() and (pre > 0).any()
    torch.testing.assert_close(post, torch.where(pre > 0, pre * pre, torch.zeros_like(pre)))


@pytest.mark.parametrize("act, gate_fn", [("swiglu", F.silu), ("geglu", F.gelu)])
def test_gated_mlp_equation_and_hooks(act, gate_fn):
    torch.manual_seed(0)
    model = Transformer(ModelConfig(act=act, d_model=16, n_heads=2, d_mlp=24, d_vocab=7)).eval()
    mlp = model.blocks[0].mlp
    for p in mlp.parameters():
        torch.nn.init.normal_(p, std=0.5)
    assert mlp.W_gate.shape == (16, 24) and mlp.W_in.shape == (16, 24) and mlp.W_out.shape == (24, 16)
    names = ["blocks.0.ln2", "blocks.0.mlp.pre", "blocks.0.mlp.pre_linear", "blocks.0.mlp.post", "blocks.0.mlp_out"]
    _, cache = model.run_with_cache(torch.randint(0, 7, (2, 5)), names=names)
    x = cache["blocks.0.ln2"]
    torch.testing.assert_close(cache["blocks.0.mlp.pre"], x @ mlp.W_gate + mlp.b_gate)  # into the nonlinearity
    torch.testing.assert_close(cache["blocks.0.mlp.pre_linear"], x @ mlp.W_in + mlp.b_in)
    post = gate_fn(x @ mlp.W_gate + mlp.b_gate) * (x @ mlp.W_in + mlp.b_in)
    torch.testing.assert_close(cache["blocks.0.mlp.post"], post)  # what W_out reads
    torch.testing.assert_close(cache["blocks.0.mlp_out"], post @ mlp.W_out + mlp.b_out)


def test_swiglu_matches_hugging_face_llama_mlp():
    transformers = pytest.importorskip("transformers")
    from transformers.models.llama.modeling_llama import LlamaMLP

    torch.manual_seed(0)
    hf = LlamaMLP(transformers.LlamaConfig(hidden_size=16, intermediate_size=40, num_attention_heads=2, hidden_act="silu")).eval()
    model = Transformer(ModelConfig(act="swiglu", d_model=16, n_heads=2, d_mlp=40, bias=False, d_vocab=7))
    mlp = model.blocks[0].mlp
    with torch.no_grad():  # nn.Linear stores [out, in]; glassformer's matrices are [in, out]
        mlp.W_gate.copy_(hf.gate_proj.weight.T)
        mlp.W_in.copy_(hf.up_proj.weight.T)
        mlp.W_out.copy_(hf.down_proj.weight.T)
    x = torch.randn(3, 5, 16)
    torch.testing.assert_close(mlp(x), hf(x), atol=1e-6, rtol=1e-5)
