"""Every bad input named in one clear line (exit 2), never a traceback or a silently wrong run."""

import json
import os
import signal
import threading

import pytest
import torch

from glassformer import ModelConfig
from glassformer.cli import main
from glassformer.errors import ConfigError, OutputError
from glassformer.lens.cache import ActivationCache
from glassformer.model.generate import left_pad, unpad
from glassformer.train import TrainConfig, Trainer, get_task, model_for_task
from glassformer.train.run_dir import RunLock

SMALL = ["--d-model", "16", "--n-layers", "1", "--n-heads", "2", "--batch-size", "8", "--quiet"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def copy_run(tmp_path_factory):
    """A tiny trained copy run (n_ctx 9 for length 4) shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("copy")
    assert main(["train", "--task", "copy", "--option", "length=4", "--steps", "4", "--eval-every", "0",
                 "--eval-batches", "1", "--out", str(out), *SMALL]) == 0
    return out


@pytest.mark.parametrize("field,value", [("norm_eps", -1.0), ("norm_eps", 0.0), ("rope_base", float("nan")),
                                         ("init_std", -0.02), ("d_model", 64.0), ("n_layers", "2"), ("bias", 1),
                                         ("dropout", "0.1")])
def test_config_refuses_bad_numbers_and_types(field, value):
    with pytest.raises(ConfigError, match=field):
        ModelConfig(**{field: value})


def test_config_file_formats_and_tables(tmp_path):
    yaml = tmp_path / "model.yaml"
    yaml.write_text("d_model: 32\n")
    with pytest.raises(ConfigError, match=r"\.json or \.toml"):
        ModelConfig.load(yaml)
    loose = tmp_path / "loose.toml"
    loose.write_text('d_model = 32\n[model]\nn_layers = 1\n')
    with pytest.raises(ConfigError, match="outside the \\[model\\] table"):
        ModelConfig.load(loose)


def test_train_config_file_train_table_and_task_fields(capsys, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('[model]\narch = "encoder-decoder"\nd_model = 16\nn_heads = 2\nn_layers = 1\nn_ctx = 40\n'
                      '[train]\nsteps = 3\nlr = 0.002\nbatch_size = 8\neval_every = 0\neval_batches = 1\n')
    code, out, err = run(capsys, "train", "--task", "reverse", "--option", "length=4", "--config", config,
                         "--out", tmp_path / "run", "--quiet")
    assert code == 0, err
    state = json.loads((tmp_path / "run" / "checkpoint" / "trainer_state.json").read_text())
    saved = json.loads((tmp_path / "run" / "checkpoint" / "config.json").read_text())
    assert state["train_config"]["steps"] == 3 and state["train_config"]["lr"] == 0.002  # [train] is read
    assert saved["arch"] == "encoder-decoder" and saved["n_ctx"] == 40  # the file's arch and n_ctx are kept
    code, _, _ = run(capsys, "train", "--task", "reverse", "--option", "length=4", "--config", config, "--steps", "2",
                     "--out", tmp_path / "run2", "--quiet")
    assert code == 0 and json.loads((tmp_path / "run2" / "summary.json").read_text())["steps"] == 2  # flags win
    config.write_text('[model]\nd_vocab = 99\n')
    code, _, err = run(capsys, "train", "--task", "reverse", "--config", config, "--out", tmp_path / "r3", "--quiet")
    assert code == 2 and "d_vocab = 99" in err and "needs d_vocab" in err
    config.write_text('[model]\nn_ctx = 3\n')
    code, _, err = run(capsys, "train", "--task", "reverse", "--config", config, "--out", tmp_path / "r4", "--quiet")
    assert code == 2 and "n_ctx >=" in err
    config.write_text('[model]\nd_model = 16\n[train]\nlearning_rate = 1\n')
    code, _, err = run(capsys, "train", "--task", "reverse", "--config", config, "--out", tmp_path / "r5", "--quiet")
    assert code == 2 and "learning_rate" in err


def test_block_size_zero_is_refused(capsys, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("to be or not to be " * 50)
    code, _, err = run(capsys, "train", "--text", text, "--block-size", 0, "--out", tmp_path / "r", *SMALL)
    assert code == 2 and "block_size" in err


def test_sample_refuses_a_prompt_longer_than_the_context_as_inspect_does(capsys, copy_run):
    code, out, err = run(capsys, "sample", copy_run, "--prompt", "abcdabcdabcdabcd>")
    assert code == 2 and "n_ctx" in err and out == ""
    code, _, err = run(capsys, "sample", copy_run, "--prompt", "abcd>", "--beam", 0)
    assert code == 2 and "--beam" in err


def test_eval_refuses_zero_batches(capsys, copy_run):
    code, _, err = run(capsys, "eval", copy_run, "--batches", 0)
    assert code == 2 and "--batches" in err
    with pytest.raises(ConfigError, match="eval_batches"):
        TrainConfig(eval_batches=0)


@pytest.mark.parametrize("command", ["sample", "eval", "inspect"])
@pytest.mark.parametrize("device", ["banana", *([] if torch.cuda.is_available() else ["cuda"])])
def test_bad_device_is_one_line(capsys, copy_run, command, device):
    extra = ["--prompt", "abcd>"] if command == "sample" else (["--input", "abcd>"] if command == "inspect" else [])
    code, _, err = run(capsys, command, copy_run, *extra, "--device", device)
    assert code == 2 and "device" in err and "Traceback" not in err


@pytest.mark.parametrize("edit,match", [
    (lambda m: m.update(files=["config.json"]), "'files' must map"),
    (lambda m: m.update(version="1"), "'version' must be an integer"),
    (lambda m: m["files"].update({"config.json": "abc"}), "config.json"),
    (lambda m: m["files"].update({"../x": {"bytes": 1, "sha256": "0"}}), "plain file name"),
    (lambda m: m.update(has_tokenizer="yes"), "has_tokenizer"),
])
def test_hand_edited_manifest_is_a_checkpoint_error(capsys, copy_run, tmp_path, edit, match):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(copy_run / "checkpoint", broken)
    manifest = json.loads((broken / "checkpoint.json").read_text())
    edit(manifest)
    (broken / "checkpoint.json").write_text(json.dumps(manifest))
    code, _, err = run(capsys, "eval", broken)
    assert code == 2 and match in err, err


@pytest.mark.parametrize("field,value", [("step", "ten"), ("train_config", []), ("rng", None), ("step", -3)])
def test_hand_edited_trainer_state_is_a_checkpoint_error(capsys, copy_run, tmp_path, field, value):
    import shutil

    from glassformer.train.checkpoint import MANIFEST, _sha256

    broken = tmp_path / "run"
    shutil.copytree(copy_run, broken)
    path = broken / "checkpoint" / "trainer_state.json"
    state = json.loads(path.read_text())
    state[field] = value
    path.write_text(json.dumps(state))
    manifest = json.loads((broken / "checkpoint" / MANIFEST).read_text())  # a consistent hand edit
    manifest["files"][path.name] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
    (broken / "checkpoint" / MANIFEST).write_text(json.dumps(manifest))
    code, _, err = run(capsys, "train", "--resume", "--out", broken, "--steps", 10, "--quiet")
    assert code == 2 and field in err and "Traceback" not in err, err


def test_resume_refuses_changed_flags_and_steps_already_reached(capsys, copy_run):
    code, _, err = run(capsys, "train", "--resume", "--out", copy_run, "--lr", 0.5, "--task", "reverse", "--quiet")
    assert code == 2 and "--lr 0.5" in err and "--task 'reverse'" in err and "(the run has 'copy')" in err
    code, _, err = run(capsys, "train", "--resume", "--out", copy_run, "--steps", 2, "--quiet")
    assert code == 2 and "at step 4 already" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_output_folder_is_one_line(capsys, tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, _, err = run(capsys, "train", "--task", "copy", "--steps", 2, "--out", locked / "run", *SMALL)
    finally:
        locked.chmod(0o700)
    assert code == 2 and "cannot be written" in err


def test_output_errors_are_named_even_as_root(tmp_path):
    """A file where the output folder should be fails the same way for every user (root included)."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    task = get_task("copy", length=4)
    trainer = Trainer(model_for_task(task, d_model=16, n_layers=1, n_heads=2), task,
                      TrainConfig(steps=1, batch_size=8, eval_every=0, eval_batches=1, quiet=True, out_dir=str(blocker / "run")))
    with pytest.raises(OutputError, match="cannot be written"):
        trainer.train()


def test_a_second_training_into_the_same_folder_is_refused(tmp_path):
    with RunLock(tmp_path):
        task = get_task("copy", length=4)
        trainer = Trainer(model_for_task(task, d_model=16, n_layers=1, n_heads=2), task,
                          TrainConfig(steps=1, batch_size=8, eval_every=0, eval_batches=1, quiet=True, out_dir=str(tmp_path)))
        with pytest.raises(OutputError, match=f"another training is writing to {tmp_path} \\(pid {os.getpid()}\\)"):
            trainer.train()
    assert not (tmp_path / "metrics.jsonl").exists()  # nothing interleaved
    trainer.train()  # the lock is released with its holder


def test_ctrl_c_says_that_it_saved_and_where(capsys, tmp_path):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread")
    task = get_task("copy", length=4)
    trainer = Trainer(model_for_task(task, d_model=16, n_layers=1, n_heads=2), task,
                      TrainConfig(steps=20, batch_size=8, eval_every=0, eval_batches=1, quiet=True, out_dir=str(tmp_path)))
    batch = task.batch

    def interrupt_at_step_2(*args, **kwargs):
        if trainer.step == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return batch(*args, **kwargs)

    task.batch = interrupt_at_step_2
    with pytest.raises(KeyboardInterrupt) as caught:
        trainer.train()
    message = str(caught.value)
    assert "step 3" in message and str(tmp_path / "checkpoint") in message and "--resume" in message


def test_cache_key_typo_suggests_the_name():
    cache = ActivationCache({"blocks.0.attn.pattern": torch.zeros(1), "blocks.0.attn.z": torch.zeros(1)}, model=None)
    with pytest.raises(KeyError, match="did you mean 'blocks.0.attn.pattern'"):
        cache["blocks.0.attn.patern"]
    assert cache.get("nope") is None and "blocks.0.attn.z" in cache


def test_unpad_never_decodes_the_pad_token():
    tokens, mask = left_pad([[5, 6, 7], [8]])
    generated = torch.cat([tokens, torch.tensor([[1], [2]])], dim=1)  # one generated column
    assert unpad(generated, mask) == [[5, 6, 7, 1], [8, 2]]
