"""Shared test set-up: headless plotting, deterministic seeds, a GPU marker that skips cleanly.

Learning tests (whose result depends on a training trajectory) take their seed from the ``seed`` fixture: 0 in
the suite, or ``GLASSFORMER_TEST_SEED`` when a sweep measures a test over seeds. ``GLASSFORMER_TEST_THREADS``
sets the torch thread count for such a sweep (it overrides ``one_thread`` and the one thread per xdist worker).
Tests report what they measured with pytest's ``record_property`` (in the JUnit XML a sweep reads).
"""

import os
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

REPO = Path(__file__).resolve().parents[1]
SHAKESPEARE = REPO.parent / "shared" / "data" / "shakespeare"
TEST_SEED = int(os.environ.get("GLASSFORMER_TEST_SEED", "0"))  # a sweep over seeds sets it; the suite runs seed 0
SWEEP_THREADS = int(os.environ["GLASSFORMER_TEST_THREADS"]) if os.environ.get("GLASSFORMER_TEST_THREADS") else None


def pytest_configure(config):
    if SWEEP_THREADS:
        torch.set_num_threads(SWEEP_THREADS)
    elif os.environ.get("PYTEST_XDIST_WORKER"):  # parallel workers share 2 cores: one thread each
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
    torch.manual_seed(TEST_SEED)


@pytest.fixture
def seed() -> int:
    """The seed of a learning test (initialisation and data stream): 0, or ``GLASSFORMER_TEST_SEED`` in a sweep."""
    return TEST_SEED


@pytest.fixture
def one_thread():
    """Run a test with one torch thread, then restore the setting. Tiny models on a busy 2-core machine: one
    intra-op thread beats two that wait on each other (the thread pool costs more than it saves). A sweep's
    ``GLASSFORMER_TEST_THREADS`` overrides it."""
    before = torch.get_num_threads()
    torch.set_num_threads(SWEEP_THREADS or 1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def shakespeare_tiny() -> Path:
    path = SHAKESPEARE / "tiny.txt"
    if not path.is_file():
        pytest.skip(f"shared data not found at {path}")
    return path
