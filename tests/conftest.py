"""Shared fixtures. ``GIBBSEBM_DEVICE=cuda`` runs the suite on a GPU (default: CPU)."""

import os

import pytest
import torch

DEVICE = torch.device(os.environ.get("GIBBSEBM_DEVICE", "cpu"))


@pytest.fixture
def device() -> torch.device:
    return DEVICE


@pytest.fixture
def generator() -> torch.Generator:
    g = torch.Generator(device=DEVICE)
    g.manual_seed(20261127)
    return g


@pytest.fixture
def one_thread():
    """One torch intra-op thread for the test, restored after it.

    Small batched tensors gain nothing from intra-op threads, and on a shared 2-core machine the
    threads oversubscribe the cores (512 short chains: 14 s instead of 0.5 s). Modules and
    folders opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
