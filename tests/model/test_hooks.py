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


# -- TransformerLens names ----------------------------------------------------------------------------

# Every hook name TransformerLens 3.9's HookedTransformer gives a 2-layer GPT-2-style model with
# use_attn_result and use_split_qkv_input on, except hook_attn_in / hook_mlp_in / hook_rot_q / hook_rot_k
# (no glassformer counterpart; docs/hooks.md says so), with the glassformer name each must resolve to.
TL_NAMES = {
    "hook_embed": "embed", "hook_pos_embed": "pos_embed",
    "ln_final.hook_scale": "ln_final.scale", "ln_final.hook_normalized": "ln_final",
    **{f"blocks.{l}.{tl}": f"blocks.{l}.{gf}" for l in range(2) for tl, gf in [
        ("hook_resid_pre", "resid_pre"), ("ln1.hook_scale", "ln1.scale"), ("ln1.hook_normalized", "ln1"),
        ("hook_q_input", "attn.q_input"), ("hook_k_input", "attn.k_input"), ("hook_v_input", "attn.v_input"),
        ("attn.hook_q", "attn.q"), ("attn.hook_k", "attn.k"), ("attn.hook_v", "attn.v"),
        ("attn.hook_attn_scores", "attn.scores"), ("attn.hook_pattern", "attn.pattern"), ("attn.hook_z", "attn.z"),
        ("attn.hook_result", "attn.result"), ("hook_attn_out", "attn_out"), ("hook_resid_mid", "resid_mid"),
        ("ln2.hook_scale", "ln2.scale"), ("ln2.hook_normalized", "ln2"), ("mlp.hook_pre", "mlp.pre"),
        ("mlp.hook_post", "mlp.post"), ("hook_mlp_out", "mlp_out"), ("hook_resid_post", "resid_post"),
    ]},
}


def test_transformer_lens_names_resolve(model):
    model.set_use_attn_result(True)
    model.set_use_split_qkv_input(True)
    tokens = torch.randint(0, 11, (2, 5))
    _, cache = model.run_with_cache(tokens)
    for tl, gf in TL_NAMES.items():
        assert tl in cache, tl
        assert cache[tl] is cache[gf], tl
    _, only = model.run_with_cache(tokens, names=["blocks.0.attn.hook_pattern", "blocks.*.hook_resid_post"])
    assert list(only) == ["blocks.0.attn.pattern", "blocks.0.resid_post", "blocks.1.resid_post"]
    assert cache["pattern", 1] is cache["blocks.1.attn.pattern"]  # utils.get_act_name's short keys
    assert cache["scale", 0, "ln2"] is cache["blocks.0.ln2.scale"] and cache["normalized",] is cache["ln_final"]
    with pytest.raises(InputError, match="hook_rot_q"):
        model.run_with_cache(tokens, names="blocks.0.attn.hook_rot_q")


# -- optional hook points: each head's result, per-head q / k / v inputs ------------------------------


def test_optional_hooks_are_off_by_default_and_exact_when_asked(model):
    tokens = torch.randint(0, 11, (2, 7))
    logits, cache = model.run_with_cache(tokens)
    assert not any(n.endswith(("result", "_input")) for n in cache)  # the default pass builds none of them
    assert set(cache) == set(model.hook_names()) and len(model.hook_names(optional=True)) == len(cache) + 2 * 4
    names = ["blocks.*.attn.result", "blocks.*.attn.q_input", "blocks.*.attn.k_input", "blocks.*.attn.v_input"]
    logits2, extra = model.run_with_cache(tokens, names=names + ["blocks.*.attn_out", "blocks.*.ln1"])
    torch.testing.assert_close(logits2, logits)
    for l, block in enumerate(model.blocks):
        result = extra[f"blocks.{l}.attn.result"]  # [batch, pos, heads, d_model]
        assert result.shape == (2, 7, 4, 32)
        torch.testing.assert_close(result.sum(2) + block.attn.b_O, extra[f"blocks.{l}.attn_out"])
        torch.testing.assert_close(result[:, :, 2], extra[f"blocks.{l}.attn.z"][:, :, 2] @ block.attn.W_O[2]
                                   if f"blocks.{l}.attn.z" in extra else cache[f"blocks.{l}.attn.z"][:, :, 2] @ block.attn.W_O[2])
        for which in "qkv":
            split = extra[f"blocks.{l}.attn.{which}_input"]  # [batch, pos, heads, d_model]
            assert torch.equal(split, extra[f"blocks.{l}.ln1"][:, :, None].expand_as(split))
    model.set_use_attn_result(True)
    assert sum(n.endswith("attn.result") for n in model.run_with_cache(tokens)[1]) == 2
    model.set_use_attn_result(False)


