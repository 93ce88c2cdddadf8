"""DDP on CPU: ``torchrun --nproc_per_node 2 -m glassformer train ...`` with the gloo backend takes the
same steps as one process on the same global batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from glassformer.cli import main
from glassformer.train.checkpoint import load_checkpoint
from glassformer.train.distributed import DistInfo, shard_rows

REPO = Path(__file__).resolve().parents[2]
ARGS = ["train", "--task", "reverse", "--option", "length=4", "--steps", "4", "--log-every", "1", "--eval-every", "2",
        "--eval-batches", "2", "--d-model", "32", "--n-layers", "1", "--n-heads", "2", "--batch-size", "16",
        "--device", "cpu", "--quiet"]


def losses(run_dir: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if "loss" in r}


def evals(run_dir: Path) -> list[float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["eval_loss"] for r in records if "eval_loss" in r]


@pytest.mark.slow
def test_two_gloo_processes_take_the_same_steps_as_one(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "glassformer"]
    result = subprocess.run([*launch, *ARGS, "--grad-accum", "2", "--out", str(tmp_path / "ddp")], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("done: 4 steps") == 1  # only rank 0 reports

    assert main([*ARGS, "--out", str(tmp_path / "single")]) == 0
    ddp, single = losses(tmp_path / "ddp"), losses(tmp_path / "single")
    assert list(ddp) == list(single) == [1, 2, 3, 4]
    assert list(ddp.values()) == pytest.approx(list(single.values()), rel=1e-5)
    assert evals(tmp_path / "ddp") == pytest.approx(evals(tmp_path / "single"), rel=1e-5)
    a, b = load_checkpoint(tmp_path / "ddp").model, load_checkpoint(tmp_path / "single").model
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=name)


def test_each_rank_gets_its_own_contiguous_share():
    shares = [shard_rows(12, DistInfo(rank=r, world_size=3)) for r in range(3)]
    assert [list(range(12))[s] for s in shares] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    with pytest.raises(ValueError, match="divisible by the number of processes"):
        shard_rows(10, DistInfo(rank=0, world_size=3))
