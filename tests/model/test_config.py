import json

import pytest

from glassformer import ConfigError, ModelConfig


def test_derived_fields():
    cfg = ModelConfig(d_model=64, n_heads=4, d_vocab=10)
    assert (cfg.d_head, cfg.d_mlp, cfg.n_kv_heads, cfg.d_vocab_out) == (16, 256, 4, 10)
    assert cfg.final_norm is True and ModelConfig(norm_position="post").final_norm is False
    assert cfg.scale == pytest.approx(1 / 4)


@pytest.mark.parametrize(
    "field, value, needle",
    [
        ("arch", "gpt", "arch"),
        ("norm", "batchnorm", "'layernorm', 'rmsnorm', 'none'"),
        ("norm_position", "middle", "norm_position"),
        ("positional", "fourier", "positional"),
        ("act", "tanh", "act"),
        ("d_model", 0, "d_model"),
        ("n_heads", 2.5, "n_heads"),
        ("dropout", 1.5, "dropout"),
    ],
)
def test_bad_values_name_the_field(field, value, needle):
    with pytest.raises(ConfigError, match=needle):
        ModelConfig(**{field: value})


def test_indivisible_heads_and_classes_errors():
    with pytest.raises(ConfigError, match="divisible"):
        ModelConfig(d_model=30, n_heads=4)
    with pytest.raises(ConfigError, match="n_kv_heads"):
        ModelConfig(n_heads=4, n_kv_heads=3)
    with pytest.raises(ConfigError, match="n_classes"):
        ModelConfig(arch="decoder", n_classes=2)


def test_json_and_toml_round_trip(tmp_path):
    cfg = ModelConfig(arch="encoder-decoder", d_model=48, n_heads=3, n_layers=3, n_decoder_layers=1, norm="rmsnorm")
    cfg.save_json(tmp_path / "c.json")
    cfg.save_toml(tmp_path / "c.toml")
    assert ModelConfig.load(tmp_path / "c.json") == cfg
    assert ModelConfig.load(tmp_path / "c.toml") == cfg


def test_unknown_field_and_corrupt_file(tmp_path):
    with pytest.raises(ConfigError, match="unknown ModelConfig field.*d_modle"):
        ModelConfig.from_dict({"d_modle": 3})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        ModelConfig.load(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ConfigError, match="table of config fields"):
        ModelConfig.load(tmp_path / "list.json")
    with pytest.raises(ConfigError, match="not found"):
        ModelConfig.load(tmp_path / "missing.json")
