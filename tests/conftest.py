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
def one_thread():
    """Run a test with one torch thread, then restore the setting. Tiny models on a busy 2-core machine: one
    intra-op thread beats two that wait on each other (the thread pool costs more than it saves)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def shakespeare_tiny() -> Path:
    path = SHAKESPEARE / "tiny.txt"
    if not path.is_file():
        pytest.skip(f"shared data not found at {path}")
    return path
