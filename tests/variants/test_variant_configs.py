"""Every variant is a config switch: it round-trips through JSON and TOML, it is reachable from the CLI's
--config, and every hook point works (read all with run_with_cache, replace one with a hook)."""

import pytest
import torch
from variant_helpers import scramble

from glassformer import ModelConfig, Transformer
from glassformer.model.config import CHOICES

VARIANTS = {
    "qk_norm": dict(qk_norm=True, norm="rmsnorm"),
    "t5": dict(positional="t5", t5_buckets=16, t5_max_distance=64),
    "relu2": dict(act="relu2"),
    "swiglu": dict(act="swiglu", bias=False),
    "geglu": dict(act="geglu"),
    "sliding": dict(attention="sliding", window=4),
    "sparse strided": dict(attention="sparse", stride=3),
    "sparse fixed": dict(attention="sparse", sparse_pattern="fixed", stride=4, sparse_summary=2),
    "linear": dict(attention="linear", positional="rope"),
    "linformer": dict(arch="encoder", attention="linformer", linformer_k=5),
    "transformer-xl": dict(memory_len=6, positional="alibi"),
    "vit": dict(arch="encoder", input="patches", image_size=8, patch_size=4, n_classes=10, n_ctx=5),
}


def build(name: str) -> Transformer:
    return scramble(Transformer(ModelConfig(**{"d_model": 32, "n_heads": 4, "d_vocab": 11, "n_ctx": 12, **VARIANTS[name]})))


def inputs(model: Transformer) -> torch.Tensor:
    if model.config.input == "patches":
        return torch.rand(2, 8, 8)
    return torch.randint(0, 11, (2, 10))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_config_round_trips_through_json_and_toml(name, tmp_path):
    cfg = ModelConfig(**{"n_ctx": 12, **VARIANTS[name]})
    cfg.save_json(tmp_path / "c.json")
    cfg.save_toml(tmp_path / "c.toml")
    assert ModelConfig.load(tmp_path / "c.json") == cfg
    assert ModelConfig.load(tmp_path / "c.toml") == cfg


def test_choices_list_every_variant():
    assert set(CHOICES["act"]) >= {"relu2", "swiglu", "geglu"}
    assert set(CHOICES["positional"]) >= {"t5"}
    assert CHOICES["attention"] == ("full", "sliding", "sparse", "linear", "linformer")
    assert CHOICES["input"] == ("tokens", "patches")


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_hook_point_fires_and_can_replace(name):
    model = build(name)
    x = inputs(model)
    out, cache = model.run_with_cache(x)
    assert set(cache) == set(model.hook_names())  # every hook point saw an activation
    torch.testing.assert_close(cache["logits"], out)
    attn = cache["blocks.0.attn.pattern"]  # [batch, heads, q_pos, k_pos (or linformer_k slots)]
    torch.testing.assert_close(attn.sum(-1), torch.ones_like(attn.sum(-1)), atol=1e-5, rtol=0)

    def first_key_only(pattern, hook):
        new = torch.zeros_like(pattern)
        new[..., 0] = 1.0
        return new

    with model.hooks({"blocks.0.attn.pattern": first_key_only}):
        _, ablated = model.run_with_cache(x, names=["blocks.0.attn.z", "blocks.0.attn.v"])
    z = ablated["blocks.0.attn.z"]  # every query now reads value 0 (for Linformer: slot 0 of F V)
    if name != "linformer":
        v0 = model.blocks[0].attn.expand_kv(ablated["blocks.0.attn.v"])[:, :1]  # [batch, 1, heads, d_head]
        torch.testing.assert_close(z, v0.expand_as(z))
    assert torch.allclose(z, z[:, :1].expand_as(z))
    torch.testing.assert_close(model(x), out)  # the hook is gone after the with block


def test_cli_trains_a_variant_from_a_config_file(tmp_path):
    from glassformer.cli import main
    from glassformer.train.checkpoint import load_checkpoint

    (tmp_path / "variant.toml").write_text(
        '[model]\nattention = "sliding"\nwindow = 5\npositional = "t5"\nact = "swiglu"\nqk_norm = true\n'
    )
    out = tmp_path / "run"
    code = main(["train", "--task", "copy", "--config", str(tmp_path / "variant.toml"), "--steps", "3",
                 "--eval-batches", "1", "--out", str(out), "--quiet", "--device", "cpu"])
    assert code == 0
    cfg = load_checkpoint(out).model.config
    assert (cfg.attention, cfg.window, cfg.positional, cfg.act, cfg.qk_norm) == ("sliding", 5, "t5", "swiglu", True)
