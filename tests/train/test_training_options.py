"""Gradient clipping and torch.compile in the training loop do what they say."""

import pytest
import torch

from glassformer.train import TrainConfig, Trainer, get_task, model_for_task


def make(**config):
    torch.manual_seed(0)
    task = get_task("reverse", length=5)
    model = model_for_task(task, d_model=32, n_layers=2, n_heads=4)
    return Trainer(model, task, TrainConfig(**{"steps": 6, "batch_size": 16, "lr": 3e-3, "warmup_steps": 1,
                                                "eval_every": 0, "eval_batches": 1, "quiet": True, **config}))


def _grad_norm_at_step(trainer) -> list[float]:
    """The global gradient norm the optimizer is given, recorded at every step."""
    seen, step = [], trainer.optimizer.step

    def recording_step(*args, **kwargs):
        grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
        seen.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))
        return step(*args, **kwargs)

    trainer.optimizer.step = recording_step
    return seen


def test_gradient_clipping_caps_the_norm_the_optimizer_sees():
    clipped = make(grad_clip=0.05)
    seen = _grad_norm_at_step(clipped)
    clipped.train_step()
    assert clipped._last_grad_norm > 0.05  # the unclipped norm (what metrics.jsonl records) is larger ...
    assert seen[0] == pytest.approx(0.05, rel=1e-4)  # ... and the optimizer is given exactly the cap
    free = make(grad_clip=0)
    seen_free = _grad_norm_at_step(free)
    free.train_step()
    assert seen_free[0] == pytest.approx(clipped._last_grad_norm, rel=1e-4)  # off: the same gradient, unscaled


def test_compiled_training_follows_the_eager_run():
    """torch.compile's graph capture of the training forward (``aot_eager``: dynamo + AOT autograd, without the
    C++ code generation that makes inductor slow to test) gives the eager run's losses."""
    eager, compiled = make(), make(compile="aot_eager")
    for _ in range(3):
        assert compiled.train_step() == pytest.approx(eager.train_step(), rel=1e-4, abs=1e-5)