def test_a_split_input_patches_one_head_only(model):
    """Replacing head 1's query input changes head 1's q, and no other head's (nor any k or v)."""
    tokens = torch.randint(0, 11, (1, 6))
    _, before = model.run_with_cache(tokens, names=["blocks.0.attn.q", "blocks.0.attn.k"])

    def scramble(x, hook):
        x = x.clone()
        x[:, :, 1] = torch.randn_like(x[:, :, 1])
        return x

    with model.hooks({"blocks.0.hook_q_input": scramble}):
        _, after = model.run_with_cache(tokens, names=["blocks.0.attn.q", "blocks.0.attn.k"])
    changed = (after["blocks.0.attn.q"] - before["blocks.0.attn.q"]).abs().amax(dim=(0, 1, 3))  # per head
    assert changed[1] > 0.1 and changed[[0, 2, 3]].max() < 1e-6
    torch.testing.assert_close(after["blocks.0.attn.k"], before["blocks.0.attn.k"])


# -- gradients ---------------------------------------------------------------------------------------


def test_gradient_cache_is_the_derivative_of_the_metric():
    """grads=True stores d metric / d activation: exactly W_U[:, t] at ln_final, and the directional
    derivative of a finite difference everywhere else (float64)."""
    torch.manual_seed(0)
    model = Transformer(ModelConfig(d_model=16, n_heads=2, d_vocab=7, n_ctx=8, init_std=0.3)).double().eval()
    tokens = torch.randint(0, 7, (2, 5))

    def metric(logits):
        return logits[:, -1, 3].sum() - logits[:, 2, 1].sum()

    _, cache = model.run_with_cache(tokens, grads=True, metric=metric)
    expected = torch.zeros_like(cache["ln_final"])
    expected[:, -1] += model.unembed.W_U[:, 3].detach()
    expected[:, 2] -= model.unembed.W_U[:, 1].detach()
    torch.testing.assert_close(cache["ln_final_grad"], expected)
    assert all(p.grad is None for p in model.parameters())  # the weights' .grad is left alone
    for name in ["blocks.0.resid_pre", "blocks.0.attn.pattern", "blocks.1.mlp.pre", "blocks.0.attn.v"]:
        direction = torch.randn_like(cache[name])
        eps = 1e-5

        def shifted(sign):
            with torch.no_grad(), model.hooks({name: lambda x, hook: x + sign * eps * direction}):
                return float(metric(model(tokens)))

        finite = (shifted(1) - shifted(-1)) / (2 * eps)
        assert abs(finite - float((cache[name + "_grad"] * direction).sum())) < 1e-6, name
    assert cache["blocks.0.attn.hook_pattern_grad"] is cache["blocks.0.attn.pattern_grad"]


def test_gradients_of_the_loss_and_of_a_frozen_model():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(d_model=16, n_heads=2, d_vocab=7, n_ctx=8)).eval()
    tokens = torch.randint(0, 7, (2, 5))
    loss, cache = model.run_with_cache(tokens, return_type="loss", grads=True, names="blocks.1.resid_post")
    model.requires_grad_(False)  # nothing upstream needs a gradient: the activations still get theirs
    loss2, frozen = model.run_with_cache(tokens, return_type="loss", incl_bwd=True, names="blocks.1.resid_post")
    torch.testing.assert_close(loss2, loss)
    torch.testing.assert_close(frozen["blocks.1.resid_post_grad"], cache["blocks.1.resid_post_grad"])
    assert cache["blocks.1.resid_post_grad"].abs().sum() > 0
    with pytest.raises(InputError, match="one number"):
        model.run_with_cache(tokens, grads=True)  # logits are not a scalar


def test_backward_hooks_read_and_replace_gradients(model):
    tokens = torch.randint(0, 11, (2, 6))
    seen = {}

    def record(grad, hook):
        seen[hook.name] = grad.clone()

    with model.hooks(backward={"blocks.*.attn.hook_z": record, "blocks.1.resid_pre": lambda g, hook: torch.zeros_like(g)}):
        model(tokens, return_type="loss").backward()
    assert set(seen) == {"blocks.0.attn.z", "blocks.1.attn.z"} and seen["blocks.1.attn.z"].abs().sum() > 0
    assert seen["blocks.0.attn.z"].abs().sum() == 0  # everything before block 1 sits behind the zeroed gradient
    assert model.embed.W_E.grad.abs().sum() == 0 and model.blocks[1].mlp.W_in.grad.abs().sum() > 0
    assert all(not model.hook_point(n).fns for n in model.hook_names(optional=True))
