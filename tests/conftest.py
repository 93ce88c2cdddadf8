"""Shared test set-up: headless plotting, deterministic seeds, a GPU marker that skips cleanly."""

import os
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

REPO = Path(__file__).resolve().parents[1]
SHAKESPEARE = REPO.parent / "shared" / "data" / "shakespeare"


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER"):  # parallel workers share 2 cores: one thread each
        torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (no GPU on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def shakespeare_tiny() -> Path:
    path = SHAKESPEARE / "tiny.txt"
    if not path.is_file():
        pytest.skip(f"shared data not found at {path}")
    return path
