"""Per-layer sizes (ModelConfig.layer_n_heads / layer_d_head / layer_d_mlp): validated, built layer by layer,
saved and loaded, equal to the NumPy reference, and read correctly by the tools that walk heads per layer."""

import numpy as np
import pytest
import torch

import glassformer
from glassformer import ModelConfig, Transformer, lens
from glassformer.errors import ConfigError, InputError
from glassformer.explain import reference as ref

SIZES = dict(layer_n_heads=[1, 3, 2], layer_d_head=[4, 6, 2], layer_d_mlp=[8, 16, 4])


def per_layer_model(seed: int = 0, **overrides) -> Transformer:
    g = torch.Generator().manual_seed(seed)
    config = ModelConfig(**{**dict(arch="decoder", d_model=16, n_layers=3, d_vocab=11, n_ctx=12, **SIZES), **overrides})
    model = Transformer(config).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5)
    return model


def test_uniform_configs_are_unchanged():
    c = ModelConfig(d_model=32, n_layers=2, n_heads=4)
    assert not c.per_layer and c.layer_config(1) is c
    assert (c.layer_n_heads, c.layer_d_head, c.layer_d_mlp) == (None, None, None)
    assert ModelConfig.from_dict(c.to_dict()) == c


def test_per_layer_sizes_build_each_block_at_its_own_size(tmp_path):
    c = ModelConfig(d_model=16, n_layers=3, d_vocab=11, n_ctx=12, **SIZES)
    assert (c.n_heads, c.d_head, c.d_mlp) == (3, 6, 16)  # the widest layer's
    layer = c.layer_config(2)
    assert (layer.n_heads, layer.d_head, layer.d_mlp, layer.per_layer) == (2, 2, 4, False)
    model = Transformer(c)
    for l, block in enumerate(model.blocks):
        h, e, m = (SIZES[k][l] for k in ("layer_n_heads", "layer_d_head", "layer_d_mlp"))
        assert tuple(block.attn.W_Q.shape) == (h, 16, e) and tuple(block.attn.W_O.shape) == (h, e, 16)
        assert tuple(block.mlp.W_in.shape) == (16, m) and block.attn.scale == pytest.approx(e**-0.5)
    for suffix in ("json", "toml"):
        getattr(c, f"save_{suffix}")(tmp_path / f"c.{suffix}")
        assert ModelConfig.load(tmp_path / f"c.{suffix}") == c
    glassformer.train.checkpoint.save_model(tmp_path / "ckpt", model)
    loaded, _ = glassformer.load(tmp_path / "ckpt")
    tokens = torch.randint(0, 11, (2, 7))
    assert loaded.config == c and torch.equal(loaded(tokens), model(tokens))


