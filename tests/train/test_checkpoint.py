import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import glassformer
from glassformer import CheckpointError, ModelConfig, Transformer
from glassformer.train import checkpoint as ckpt
from glassformer.train.checkpoint import load, load_checkpoint, save_checkpoint, save_model
from glassformer.train.optim import make_optimizer
from glassformer.train.tokenizers import CharTokenizer

REPO = Path(__file__).resolve().parents[2]


def make_model(seed=0, **overrides):
    torch.manual_seed(seed)
    config = dict(d_model=16, n_layers=2, n_heads=2, d_vocab=12, n_ctx=8)
    return Transformer(ModelConfig(**{**config, **overrides}))


TOKENS = torch.tensor([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]])


def assert_same_model(a, b):
    assert a.config == b.config
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name
    with torch.no_grad():
        assert torch.equal(a.eval()(TOKENS), b.eval()(TOKENS))


def test_model_tokenizer_and_extra_round_trip(tmp_path):
    model, tok = make_model(), CharTokenizer("abcdefghijkl")
    save_model(tmp_path / "m", model, tok, extra={"program": "reverse", "n": 3})
    loaded, loaded_tok = glassformer.load(tmp_path / "m")
    assert_same_model(model, loaded)
    assert not loaded.training
    assert loaded_tok == tok and loaded_tok.decode(loaded_tok.encode("cab")) == "cab"
    assert load_checkpoint(tmp_path / "m").extra == {"program": "reverse", "n": 3}
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "checkpoint.json", "config.json", "extra.json", "model.safetensors", "tokenizer.json",
    ]


@pytest.mark.parametrize("overrides", [dict(tie_embeddings=True), dict(arch="encoder-decoder"), dict(arch="encoder", n_classes=3, positional="none")])
def test_round_trip_other_shapes(tmp_path, overrides):
    model = make_model(**overrides)
    save_model(tmp_path / "m", model)
    loaded, tokenizer = load(tmp_path / "m")
    assert tokenizer is None
    assert loaded.config == model.config
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    assert len(list(loaded.parameters())) == len(list(model.parameters()))  # tied weights stay tied


def test_a_run_folder_resolves_to_its_checkpoint(tmp_path):
    model = make_model()
    save_model(tmp_path / "run" / "checkpoint", model)
    assert_same_model(model, load(tmp_path / "run")[0])


def test_optimizer_and_training_state_round_trip(tmp_path):
    model = make_model()
    opt = make_optimizer(model, lr=1e-2, weight_decay=0.1)
    for _ in range(3):
        model(TOKENS).logsumexp(-1).mean().backward()
        opt.step()
        opt.zero_grad()
    rng = torch.Generator().manual_seed(5).get_state()
    save_checkpoint(tmp_path / "c", model, optimizer=opt, trainer_state={"step": 3, "note": [1, 2]}, trainer_tensors={"rng": rng}, task={"name": "reverse", "options": {"length": 8}})
    c = load_checkpoint(tmp_path / "c")
    assert c.resumable and c.trainer_state == {"step": 3, "note": [1, 2]} and torch.equal(c.trainer_tensors["rng"], rng)
    assert c.task == {"name": "reverse", "options": {"length": 8}}
    fresh = make_optimizer(c.model, lr=1e-2, weight_decay=0.1)
    fresh.load_state_dict(c.optimizer_state)
    original, restored = opt.state_dict(), fresh.state_dict()
    assert original["param_groups"] == restored["param_groups"]
    for index, state in original["state"].items():
        for key, value in state.items():
            assert torch.equal(restored["state"][index][key], value), (index, key)


def test_loading_never_unpickles(tmp_path, monkeypatch):
    save_model(tmp_path / "m", make_model(), CharTokenizer("abc"))

    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint load tried to unpickle")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    load(tmp_path / "m")


def test_failure_mid_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    old, new = make_model(seed=0), make_model(seed=1)
    save_model(tmp_path / "m", old, CharTokenizer("abc"))

    class Exploding(CharTokenizer):
        def save(self, directory):
            super().save(directory)
            raise OSError("disk full")  # after the weights and the tokenizer were written

    with pytest.raises(OSError, match="disk full"):
        save_model(tmp_path / "m", new, Exploding("xyz"))
    model, tok = load(tmp_path / "m")
    assert_same_model(old, model)
    assert tok == CharTokenizer("abc")
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # the temporary folder was removed


