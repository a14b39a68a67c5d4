"""Conversion of :class:`gibbsebm.Samples` to :class:`arviz.InferenceData`, and summaries.

Groups and names:

* ``posterior``: the draws under ``var_name`` (default ``"y"``) with dims
  ``(chain, draw, batch_0, ..., y_dim_0, ...)``;
* ``sample_stats``: every entry of ``Samples.stats``, with arviz's conventional names where one
  exists: ``acceptance_prob`` -> ``acceptance_rate``, ``is_divergent`` -> ``diverging``,
  ``logdensity`` -> ``lp``. The Gibbs energy :math:`E(y)` of the draws is stored as
  ``gibbs_energy``, not ``energy``: arviz reserves ``energy`` for the Hamiltonian used by
  :func:`arviz.bfmi`, and :math:`E(y)` is not that quantity;
* attrs (on the InferenceData and on every group): ``method``, ``options`` (JSON), ``seed``, ``num_warmup``,
  ``thin``, the adapted parameters that are scalars, and the versions of gibbsebm, torch,
  pyro, numpy and arviz.

Examples
--------
>>> import torch, gibbsebm
>>> from gibbsebm.energies import Gaussian
>>> s = gibbsebm.sample(gibbsebm.Gibbs(Gaussian(torch.zeros(2))), "mala", num_chains=4,
...                     num_samples=20, num_warmup=20, seed=1, progress=False, warn=False)
>>> idata = to_inference_data(s)
>>> sorted(idata.groups())
['posterior', 'sample_stats']
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np

from .._json import to_jsonable

__all__ = ["to_inference_data", "summary", "STAT_NAMES"]

#: gibbsebm stat name -> arviz sample_stats name.
STAT_NAMES = {
    "acceptance_prob": "acceptance_rate",
    "is_divergent": "diverging",
    "logdensity": "lp",
    "energy": "gibbs_energy",
}


def _numpy(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy()


def _attrs(samples: Any) -> dict:
    # tensors of more than 16 numbers become a short description; NaN stays NaN, as in the
    # run record of :class:`gibbsebm.Samples` (``samples`` is duck-typed: no import of the driver)
    options = to_jsonable(samples.options, nonfinite="keep", max_tensor_numel=16)
    attrs: dict[str, Any] = {
        "inference_library": "gibbsebm",
        "method": samples.method,
        "options": json.dumps(options, sort_keys=True),
        "seed": -1 if samples.seed is None else int(samples.seed),
        "num_warmup": int(samples.num_warmup),
        "thin": int(samples.thin),
    }
    for k, v in samples.adaptation.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            attrs[f"adapted_{k}"] = v
    for lib, ver in samples.attrs.get("library_versions", {}).items():
        attrs[f"{lib}_version"] = str(ver)
    return attrs


def to_inference_data(samples: Any, var_name: str = "y"):
    """Convert :class:`gibbsebm.Samples` to :class:`arviz.InferenceData`.

    Parameters
    ----------
    samples : Samples
        A sampling result.
    var_name : str
        Name of the sampled variable in ``posterior``.

    Returns
    -------
    arviz.InferenceData
        With ``posterior`` and ``sample_stats`` groups and run metadata in the attrs.
    """
    import arviz as az

    batch = tuple(samples.batch_shape)
    event = tuple(samples.event_shape)
    batch_dims = [f"batch_{i}" for i in range(len(batch))]
    event_dims = [f"{var_name}_dim_{i}" for i in range(len(event))]
    posterior = {var_name: _numpy(samples.draws)}
    dims: dict[str, list[str]] = {var_name: batch_dims + event_dims}
    stats = {}
    for name, t in samples.stats.items():
        key = STAT_NAMES.get(name, name)
        arr = _numpy(t)
        stats[key] = arr
        extra = arr.ndim - 2 - len(batch)
        dims[key] = batch_dims + [f"{key}_dim_{i}" for i in range(max(0, extra))]
    for name, t in samples.extra.items():
        arr = _numpy(t)
        posterior[name] = arr
        dims[name] = [f"{name}_dim_{i}" for i in range(arr.ndim - 2)]
    with warnings.catch_warnings():
        # arviz warns when there are more chains than draws, the normal case for batched MCMC
        warnings.filterwarnings("ignore", message="More chains", category=UserWarning)
        attrs = _attrs(samples)
        idata = az.from_dict(posterior=posterior, sample_stats=stats, dims=dims, attrs=attrs)
    # arviz puts ``attrs`` on the InferenceData; copy them onto each group too, so that they
    # travel with ``idata.posterior`` alone (and into netCDF group attributes)
    for group in ("posterior", "sample_stats"):
        getattr(idata, group).attrs.update(attrs)
    return idata


def summary(samples: Any, var_name: str = "y", **kwargs: Any):
    """:func:`arviz.summary` of the draws: mean, sd, HDI, MCSE, bulk/tail ESS, R-hat.

    Extra keyword arguments go to :func:`arviz.summary`.

    Returns
    -------
    pandas.DataFrame
        One row per coordinate.
    """
    import arviz as az

    idata = to_inference_data(samples, var_name=var_name)
    kwargs.setdefault("var_names", [var_name])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="More chains", category=UserWarning)
        return az.summary(idata, **kwargs)
