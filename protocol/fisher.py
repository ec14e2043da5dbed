"""The Fisher information of q_psi, in closed form: natural-gradient directions and KL sizes.

q_psi is a product of independent parameters, so its Fisher F is block-diagonal, one block per
parameter: a normal's is diag(1/std^2) on its means and 2 on its log-stds, a bernoulli's
p(1 - p), a categorical's diag(p) - p p^T (singular along equal logit shifts, which do not
change the distribution; its pseudo-inverse is used). KL(q_psi || q_psi+d) = d^T F d / 2 to
second order, which is what a trust region on psi bounds.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from protocol.distributions import BernoulliParam, CategoricalParam, NormalParam, Param
from protocol.numerics import _log_prob_sigmoid, _softmax
from protocol.space import ParameterSpace


def _natural(p: Param, g: np.ndarray, theta: np.ndarray) -> np.ndarray:
    if isinstance(p, NormalParam):
        var = np.exp(2.0 * theta[p.dim:])
        return np.concatenate([g[: p.dim] * var, g[p.dim:] / 2.0])
    if isinstance(p, CategoricalParam):
        probs = _softmax(theta)
        d = (g - g.mean()) / probs  # g projected onto F's range (sum 0), then F^+ of it
        return d - d.mean()  # the zero-mean representative: logits stay centred
    if isinstance(p, BernoulliParam):
        q = float(np.exp(_log_prob_sigmoid(theta[0])))
        return g / max(q * (1.0 - q), 1e-12)
    raise TypeError(f"fisher: no rule for parameter kind {p.kind!r}")  # a new kind must say


def _norm2(p: Param, d: np.ndarray, theta: np.ndarray) -> float:
    if isinstance(p, NormalParam):
        return float(np.sum(d[: p.dim] ** 2 * np.exp(-2.0 * theta[p.dim:]))
                     + 2.0 * np.sum(d[p.dim:] ** 2))
    if isinstance(p, CategoricalParam):
        probs = _softmax(theta)
        return float(np.sum(probs * d * d) - np.sum(probs * d) ** 2)
    if isinstance(p, BernoulliParam):
        q = float(np.exp(_log_prob_sigmoid(theta[0])))
        return float(q * (1.0 - q) * d[0] ** 2)
    raise TypeError(f"fisher: no rule for parameter kind {p.kind!r}")


def natural_direction(space: ParameterSpace, grad: ArrayLike,
                      psi: ArrayLike | None = None) -> np.ndarray:
    """F^+ grad at psi (default: the space's own): the steepest direction per unit of KL."""
    g = np.asarray(grad, dtype=np.float64)
    theta = space.psi if psi is None else np.asarray(psi, dtype=np.float64)
    out = np.zeros_like(g)
    for p in space.params:
        s = space.psi_slices[p.name]
        out[s] = _natural(p, g[s], theta[s])
    return out


def fisher_norm2(space: ParameterSpace, d: ArrayLike, psi: ArrayLike | None = None) -> float:
    """d^T F d at psi: twice the KL divergence a step d makes, to second order."""
    d = np.asarray(d, dtype=np.float64)
    theta = space.psi if psi is None else np.asarray(psi, dtype=np.float64)
    return sum(_norm2(p, d[space.psi_slices[p.name]], theta[space.psi_slices[p.name]])
               for p in space.params)
