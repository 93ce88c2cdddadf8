"""RASP tests run torch single-threaded (``one_thread`` in tests/conftest.py): compiled models are small."""

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield
