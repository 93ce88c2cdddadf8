"""Every task is learned within a CPU-friendly budget.

Each case trains a small model until an evaluation on the task's held-out stream reaches 100%
sequence accuracy (or its step budget runs out), then checks >= 99% on 1024 *other* fresh examples.
Options are the defaults except where noted: modular-addition is shrunk so it fits in a test (at its
defaults it generalises by grokking, after thousands of steps: an experiment, not a test). Histogram
runs at its defaults because its answer names each letter before its count (``abca>a2b1c1a2``);
with counts alone it sat on a plateau for thousands of steps (see ``Histogram``). The dyck encoder
uses lr 1e-3: at 3e-3 two of five initialisations stopped at 97-98% after 1,200 steps, while at
1e-3 all of them reached 100% within 350-850 steps.
"""

from pathlib import Path

import pytest
import torch

from glassformer.train import TextTask, TrainConfig, Trainer, get_task, model_for_task
from glassformer.train.metrics import accuracy_counts

SMALL = dict(d_model=64, n_layers=2, n_heads=4)
TINY = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "shakespeare" / "tiny.txt"

# (task, options, arch, model sizes, TrainConfig overrides, max steps)
CASES = [
    ("copy", {}, "decoder", SMALL, {}, 400),
    ("reverse", {}, "decoder", SMALL, {}, 400),
    ("reverse", {}, "encoder-decoder", SMALL, {}, 600),
    ("sort", {}, "decoder", SMALL, {"stop_at_accuracy": None}, 1200),  # the full schedule: a margin above 99%
    ("histogram", {}, "decoder", SMALL, {}, 2000),  # stops at ~1,800
    ("addition", {"reverse_answer": True}, "decoder", SMALL, {}, 5000),  # stops at 1,350-2,800
    ("dyck", {}, "decoder", SMALL, {}, 1200),
    ("dyck", {}, "encoder", SMALL, {"lr": 1e-3}, 1200),  # stops at ~350-850
    ("contains-ab", {}, "encoder", SMALL, {}, 400),
    ("majority", {}, "encoder", SMALL, {}, 600),
    ("majority", {}, "decoder", SMALL, {}, 400),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,options,arch,sizes,overrides,steps", CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_task_is_learned(name, options, arch, sizes, overrides, steps, seed, record_property):
    """Measured with sweep.py over 8 runs: seeds 0-4 with 1 torch thread and seeds 0-2 with 2 threads (seeds 3-4
    with 2 threads not run). Steps where training stopped; fresh sequence accuracy (threshold 0.99): copy and
    reverse 50, 1.0; reverse encoder-decoder 150-350, 0.998-1.0; sort 1,200 (full schedule), 0.999-1.0;
    histogram 1,450-2,000, 0.998-1.0; dyck decoder 100-350, 0.997-1.0; dyck encoder 400-700, 0.998-1.0;
    contains-ab 50-100, 0.999-1.0; majority encoder 50-350, 0.998-1.0; majority decoder 50-150, 0.996-1.0.
    Every other case passed in all 8 runs. addition, with the old 2,500-step budget: 6 runs stopped at
    1,500-1,850 with 0.995-1.0, but 2 of 8 sat on a plateau for the whole budget and failed (seed 4 / 1 thread:
    fresh 0.028; seed 2 / 2 threads: fresh 0.10). With 5,000 steps (a longer schedule; measured by a script running
    this case's code, seeds 0, 1, 3, 4 with 1 thread and 0-2 with 2 threads; seed 2 / 1 thread not run) all 7
    runs stopped at 1,350-2,800 steps with fresh 0.995-1.0, both former failures included."""
    torch.manual_seed(seed)
    task = get_task(name, **options)
    model = model_for_task(task, arch, **sizes)
    config = dict(steps=steps, batch_size=64, lr=3e-3, warmup_steps=20, eval_every=50, eval_batches=8,
                  stop_at_accuracy=1.0, quiet=True, seed=seed)
    trainer = Trainer(model, task, TrainConfig(**{**config, **overrides}))
    summary = trainer.train()
    fresh = trainer.evaluate(n_batches=16, seed=12345)  # 1024 examples the stopping rule never saw
    record_property("steps", summary["steps"])
    record_property("fresh", fresh["sequence_accuracy"])
    assert fresh["sequence_accuracy"] >= 0.99, (summary, fresh)


@pytest.mark.slow
def test_induction_is_learned_at_every_repeat_length(seed, record_property):
    """The induction task varies the repeat length (5..8) and where the repeat starts, so no fixed look-back
    distance answers it: the model must find the earlier copy. Then each repeat length is scored alone.

    Measured (learned positions, lr 3e-3, batch 64, 1 thread): seeds 0, 1, 2 reached 100% on the stopping
    evaluation at 1,900, 2,800 and 3,000 steps, then 99.4-99.9% on fresh examples and >= 99.2% at every length;
    seed 0 with 2 threads stopped at 2,600 steps, 99.6% fresh, 100% at every length.
    (RoPE was slower: 2 of 3 seeds had not converged at 3,000.) Re-measured after the fused-QKV change, seed 0
    with 2 threads: 2,600 steps, fresh 0.997, worst length 0.992 (2 threads seeds 1-4 and 1 thread seeds 3-4 not
    run). The budget of 4,000 leaves room above the
    slowest seed; the per-length threshold sits below the worst measured length."""
    torch.manual_seed(seed)
    task = get_task("induction")
    model = model_for_task(task, "decoder", **SMALL)
    config = TrainConfig(steps=4000, batch_size=64, lr=3e-3, warmup_steps=20, eval_every=100, eval_batches=8,
                         stop_at_accuracy=1.0, quiet=True, seed=seed)
    trainer = Trainer(model, task, config)
    summary = trainer.train()
    fresh = trainer.evaluate(n_batches=16, seed=12345)
    per_length = {n: Trainer(model, task.with_repeat_length(n), config).evaluate(n_batches=4, seed=999)["sequence_accuracy"]
                  for n in range(task.min_length, task.length + 1)}
    record_property("steps", summary["steps"])
    record_property("fresh", fresh["sequence_accuracy"])
    record_property("worst_length", min(per_length.values()))
    assert fresh["sequence_accuracy"] >= 0.99, (summary, fresh)
    for n, accuracy in per_length.items():
        assert accuracy >= 0.98, (n, accuracy)


@pytest.mark.slow
def test_modular_addition_fits_its_training_pairs_and_generalises_beyond_chance(seed, record_property):
    """The grokking set-up, shrunk to p = 31 with 90% of the pairs for training: the model fits the
    training pairs, and already answers far more held-out pairs than chance (1/31) would. Full
    generalisation comes much later (grokking) and is an experiment, not a test.

    Both splits are scored whole (865 training pairs, 96 held out), so the check has no sampling noise.
    Measured at 1,500 steps (seeds 0-3, one thread, last session): training pairs 0.985-1.0, held out 0.927-1.0;
    this session (seeds 0-1, one thread, after the fused-QKV forward changed the float trajectory): training pairs
    0.966-0.983, held out 0.958-0.969; on another machine two runs scored 0.989 and 0.984 on sampled training
    batches, which failed the old 0.99 threshold. Swept over seeds 0-4 with 1 thread and seeds 0-2 with 2 threads
    (8 runs, stopping at 1,250-1,500 steps): training pairs 0.942-1.0 (worst: seed 1, 2 threads), held out
    0.906-1.0. The old 0.93 left 0.012 below the worst run, so the training threshold is 0.90; held out >= 0.5
    keeps a wide margin."""
    torch.manual_seed(seed)
    task = get_task("modular-addition", p=31, train_fraction=0.9)
    model = model_for_task(task, "decoder", d_model=128, n_layers=1, n_heads=4)
    config = TrainConfig(steps=1500, batch_size=128, lr=1e-2, weight_decay=1.0, warmup_steps=50, eval_every=50,
                         eval_batches=8, stop_at_accuracy=1.0, quiet=True, seed=seed)
    trainer = Trainer(model, task, config, eval_task=task)  # stop once the training pairs are all right
    summary = trainer.train()
    train_split = _whole_split_accuracy(model, task)
    held_out = _whole_split_accuracy(model, task.with_split("val"))
    record_property("steps", summary["steps"])
    record_property("train_split", train_split)
    record_property("held_out", held_out)
    assert train_split >= 0.90, train_split
    assert held_out >= 0.5, held_out


def _whole_split_accuracy(model, task) -> float:
    """Sequence accuracy over every pair of the task's split (``full_batch``), not a sample of it."""
    batch = task.full_batch("decoder")
    with torch.no_grad():
        _, _, hits, rows = accuracy_counts(model.eval()(batch.inputs), batch)
    return hits / rows


@pytest.mark.slow
@pytest.mark.skipif(not TINY.is_file(), reason="shared/data/shakespeare/tiny.txt is not beside the repository")
def test_character_level_language_model_learns_shakespeare(tmp_path, monkeypatch, seed, record_property):
    monkeypatch.setenv("GLASSFORMER_CACHE", str(tmp_path))
    torch.manual_seed(seed)
    task = TextTask(TINY, block_size=64)
    model = model_for_task(task, "decoder", d_model=64, n_layers=2, n_heads=4)
    trainer = Trainer(model, task, TrainConfig(steps=300, batch_size=32, lr=6e-3, warmup_steps=30, eval_every=0,
                                               eval_batches=8, quiet=True, seed=seed))
    before = trainer.evaluate()
    summary = trainer.train()
    record_property("loss", summary["loss"])
    # Measured over seeds 0-4 with 1 thread: held-out loss 2.233-2.296 (2 threads: see below); threshold 2.4 keeps
    # a margin and stays below the bigram model's 2.49.
    assert before["loss"] > 4.0  # ~ ln(65): a uniform guess over the characters
    # On the held-out split a unigram model scores 3.39 nats and a bigram model 2.49: this one uses
    # more context than the previous character.
    assert summary["loss"] < 2.4, summary
