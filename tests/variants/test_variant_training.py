"""Every variant trains with the core trainer: a short run on a generated task takes accuracy far above
chance. (Short on purpose: the budget is seconds; each variant gets 80 steps, the slower learners 160: SLOW.)"""

import pytest
import torch

from glassformer.train.tasks import get_task
from glassformer.train.trainer import TrainConfig, Trainer, model_for_task

DECODER_VARIANTS = {
    "qk_norm": dict(qk_norm=True),
    "t5": dict(positional="t5"),
    "relu2": dict(act="relu2"),
    "swiglu": dict(act="swiglu"),
    "geglu": dict(act="geglu"),
    "sliding": dict(attention="sliding", window=8, positional="rope"),
    "sparse strided": dict(attention="sparse", stride=4, positional="rope"),
    "sparse fixed": dict(attention="sparse", sparse_pattern="fixed", stride=4, sparse_summary=2, positional="rope"),
    "linear": dict(attention="linear", positional="rope"),
    "transformer-xl": dict(memory_len=8, positional="rope"),
}
# Measured over seeds 0-3, 1 thread (token accuracy; loss ratio = mean of the last 10 losses / the first):
# at 80 steps sparse strided reached 0.18-0.54 (failing > 0.4 at seeds 1 and 3; ratio up to 0.93), T5 0.42-0.47
# (ratio 0.67-0.71), sparse fixed 0.45-0.59, linear 0.45-0.51. At 160 steps (seeds 0-4, 1 thread): T5 0.57-0.67
# (ratio <= 0.53), sparse strided 0.48-1.0 (<= 0.58; the most seed-dependent: copying 7 positions back takes it
# two hops through its stride-4 pattern), sparse fixed 0.92-0.98 (<= 0.19), linear 0.80-0.87 (<= 0.34). So these
# four get 160 steps. The others at 80 steps (seeds 0-4): decoders >= 0.77 (sliding, relu2; qk_norm, GLU, XL
# >= 0.88), ratio <= 0.43; encoders: linformer 0.72-1.0 (ratio <= 0.66), sliding 0.68-0.74 (<= 0.68), linear 1.0.
SLOW = {"t5": 160, "sparse strided": 160, "sparse fixed": 160, "linear": 160}
ENCODER_VARIANTS = {
    "linformer": dict(attention="linformer", linformer_k=4),
    "sliding": dict(attention="sliding", window=3),
    "linear": dict(attention="linear"),
}


def train(task, arch: str, variant: dict, seed: int, steps: int = 80) -> tuple[dict, list[float]]:
    torch.manual_seed(seed)
    model = model_for_task(task, arch, d_model=32, n_heads=4, n_layers=2, **variant)
    config = TrainConfig(steps=steps, batch_size=32, lr=3e-3, warmup_steps=10, eval_every=0, quiet=True, device="cpu", seed=seed)
    trainer = Trainer(model, task, config)
    return trainer.train(), trainer.losses


@pytest.mark.parametrize("name", list(DECODER_VARIANTS))
def test_decoder_variant_learns_to_copy(name, seed, record_property):
    summary, losses = train(get_task("copy", length=6, vocab_size=6), "decoder", DECODER_VARIANTS[name], seed,
                            steps=SLOW.get(name, 80))
    record_property("token_accuracy", summary["token_accuracy"])
    record_property("loss_ratio", sum(losses[-10:]) / 10 / losses[0])
    assert summary["token_accuracy"] > 0.4  # chance: 1/6
    assert sum(losses[-10:]) / 10 < 0.75 * losses[0]


@pytest.mark.parametrize("name", list(ENCODER_VARIANTS))
def test_encoder_variant_learns_the_majority_letter(name, seed, record_property):
    summary, losses = train(get_task("majority", length=8, vocab_size=3), "encoder", ENCODER_VARIANTS[name], seed)
    record_property("token_accuracy", summary["token_accuracy"])
    record_property("loss_ratio", sum(losses[-10:]) / 10 / losses[0])
    assert summary["token_accuracy"] > 0.6  # chance: about 1/3
    assert sum(losses[-10:]) / 10 < 0.75 * losses[0]
