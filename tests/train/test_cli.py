import argparse
import json

import pytest
import torch

import glassformer
from glassformer.cli import build_parser, main
from glassformer.train.checkpoint import load_checkpoint
from glassformer.train.tasks import TASKS

SMALL = ["--d-model", "32", "--n-layers", "1", "--n-heads", "2", "--batch-size", "16", "--quiet"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_every_option_of_every_training_command_has_help():
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name in ("demo", "train", "sample", "eval", "tasks"):
        assert name in commands
        for action in commands[name]._actions:
            assert action.help, f"glassformer {name} {action.option_strings or action.dest} has no help"


def test_tasks_lists_every_task(capsys):
    code, out, _ = run(capsys, "tasks")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()]
    assert names == [*TASKS, "text", "pairs", "labels", "digits", "images"]  # then the data-file tasks


def test_demo_learns_reverse_and_shows_it(capsys, tmp_path, seed, record_property):
    """Measured over seeds 0-4 (1 thread): the demo stops at 50 steps with sequence accuracy 1.0 every time."""
    code, out, _ = run(capsys, "demo", "--out", tmp_path, "--quiet", "--seed", seed)
    assert code == 0, out
    summary = json.loads((tmp_path / "summary.json").read_text())
    record_property("steps", summary["steps"])
    record_property("sequence_accuracy", summary["sequence_accuracy"])
    assert summary["sequence_accuracy"] >= 0.99
    examples = [line for line in out.splitlines() if "->" in line and ">" in line.split("->")[0]]
    assert len(examples) >= 5 and all(line.rstrip().endswith("correct") for line in examples)
    png = (tmp_path / "attention.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert str(tmp_path / "attention.png") in out and str(tmp_path / "checkpoint") in out
    model, tokenizer = glassformer.load(tmp_path)
    prompt = "abcdefgh>"
    completion = model.generate(torch.tensor([tokenizer.encode(prompt)]), 8, greedy=True)
    assert tokenizer.decode(completion[0, 9:]) == "hgfedcba"


def test_train_eval_sample_and_resume_a_task(capsys, tmp_path):
    out_dir = tmp_path / "copy"
    code, out, _ = run(capsys, "train", "--task", "copy", "--option", "length=4", "--steps", 40, "--eval-every", 20,
                       "--out", out_dir, "--lr", 0.01, "--warmup-steps", 5, *SMALL)
    assert code == 0 and "sequence accuracy" in out
    checkpoint = load_checkpoint(out_dir)
    assert checkpoint.task == {"name": "copy", "options": {"length": 4, "vocab_size": 8, "seed": 0}, "format": 1}
    assert checkpoint.config.d_model == 32 and checkpoint.config.n_ctx == 8 and checkpoint.trainer_state["step"] == 40

    code, out, _ = run(capsys, "eval", out_dir, "--batches", 2, "--json")
    metrics = json.loads(out)
    assert code == 0 and set(metrics) == {"loss", "token_accuracy", "sequence_accuracy"}

    code, out, _ = run(capsys, "sample", out_dir, "--prompt", "abca>")
    assert code == 0
    prompt, completion = out.strip().split(" -> ")
    assert prompt == "abca>" and len(completion) == 4 and set(completion) <= set("abcdefgh>")

    code, out, _ = run(capsys, "train", "--resume", "--out", out_dir, "--steps", 50, "--quiet")
    assert code == 0 and "resuming" in out and load_checkpoint(out_dir).trainer_state["step"] == 50


def test_train_text_with_a_config_file_then_sample(capsys, tmp_path):
    text = tmp_path / "poem.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    config = tmp_path / "model.toml"
    config.write_text('d_model = 32\nn_layers = 1\nn_heads = 2\npositional = "rope"\nnorm = "rmsnorm"\n')
    code, _, _ = run(capsys, "train", "--text", text, "--config", config, "--block-size", 16, "--steps", 10,
                     "--batch-size", 4, "--out", tmp_path / "run", "--quiet")
    assert code == 0
    checkpoint = load_checkpoint(tmp_path / "run")
    assert checkpoint.config.positional == "rope" and checkpoint.config.norm == "rmsnorm"
    assert checkpoint.config.d_head == 16 and checkpoint.config.n_ctx == 16
    assert checkpoint.task["name"] == "text" and checkpoint.task["options"]["path"] == str(text.resolve())
    code, out, _ = run(capsys, "sample", tmp_path / "run", "--prompt", "the ", "--max-new-tokens", 30, "--top-k", 5, "--seed", 3)
    assert code == 0 and out.startswith("the ") and len(out.rstrip("\n")) == 34
    code, out, _ = run(capsys, "sample", tmp_path / "run", "--prompt", "the ", "--max-new-tokens", 30, "--num-samples", 3)
    lines = out.rstrip("\n").split("\n")
    assert code == 0 and len(lines) == 3 and all(line.startswith("the ") and len(line) == 34 for line in lines)
    assert len(set(lines)) > 1  # one batch, but each row samples its own continuation
    assert run(capsys, "sample", tmp_path / "run", "--prompt", "the ", "--num-samples", 0)[0] != 0


def test_sample_encoder_decoder_with_beam_search_and_classifier(capsys, tmp_path):
    code, _, _ = run(capsys, "train", "--task", "reverse", "--option", "length=4", "--arch", "encoder-decoder", "--steps", 5,
                     "--out", tmp_path / "s2s", *SMALL)
    assert code == 0
    for extra in ([], ["--beam", 3]):
        code, out, _ = run(capsys, "sample", tmp_path / "s2s", "--prompt", "abcd", *extra)
        assert code == 0 and out.startswith("abcd -> ") and len(out.strip().split(" -> ")[1]) == 4
    code, _, _ = run(capsys, "train", "--task", "contains-ab", "--arch", "encoder", "--steps", 5, "--out", tmp_path / "cls", *SMALL)
    assert code == 0
    code, out, _ = run(capsys, "sample", tmp_path / "cls", "--prompt", "abcdefgh")
    probabilities = [float(line.split(": ")[1]) for line in out.splitlines()]
    assert code == 0 and len(probabilities) == 2 and sum(probabilities) == pytest.approx(1.0, abs=2e-3)


def test_bad_input_gets_a_named_error(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--out", tmp_path)
    assert code == 2 and "--task NAME" in err
    code, _, err = run(capsys, "train", "--task", "reverse", "--option", "colour=3", "--out", tmp_path)
    assert code == 2 and "colour" in err
    code, _, err = run(capsys, "train", "--task", "reverse", "--option", "length", "--out", tmp_path)
    assert code == 2 and "KEY=VALUE" in err
    code, _, err = run(capsys, "train", "--task", "modular-addition", "--arch", "encoder", "--out", tmp_path)
    assert code == 2 and "arch" in err
    code, _, err = run(capsys, "sample", tmp_path / "missing", "--prompt", "x")
    assert code == 2 and "not found" in err
    code, _, err = run(capsys, "train", "--text", tmp_path / "missing.txt", "--out", tmp_path)
    assert code == 2 and "missing.txt" in err


def test_sample_runs_a_compiled_rasp_program(capsys, tmp_path):
    """A compiled RASP checkpoint is an encoder with one output per position: `sample` runs it on the prompt."""
    out = tmp_path / "reverse"
    assert run(capsys, "rasp", "compile", "reverse", "--max-len", 6, "--out", out)[0] == 0
    code, text, _ = run(capsys, "sample", out, "--prompt", "abcd")
    assert code == 0 and text.strip() == "abcd -> dcba"
    code, _, err = run(capsys, "sample", out, "--prompt", "abz")
    assert code != 0 and "'z'" in err and "vocabulary" in err
    code, _, err = run(capsys, "sample", out, "--prompt", "")
    assert code != 0 and "empty" in err
