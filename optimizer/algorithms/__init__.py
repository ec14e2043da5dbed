"""Methods behind one interface, registered by name."""

from optimizer.algorithms import (  # noqa: F401  (importing a method's module registers it)
    autosimulate,
    blackbox,  # bayesopt, random
    reinforce,
)
from optimizer.algorithms.base import REGISTRY, Algorithm, Context, get

__all__ = ["REGISTRY", "Algorithm", "Context", "get"]
