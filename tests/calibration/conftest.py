"""Run the calibration tests single-threaded (small tensors; avoids oversubscribed cores)."""

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield
