"""The energy tests solve many small dense problems (eigenvalues of <= 512 x 512 matrices,
quadrature grids); intra-op threading only adds contention there, so they run single-threaded."""

import pytest


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    yield
