import pytest
import torch

from glassformer import InputError, ModelConfig, Transformer


@pytest.fixture
def model():
    torch.manual_seed(0)
    return Transformer(ModelConfig(d_model=32, n_heads=4, d_vocab=11, n_ctx=16)).eval()


def test_documented_names_exist(model):
    names = set(model.hook_names())
    for name in ["embed", "pos_embed", "ln_final", "ln_final.scale", "logits"] + [
        f"blocks.1.{n}"
        for n in ["resid_pre", "ln1", "attn.q", "attn.k", "attn.v", "attn.scores", "attn.pattern", "attn.z",
                  "attn_out", "resid_mid", "ln2", "mlp.pre", "mlp.post", "mlp_out", "resid_post"]
    ]:
        assert name in names, name


def test_cache_is_consistent_with_the_equations(model):
    tokens = torch.randint(0, 11, (2, 9))
    logits, cache = model.run_with_cache(tokens)
    torch.testing.assert_close(cache["logits"], logits)
    torch.testing.assert_close(cache["blocks.0.resid_pre"], cache["embed"] + cache["pos_embed"])
    torch.testing.assert_close(cache["blocks.0.resid_mid"], cache["blocks.0.resid_pre"] + cache["blocks.0.attn_out"])
    torch.testing.assert_close(cache["blocks.0.resid_post"], cache["blocks.0.resid_mid"] + cache["blocks.0.mlp_out"])
    torch.testing.assert_close(cache["blocks.1.resid_pre"], cache["blocks.0.resid_post"])
    attn = model.blocks[0].attn  # attn_out = sum_h z_h W_O[h] + b_O
    torch.testing.assert_close(
        cache["blocks.0.attn_out"], torch.einsum("bphe,hed->bpd", cache["blocks.0.attn.z"], attn.W_O) + attn.b_O
    )
    assert cache["blocks.0.attn.pattern"].shape == (2, 4, 9, 9)


def test_names_filter_stores_only_what_was_asked(model):
    _, cache = model.run_with_cache(torch.randint(0, 11, (1, 5)), names=["blocks.0.resid_post", "blocks.*.attn.z"])
    assert list(cache) == ["blocks.0.attn.z", "blocks.0.resid_post", "blocks.1.attn.z"]
    _, cache = model.run_with_cache(torch.randint(0, 11, (1, 5)), names=lambda n: n.endswith("mlp_out"))
    assert list(cache) == ["blocks.0.mlp_out", "blocks.1.mlp_out"]
    with pytest.raises(InputError, match="no hook point named 'blocks.0.atn.z'"):
        model.run_with_cache(torch.randint(0, 11, (1, 5)), names="blocks.0.atn.z")


def test_hook_can_replace_an_activation_and_is_removed(model):
    tokens = torch.randint(0, 11, (1, 6))
    clean = model(tokens)

    def zero_head_0(z, hook):
        z = z.clone()
        z[:, :, 0] = 0
        return z

    with model.hooks({"blocks.0.attn.z": zero_head_0}):
        ablated = model(tokens)
    assert not torch.allclose(clean, ablated)
    torch.testing.assert_close(model(tokens), clean)  # removed on exit
    assert all(not model.hook_point(n).fns for n in model.hook_names())

    with pytest.raises(InputError, match="must return None or a tensor of shape"):
        with model.hooks({"blocks.0.attn_out": lambda x, hook: x[:, :1]}):
            model(tokens)
    assert not model.hook_point("blocks.0.attn_out").fns  # removed even after an error


def test_replacing_the_pattern_changes_the_output(model):
    tokens = torch.randint(0, 11, (1, 6))

    def attend_to_first(pattern, hook):
        out = torch.zeros_like(pattern)
        out[..., 0] = 1.0
        return out

    with model.hooks({"blocks.*.attn.pattern": attend_to_first}):
        _, cache = model.run_with_cache(tokens, names="blocks.0.attn.z")
    v0 = model.run_with_cache(tokens, names="blocks.0.attn.v")[1]["blocks.0.attn.v"][:, 0]  # [batch, heads, d_head]
    torch.testing.assert_close(cache["blocks.0.attn.z"], v0[:, None].expand_as(cache["blocks.0.attn.z"]))
