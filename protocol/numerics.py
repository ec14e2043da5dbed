"""Numerically stable pieces of the distributions' maths (protocol/distributions.py): the log of a
sigmoid, a softmax and the standard normal inverse CDF. protocol.distributions imports them under
these same names, so `from protocol.distributions import _softmax` (etc.) keeps working.

numpy + stdlib only: this module also runs inside Blender's bundled Python (no scipy there).
"""

from __future__ import annotations

import math
import statistics

import numpy as np

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _log_prob_sigmoid(x: np.ndarray | float) -> np.ndarray:
    """log(sigmoid(x)) without overflow for large |x|."""
    return -np.logaddexp(0.0, -np.asarray(x, dtype=np.float64))


_PPF = np.vectorize(statistics.NormalDist().inv_cdf, otypes=[np.float64])


def _std_normal_ppf(u: np.ndarray) -> np.ndarray:
    """Standard normal inverse CDF (stdlib: no scipy inside Blender)."""
    return _PPF(np.clip(u, 1e-300, 1.0 - 1e-16))


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - np.max(logits))
    return e / e.sum()
