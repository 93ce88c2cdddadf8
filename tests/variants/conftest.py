"""Variant tests run tiny models: one intra-op thread is faster than two competing ones (much faster on a
busy 2-core machine), so each test here runs single-threaded and restores the setting afterwards."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
