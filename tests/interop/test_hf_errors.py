"""Bad input to from_hf raises CheckpointError naming the problem: unsupported model, missing or corrupt
files, tensors that do not fit the config, and a Hub name while offline."""

import json

import pytest
import torch
from hf_models import gpt2, llama

from glassformer.errors import CheckpointError
from glassformer.interop import from_hf

transformers = pytest.importorskip("transformers")


@pytest.fixture
def gpt2_folder(tmp_path):
    gpt2().save_pretrained(tmp_path)
    return tmp_path


def test_unsupported_model_type_in_memory():
    config = transformers.GPTJConfig(vocab_size=50, n_embd=32, n_layer=1, n_head=4, n_positions=16, rotary_dim=4)
    with pytest.raises(CheckpointError, match="model_type 'gptj' is not supported.*'gpt2', 'llama'.*'bert'"):
        from_hf(transformers.GPTJForCausalLM(config))


def test_unsupported_model_type_in_folder(gpt2_folder):
    config = json.loads((gpt2_folder / "config.json").read_text())
    (gpt2_folder / "config.json").write_text(json.dumps({**config, "model_type": "mamba"}))
    with pytest.raises(CheckpointError, match="'mamba' is not supported"):
        from_hf(gpt2_folder)


def test_not_a_model():
    with pytest.raises(CheckpointError, match="Linear is not a transformers model"):
        from_hf(torch.nn.Linear(2, 2))
    with pytest.raises(CheckpointError, match="got int"):
        from_hf(3)


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="no such folder"):
        from_hf(tmp_path / "nowhere")


def test_missing_config_json(gpt2_folder):
    (gpt2_folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match="missing config.json"):
        from_hf(gpt2_folder)


def test_invalid_config_json(gpt2_folder):
    (gpt2_folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json: not valid JSON"):
        from_hf(gpt2_folder)


def test_missing_weights_names_pickles(gpt2_folder):
    (gpt2_folder / "model.safetensors").rename(gpt2_folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"no \*\.safetensors.*pytorch_model\.bin"):
        from_hf(gpt2_folder)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_safetensors(gpt2_folder, damage):
    file = gpt2_folder / "model.safetensors"
    data = file.read_bytes()
    file.write_bytes(b"\x07not a safetensors file" if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors: corrupt or truncated"):
        from_hf(gpt2_folder)


def test_missing_tensor_is_named(gpt2_folder):
    from safetensors.torch import load_file, save_file

    state = load_file(str(gpt2_folder / "model.safetensors"))
    del state["transformer.h.1.mlp.c_fc.weight"]
    save_file(state, str(gpt2_folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="no tensor 'transformer.h.1.mlp.c_fc.weight'"):
        from_hf(gpt2_folder)


def test_config_that_does_not_fit_the_weights(gpt2_folder):
    config = json.loads((gpt2_folder / "config.json").read_text())
    (gpt2_folder / "config.json").write_text(json.dumps({**config, "n_inner": 64}))  # the weights have 128
    with pytest.raises(CheckpointError, match=r"'transformer.h.0.mlp.c_fc.weight' has shape \(32, 128\).*\(32, 64\)"):
        from_hf(gpt2_folder)


def test_config_missing_a_required_field(gpt2_folder):
    config = json.loads((gpt2_folder / "config.json").read_text())
    del config["n_embd"]
    (gpt2_folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="config.json has no 'n_embd'"):
        from_hf(gpt2_folder)


def test_config_glassformer_cannot_build(gpt2_folder):
    config = json.loads((gpt2_folder / "config.json").read_text())
    (gpt2_folder / "config.json").write_text(json.dumps({**config, "n_head": 5}))  # 32 is not divisible by 5
    with pytest.raises(CheckpointError, match="does not give a valid glassformer model.*n_heads = 5"):
        from_hf(gpt2_folder)


def test_sharded_index_naming_a_missing_shard(tmp_path):
    llama().save_pretrained(tmp_path, max_shard_size="20KB")
    shard = sorted(tmp_path.glob("*.safetensors"))[-1]
    shard.unlink()
    with pytest.raises(CheckpointError, match=f"missing: {shard.name}"):
        from_hf(tmp_path)


def test_hub_name_offline_gives_a_clear_message(monkeypatch):
    """A name that is not a local folder is looked up on the Hub; offline, that fails clearly (no network used)."""
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError, match="'someone/tiny-model' is not a local folder.*Hub.*Offline"):
        from_hf("someone/tiny-model")