@pytest.mark.parametrize("fields,message", [
    (dict(layer_n_heads=[1, 2]), "list of n_layers = 3 positive integers"),
    (dict(layer_d_mlp=[4, 0, 4]), "list of n_layers = 3 positive integers"),
    (dict(layer_d_head=[4, True, 4]), "list of n_layers = 3 positive integers"),
    (dict(layer_d_head="4,4,4"), "list of n_layers = 3 positive integers"),
    (dict(layer_n_heads=[1, 2, 2], n_kv_heads=1), "grouped-query"),
    (dict(layer_d_mlp=[4, 4, 4], attn_only=True), "attn_only"),
    (dict(layer_n_heads=[1, 2, 2], arch="encoder-decoder"), "encoder-decoder"),
    (dict(layer_d_head=[4, 3, 4], positional="rope"), "layer 1: .*even number"),
])
def test_bad_per_layer_sizes_are_refused_naming_the_field(fields, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig(d_model=16, n_layers=3, **fields)


@pytest.mark.parametrize("overrides", [dict(), dict(arch="encoder", positional="rope"), dict(positional="alibi")])
def test_the_numpy_reference_equals_a_per_layer_model_at_every_hook(overrides):
    model = per_layer_model(1, **overrides)
    for name, buf in model.named_buffers():  # the float64 tables, as tests/explain/test_reference.py does
        layer = model.config.layer_config(int(name.split(".")[1])) if name.startswith("blocks.") else model.config
        if name.endswith("rotary.inv_freq"):
            buf.copy_(torch.from_numpy(ref.rope_frequencies(int(layer.d_head * layer.rope_fraction), layer.rope_base)))
        elif name.endswith("alibi.slopes"):
            buf.copy_(torch.from_numpy(ref.alibi_slopes(layer.n_heads)))
    tokens = torch.randint(0, 11, (2, 9), generator=torch.Generator().manual_seed(5))
    logits, cache = model.run_with_cache(tokens)
    recorded = {}
    ref_logits = ref.forward(ref.params_of(model), model.config, tokens.numpy(), record=recorded.__setitem__)
    for name, value in cache.items():
        np.testing.assert_allclose(recorded[name], value.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(ref_logits, logits.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_lens_tables_are_as_wide_as_the_widest_layer_with_nan_where_a_head_is_missing():
    model = per_layer_model(2)
    tokens = lens.repeated_random_tokens(11, seq_len=4, batch=2, generator=torch.Generator().manual_seed(0))
    missing = torch.tensor([[False, True, True], [False, False, False], [False, False, True]])  # [layers, heads]
    patterns = lens.attention_patterns(model, tokens)  # [layers, batch, heads, q, k]
    assert patterns.shape == (3, 2, 3, 8, 8) and patterns[1, :, 2].sum(-1).allclose(torch.ones(2, 8, dtype=torch.float64))
    for scores in lens.detect_heads(model, tokens).values():
        assert torch.equal(scores.isnan() & missing, missing) and scores.shape == (3, 3)
    assert torch.equal(lens.induction_scores(model).scores.isnan(), missing)
    corrupted = torch.randint(0, 11, tokens.shape, generator=torch.Generator().manual_seed(1))
    metric = lambda logits: logits[:, -1, 0].mean()  # noqa: E731
    patched = lens.patch_heads(model, tokens, corrupted, metric).values  # [layers, heads]
    assert torch.equal(patched.isnan(), missing)
    with lens.ablate(model, heads=[(2, 1)]):  # a real head of layer 2: its z is zeroed
        _, cache = model.run_with_cache(tokens)
    assert cache["blocks.2.attn.z"][:, :, 1].abs().max() == 0 and cache["blocks.2.attn.z"][:, :, 0].abs().max() > 0
    per_position = lens.patch_heads_positions(model, tokens, corrupted, metric, what="q").values  # [layers, pos, heads]
    assert torch.equal(per_position.isnan(), missing[:, None].expand(3, 8, 3))
    with pytest.raises(InputError, match=r"head index 1 is out of range \[0, 1\) in layer 0"):
        lens.run_ablated(model, tokens, heads=[(0, 1)])
    composition = lens.composition_scores(model, "v")  # [layers, heads, layers, heads]
    assert not composition[0, 0, 1, :].isnan().any() and composition[0, 1:, 1].isnan().all()
    assert composition[1, :, 2, :2].isfinite().all() and composition[1, :, 2, 2].isnan().all()


def test_report_trace_diagram_and_explorer_read_per_layer_models(tmp_path):
    from glassformer.explain import diagram, trace
    from glassformer.explorer import analysis
    from glassformer.lens.report import write_report

    model = per_layer_model(3).float()
    tokens = torch.randint(0, 11, (1, 6))
    _, summary = write_report(tmp_path / "report.html", model, tokens)
    assert summary["strongest_heads"]["previous_token"][0] in {"L0H0", "L1H0", "L1H1", "L1H2", "L2H0", "L2H1"}
    explained = trace(model, tokens)
    assert "3 layers, 1/3/2 heads" in explained.title
    assert all(s in explained.to_markdown() for s in ("summed over 1 heads", "summed over 3 heads", "summed over 2 heads"))
    drawn = diagram(model)  # the compact view draws every block when their sizes differ
    assert all(f"d_head={e}" in drawn and f"d_mlp={m}" in drawn for e, m in zip(SIZES["layer_d_head"], SIZES["layer_d_mlp"]))
    scores = analysis.detector_scores(model.run_with_cache(tokens)[1], tokens[0].tolist(), 3)
    assert [len(row) for row in scores["previous_token"]] == [3, 3, 3]
    assert scores["previous_token"][0][1] is None and scores["previous_token"][1][2] is not None
