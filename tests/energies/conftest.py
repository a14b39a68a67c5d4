"""The energy tests solve many small dense problems (eigenvalues of <= 512 x 512 matrices,
quadrature grids); intra-op threading only adds contention there, so they run single-threaded."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
