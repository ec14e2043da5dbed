"""Methods behind one interface, registered by name."""

from optimizer.algorithms import autosimulate  # noqa: F401  (registers)
from optimizer.algorithms.base import REGISTRY, Algorithm, Context, get

__all__ = ["REGISTRY", "Algorithm", "Context", "get"]
