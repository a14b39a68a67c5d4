"""Shared problems for the partition-function tests (exact answers known)."""

import math

import pytest
import torch
from scipy import integrate

import gibbsebm


def double_well_energy(y: torch.Tensor) -> torch.Tensor:
    """E(y) = sum_i a (y_i^2 - 1)^2 with a = 2: two wells per coordinate at +-1."""
    return 2.0 * ((y**2 - 1.0) ** 2).sum(-1)


def double_well_log_z(beta: float, dim: int) -> float:
    """Exact log Z of the product double well by 1-D adaptive quadrature (scipy)."""
    val, _ = integrate.quad(
        lambda x: math.exp(-beta * 2.0 * (x * x - 1.0) ** 2),
        -10,
        10,
        epsabs=0,
        epsrel=1e-13,
        limit=200,
    )
    return dim * math.log(val)


@pytest.fixture
def double_well():
    def make(beta: float = 1.5, dim: int = 2):
        return gibbsebm.Gibbs(double_well_energy, beta=beta, event_shape=(dim,)), double_well_log_z(
            beta, dim
        )

    return make


def within(est, truth: float, k: float = 4.0, floor: float = 1e-6) -> bool:
    """|estimate - truth| <= k stderr (plus a floor for exact-zero-variance cases)."""
    return abs(est.log_z - truth) <= k * est.stderr + floor


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """The estimators run on small tensors; intra-op threads only add contention on a shared
    2-core machine. Restored after each test."""
    yield
