"""Gibbs posteriors (generalized Bayes) and the calibration of their learning rate.

A loss :math:`\\ell(\\theta, z)` replaces the log-likelihood of a Bayesian model:

.. math::

    \\pi_\\omega(\\theta \\mid z_{1:n}) \\propto \\pi(\\theta)
    \\exp\\Big(-\\omega \\sum_{i=1}^n \\ell(\\theta, z_i)\\Big),

a Gibbs distribution over :math:`\\theta` whose energy is the empirical risk and whose
inverse temperature is the *learning rate* :math:`\\omega` (called ``beta`` here, as
everywhere in gibbsebm). Nothing in the loss fixes :math:`\\omega`: with
:math:`\\omega = 1` a squared loss behaves like a Gaussian likelihood with unit variance, so
its credible intervals are too narrow or too wide whenever the noise scale is not 1.

This package gives

* :func:`gibbs_posterior`: the Gibbs posterior as a :class:`gibbsebm.Gibbs` over
  :math:`\\theta` (prior as base measure), to sample with :func:`gibbsebm.sample`;
* :func:`gibbs_posterior_model`: the same as a Pyro model built on
  :func:`gibbsebm.energy_factor`, for Pyro's NUTS, ``Predictive`` and ``arviz.from_pyro``;
* :func:`weighted_gibbs_posterior`: many Gibbs posteriors at once, one per weighting of the
  data (bootstrap resamples, simulated data sets), sampled jointly as one batched target;
* :func:`calibrate_learning_rate`: choose :math:`\\omega` so that credible regions cover at
  their nominal level, by the generalized posterior calibration (GPC) algorithm of Syring &
  Martin (2019) (``method="gpc"``), or by matching the information of the loss-likelihood
  bootstrap of Lyddon, Holmes & Walker (2019) (``method="llb"``);
* :func:`loss_likelihood_bootstrap`: draws of the loss-likelihood bootstrap itself.

The loss convention: ``loss_fn(theta, data)`` takes ``theta`` shaped ``(C, d)`` and returns
per-observation losses shaped ``(C, n)`` (``data`` is a tensor or a tuple of tensors with
the observations on the leading dimension, e.g. ``(X, y)``).

References
----------
Bissiri, P. G., Holmes, C. C., Walker, S. G. (2016). A general framework for updating belief
distributions. *J. R. Stat. Soc. B* 78(5), 1103-1130.

Syring, N., Martin, R. (2019). Calibrating general posterior credible regions.
*Biometrika* 106(2), 479-486.

Lyddon, S. P., Holmes, C. C., Walker, S. G. (2019). General Bayesian updating and the
loss-likelihood bootstrap. *Biometrika* 106(2), 465-478.

The package: :mod:`.posterior` (the Gibbs posterior and its Pyro and weighted forms) and
:mod:`.learning_rate` (the loss minimiser, the sandwich rate, the loss-likelihood bootstrap,
credible regions and the calibration); every public name is re-exported here.
"""

from .learning_rate import (
    LearningRateCalibration,
    calibrate_learning_rate,
    credible_region_contains,
    loss_likelihood_bootstrap,
    minimize_loss,
    sandwich_learning_rate,
)
from .posterior import LossFn, gibbs_posterior, gibbs_posterior_model, weighted_gibbs_posterior

__all__ = [
    "LossFn",
    "gibbs_posterior",
    "gibbs_posterior_model",
    "weighted_gibbs_posterior",
    "minimize_loss",
    "sandwich_learning_rate",
    "loss_likelihood_bootstrap",
    "credible_region_contains",
    "LearningRateCalibration",
    "calibrate_learning_rate",
]
