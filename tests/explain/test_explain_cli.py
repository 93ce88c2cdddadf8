"""The explain commands: explain, diagram, experiment."""

import pytest
import torch

from glassformer import ModelConfig, Transformer
from glassformer.cli import main
from glassformer.train.checkpoint import save_model
from glassformer.train.tokenizers import CharTokenizer


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "tiny.json"
    ModelConfig(d_model=4, n_layers=1, n_heads=2, d_vocab=6, n_ctx=8).save_json(path)
    return path


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    tokenizer = CharTokenizer("abcdef")
    model = Transformer(ModelConfig(d_model=8, n_layers=1, n_heads=2, d_vocab=6, n_ctx=8, norm_position="post"))
    return save_model(tmp_path / "ckpt", model, tokenizer=tokenizer)


def test_explain_a_config_to_markdown_and_html(tiny_config, tmp_path, capsys):
    assert main(["explain", str(tiny_config), "--input", "1,2,3"]) == 0
    md = capsys.readouterr().out
    assert md.startswith("# Forward pass of a decoder") and "`blocks.0.attn.pattern[0, 1]`" in md
    assert main(["explain", str(tiny_config), "--input", "1 2 3", "--out", str(tmp_path / "t.html")]) == 0
    assert "<math" in (tmp_path / "t.html").read_text()


def test_explain_a_checkpoint_encodes_text(checkpoint, tmp_path, capsys):
    assert main(["explain", str(checkpoint), "--input", "abc", "--out", str(tmp_path / "t.md")]) == 0
    text = (tmp_path / "t.md").read_text()
    assert "| input | abc |" in text and "0 a" in text and "Norm after the attention" in text


def test_diagram_from_config_and_checkpoint(tiny_config, checkpoint, tmp_path):
    assert main(["diagram", str(tiny_config), "--out", str(tmp_path / "a.svg")]) == 0
    assert main(["diagram", str(checkpoint), "--expanded", "--out", str(tmp_path / "b.svg")]) == 0
    assert (tmp_path / "a.svg").read_text().startswith("<svg") and "Post-LN" in (tmp_path / "b.svg").read_text()


def test_experiment_list_and_run(tmp_path, capsys):
    assert main(["experiment", "--list"]) == 0
    listing = capsys.readouterr().out
    for name in ("post-ln-vs-pre-ln", "attention-scale", "kv-cache", "length-extrapolation"):
        assert name in listing
    assert main(["experiment", "attention-scale", "--quick", "--seed", "1", "--out", str(tmp_path / "e")]) == 0
    assert "sqrt(d_k)" in capsys.readouterr().out
    assert {p.name for p in (tmp_path / "e").iterdir()} == {"attention_scale.png", "finding.md", "metrics.json"}


@pytest.mark.parametrize("argv,message", [
    (["explain", "nowhere.txt", "--input", "1"], "neither a checkpoint folder nor a model config"),
    (["explain", "{config}", "--input", "a,b"], "token ids like"),
    (["explain", "{config}", "--input", "1,9"], "outside the vocabulary"),
    (["explain", "{config}", "--input", "1", "--out", "{tmp}/x.pdf"], ".md or .html"),
    (["diagram", "{config}", "--out", "{tmp}/x.png"], ".svg"),
    (["diagram", "{tmp}/missing_dir/"], "neither a checkpoint folder nor a model config"),
    (["experiment", "no-such-thing"], "no experiment named"),
    (["experiment"], "name an experiment"),
])
def test_bad_input_is_named(argv, message, tiny_config, tmp_path, capsys):
    argv = [a.format(config=tiny_config, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_explain_a_vision_model_reads_a_npy_image(tmp_path, capsys):
    import numpy as np

    from glassformer import ModelConfig

    config = tmp_path / "vit.json"
    ModelConfig(arch="encoder", d_model=8, n_layers=1, n_heads=2, n_ctx=5, input="patches", image_size=4, patch_size=2,
                n_classes=3).save_json(config)
    np.save(tmp_path / "image.npy", np.random.default_rng(0).normal(size=(1, 4, 4)).astype(np.float32))
    assert main(["explain", str(config), "--input", str(tmp_path / "image.npy"), "--out", str(tmp_path / "t.md")]) == 0
    md = (tmp_path / "t.md").read_text()
    assert "Patch embedding W_patch + class token" in md and "Classification head" in md
    assert main(["explain", str(config), "--input", "1,2,3"]) == 2
    assert "a .npy file of shape [1, 4, 4]" in capsys.readouterr().err
