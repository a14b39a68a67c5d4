"""Learning energies: contrastive divergence with replay buffers, score matching and NCE,
monitored by the exact or AIS log-likelihood, MMD and calibration. See ``docs/learning.md``.
"""

from .buffer import ReplayBuffer
from .fit import METHODS, FitResult, NonFiniteLossError, fit, trainable
from .losses import GaussianNoise, cd_loss, dsm_loss, nce_loss, ssm_loss
from .monitors import (
    AISLogLikelihood,
    CalibrationMonitor,
    ExactLogLikelihood,
    MMDMonitor,
    MMDResult,
    MonitorContext,
    mmd,
)
from .negatives import Negatives, draw_negatives

__all__ = [
    "AISLogLikelihood",
    "CalibrationMonitor",
    "ExactLogLikelihood",
    "FitResult",
    "GaussianNoise",
    "METHODS",
    "MMDMonitor",
    "MMDResult",
    "MonitorContext",
    "Negatives",
    "NonFiniteLossError",
    "ReplayBuffer",
    "cd_loss",
    "draw_negatives",
    "dsm_loss",
    "fit",
    "mmd",
    "nce_loss",
    "ssm_loss",
    "trainable",
]
