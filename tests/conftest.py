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
