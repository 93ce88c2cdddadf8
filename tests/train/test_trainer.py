import json
import math
import os
import signal

import pytest
import torch

from glassformer import CheckpointError, ConfigError
from glassformer.train.checkpoint import load_checkpoint
from glassformer.train.distributed import auto_device, resolve_device
from glassformer.train.tasks import get_task
from glassformer.train.trainer import Trainer, TrainConfig, TrainingDiverged, model_for_task


def make_trainer(out_dir=None, task="reverse", arch="decoder", dropout=0.0, **config):
    torch.manual_seed(0)
    task = get_task(task, length=6) if task == "reverse" else get_task(task)
    model = model_for_task(task, arch, d_model=32, n_layers=2, n_heads=4, dropout=dropout)
    defaults = dict(steps=12, batch_size=16, lr=3e-3, warmup_steps=3, eval_every=0, eval_batches=1, quiet=True)
    return Trainer(model, task, TrainConfig(**{**defaults, **config, "out_dir": out_dir and str(out_dir)}))


def params(trainer):
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters()}


@pytest.mark.parametrize("arch,task", [("decoder", "reverse"), ("encoder", "contains-ab")])
def test_gradient_accumulation_equals_the_large_batch(arch, task):
    """4 micro-batches of 4 rows make the same steps as one batch of 16 (up to float rounding)."""
    one, four = make_trainer(task=task, arch=arch), make_trainer(task=task, arch=arch, grad_accum=4)
    for _ in range(4):
        assert one.train_step() == pytest.approx(four.train_step(), rel=1e-5, abs=1e-6)
    for name, value in params(one).items():
        torch.testing.assert_close(params(four)[name], value, rtol=1e-4, atol=1e-5)


def test_resuming_reproduces_the_uninterrupted_run_exactly(tmp_path, one_thread):
    """With dropout, so the torch RNG matters as much as the task's generator. Bit-identical needs one intra-op
    thread (``one_thread``): with two, float sums may split differently from run to run (docs/training.md)."""
    straight = make_trainer(tmp_path / "a", dropout=0.1, save_every=0)
    straight.train()
    interrupted = make_trainer(tmp_path / "b", dropout=0.1, save_every=0)
    assert interrupted.train(stop_after=5) == {"steps": 5, "interrupted": True}
    assert load_checkpoint(tmp_path / "b").trainer_state["step"] == 5
    resumed = Trainer.from_checkpoint(tmp_path / "b")
    assert resumed.step == 5 and resumed.config == interrupted.config
    summary = resumed.train()
    assert interrupted.losses[:5] == straight.losses[:5]
    assert resumed.losses == straight.losses[5:]  # exactly, not approximately
    for name, value in params(straight).items():
        assert torch.equal(params(resumed)[name], value), name
    assert summary["steps"] == 12
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 12


def test_outputs_summary_and_metrics(tmp_path):
    trainer = make_trainer(tmp_path, steps=10, eval_every=5, log_every=2)
    summary = trainer.train()
    assert set(summary) == {"loss", "token_accuracy", "sequence_accuracy", "steps", "tokens_per_second", "seconds"}
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert summary["steps"] == 10 and summary["tokens_per_second"] > 0 and 0 <= summary["sequence_accuracy"] <= 1
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [2, 4, 6, 8, 10]
    assert [r["step"] for r in records if "eval_loss" in r] == [5, 10]
    assert records[-1]["eval_sequence_accuracy"] == summary["sequence_accuracy"]
    state = load_checkpoint(tmp_path).trainer_state
    assert state["step"] == 10


def test_evaluation_is_repeatable_and_fresh_batches_differ():
    trainer = make_trainer()
    assert trainer.evaluate(2) == trainer.evaluate(2)
    assert trainer.evaluate(2, seed=1) != trainer.evaluate(2, seed=2)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path, steps=20, save_every=4)
    calls = {"n": 0}

    def poison_from_step_7(logits, hook):
        calls["n"] += 1
        return logits * float("nan") if calls["n"] >= 7 else None

    with trainer.model.hooks({"logits": poison_from_step_7}):
        with pytest.raises(TrainingDiverged, match=r"step 7: loss = nan.*last good checkpoint \(step 4\)"):
            trainer.train()
    assert trainer.step == 6
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())  # the bad step was not applied
    checkpoint = load_checkpoint(tmp_path)
    assert checkpoint.trainer_state["step"] == 4
    assert all(torch.isfinite(p).all() for p in checkpoint.model.parameters())


def test_ctrl_c_finishes_the_step_saves_and_resumes(tmp_path):
    trainer = make_trainer(tmp_path, steps=10, save_every=0)
    task_batch = trainer.task.batch

    def batch_then_interrupt(*args, **kwargs):
        if trainer.step == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return task_batch(*args, **kwargs)

    trainer.task.batch = batch_then_interrupt
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN where pytest runs in the background (`make test &`)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert trainer.step == 4 and load_checkpoint(tmp_path).trainer_state["step"] == 4
    assert signal.getsignal(signal.SIGINT) is before  # the handler is given back
    assert Trainer.from_checkpoint(tmp_path).train()["steps"] == 10


def test_a_model_only_checkpoint_cannot_be_resumed(tmp_path):
    from glassformer.train.checkpoint import save_model

    trainer = make_trainer()
    save_model(tmp_path / "m", trainer.model)
    with pytest.raises(CheckpointError, match="cannot be resumed"):
        Trainer.from_checkpoint(tmp_path / "m")


def test_devices():
    assert resolve_device("auto") == auto_device()
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(ConfigError, match="device"):
        resolve_device("toaster")


@pytest.mark.parametrize(
    "field,value",
    [("steps", 0), ("batch_size", -1), ("lr", 0.0), ("lr", math.inf), ("min_lr", 1.0), ("weight_decay", -0.1),
     ("grad_accum", 0), ("dtype", "float16"), ("eval_every", -1), ("stop_at_accuracy", 1.5), ("grad_clip", -1.0)],
)
def test_bad_train_config_names_the_field(field, value):
    with pytest.raises(ConfigError, match=f"TrainConfig.{field}"):
        TrainConfig(**{"lr": 1e-3, field: value})


def test_batch_must_split_into_micro_batches():
    with pytest.raises(ConfigError, match="divisible by grad_accum"):
        TrainConfig(batch_size=10, grad_accum=3)


def test_model_must_suit_the_task():
    with pytest.raises(ConfigError, match="supports arch"):
        model_for_task(get_task("modular-addition"), "encoder-decoder")
