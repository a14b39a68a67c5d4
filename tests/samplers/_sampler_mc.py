"""Monte Carlo error helpers for the sampler tests (arviz's MCSE on (chain, draw) arrays)."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytest
import torch


def mean_mcse(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and Monte Carlo standard error of each coordinate of draws ``(C, D, *rest)``.

    The MCSE is arviz's (bulk-ESS based, pooling all chains), so autocorrelation and
    between-chain disagreement both widen it.
    """
    arr = x.detach().double().cpu().numpy()
    c, d = arr.shape[:2]
    flat = arr.reshape(c, d, -1)
    means = flat.mean((0, 1))
    errs = np.empty(flat.shape[2])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="More chains", category=UserWarning)
        for j in range(flat.shape[2]):
            errs[j] = float(az.mcse(flat[:, :, j], method="mean"))
    shape = arr.shape[2:]
    return means.reshape(shape), errs.reshape(shape)


def zscore(x: torch.Tensor, exact) -> np.ndarray:
    """``(mean - exact) / mcse`` per coordinate."""
    m, e = mean_mcse(x)
    return (m - np.asarray(exact, dtype=np.float64)) / e


@pytest.fixture(autouse=True)
def one_thread():
    """Run each test with one intra-op thread, restoring the previous count afterwards.

    The suite runs on small shared CPUs, where BLAS threads spin-wait: a (32, 10) @ (10, 10)
    matmul measured 5 us with one thread and 250 us with two under load, so sampler tests
    took 4-10x longer. Results do not depend on the thread count.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def mixture_4d():
    """3 modes in 4-D, unequal widths (0.6, 1.0, 0.8) and weights (0.5, 0.3, 0.2), 6.7 to 11.2
    apart: plain MALA does not cross between them, PT with the default ladder does."""
    g = torch.Generator().manual_seed(2)
    means = 4.0 * torch.randn(3, 4, generator=g, dtype=torch.float64)
    from gibbsebm.energies import GaussianMixture

    return GaussianMixture(
        means,
        torch.tensor([0.6, 1.0, 0.8], dtype=torch.float64),
        torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64),
    )
