"""Adapters to other libraries: :mod:`gibbsebm.interop.arviz` (InferenceData, summaries)."""

__all__ = ["arviz"]
