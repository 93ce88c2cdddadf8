"""RASP tests run torch single-threaded: compiled models are small, and on a busy CPU the thread pool's
start-up costs more than it saves."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