def test_killed_process_mid_save_keeps_the_previous_checkpoint(tmp_path):
    """A process that dies (no cleanup at all) half way through writing the new checkpoint."""
    old = make_model(seed=0)
    save_model(tmp_path / "m", old)
    script = textwrap.dedent(
        f"""
        import os, torch
        from glassformer import ModelConfig, Transformer
        from glassformer.train import checkpoint
        from glassformer.train.checkpoint import save_model
        real = checkpoint._write_json
        def dying_write(path, data):
            if path.name == "checkpoint.json":
                os._exit(3)   # killed after config and weights, before the manifest
            real(path, data)
        checkpoint._write_json = dying_write
        torch.manual_seed(1)
        save_model({str(tmp_path / 'm')!r}, Transformer(ModelConfig(d_model=16, n_layers=2, n_heads=2, d_vocab=12, n_ctx=8)))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 3, result.stderr
    assert any(p.name.startswith(".m.tmp-") for p in tmp_path.iterdir())  # the half-written folder
    assert_same_model(old, load(tmp_path / "m")[0])
    new = make_model(seed=2)
    save_model(tmp_path / "m", new)  # the next save clears the debris
    assert_same_model(new, load(tmp_path / "m")[0])
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_crash_between_the_two_renames_is_recovered(tmp_path):
    old = make_model()
    save_model(tmp_path / "m", old)
    os.rename(tmp_path / "m", tmp_path / ".m.old")  # the old one moved aside, the new one never arrived
    assert_same_model(old, load(tmp_path / "m")[0])


def rewrite(path: Path, data: bytes):
    """Replace a file and update the manifest, so only the file's own content is wrong."""
    path.write_bytes(data)
    manifest_path = path.parent / "checkpoint.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][path.name] = {"bytes": len(data), "sha256": ckpt._sha256(path)}
    manifest_path.write_text(json.dumps(manifest))


def test_truncated_or_altered_files_are_named(tmp_path):
    save_model(tmp_path / "m", make_model(), CharTokenizer("abc"))
    weights = tmp_path / "m" / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors is truncated"):
        load(tmp_path / "m")
    weights.write_bytes(data[:-4] + bytes(b ^ 0xFF for b in data[-4:]))  # same size, other bytes
    with pytest.raises(CheckpointError, match=r"model\.safetensors is corrupted"):
        load(tmp_path / "m")


def test_foreign_files_are_named(tmp_path):
    save_model(tmp_path / "m", make_model(), CharTokenizer("abc"))
    folder = tmp_path / "m"
    rewrite(folder / "model.safetensors", b"PK\x03\x04 this is a zip file, not safetensors")
    with pytest.raises(CheckpointError, match=r"model\.safetensors could not be read"):
        load(folder)
    save_file({"some.other.weight": torch.zeros(3)}, str(folder / "model.safetensors"))
    rewrite(folder / "model.safetensors", (folder / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match=r"model\.safetensors does not match config\.json"):
        load(folder)

    save_model(folder, make_model(), CharTokenizer("abc"))
    rewrite(folder / "config.json", b'{"d_model": 16, "n_layers":')
    with pytest.raises(CheckpointError, match=r"config\.json is not valid JSON"):
        load(folder)
    rewrite(folder / "config.json", json.dumps({"d_model": 16, "colour": "red"}).encode())
    with pytest.raises(CheckpointError, match=r"config\.json is not a valid model config.*colour"):
        load(folder)

    save_model(folder, make_model(), CharTokenizer("abc"))
    rewrite(folder / "tokenizer.json", b'{"vocab": {"a": 0}}')
    with pytest.raises(CheckpointError, match=r"tokenizer\.json"):
        load(folder)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load(tmp_path / "nowhere")
    (tmp_path / "hf").mkdir()
    save_file({"w": torch.zeros(2)}, str(tmp_path / "hf" / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"checkpoint\.json is missing"):
        load(tmp_path / "hf")
    (tmp_path / "hf" / "checkpoint.json").write_text('{"format": "something-else"}')
    with pytest.raises(CheckpointError, match=r"checkpoint\.json is not a glassformer checkpoint"):
        load(tmp_path / "hf")
