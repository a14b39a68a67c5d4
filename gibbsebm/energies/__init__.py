"""Built-in energies, each with its formula and, where one exists, its exact log Z.

See :class:`EnergyModel` for the protocol.
"""

from .banana import Banana
from .base import EnergyModel
from .double_well import DoubleWell
from .gaussian import Gaussian
from .ising import BETA_CRITICAL, Ising2D
from .mixture import GaussianMixture
from .rbm import RBM, train_rbm_cd

__all__ = [
    "EnergyModel",
    "Gaussian",
    "GaussianMixture",
    "Banana",
    "DoubleWell",
    "Ising2D",
    "BETA_CRITICAL",
    "RBM",
    "train_rbm_cd",
]
