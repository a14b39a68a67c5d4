"""The tour behind ``gibbsebm demo``; its code lives in :mod:`gibbsebm.cli.demo`.

This module keeps ``from gibbsebm.demo import run_demo`` working.
"""

from .cli.demo import BETA_C, run_demo, synthetic_classifier

__all__ = ["run_demo", "BETA_C", "synthetic_classifier"]
