"""How a hypergradient moves psi: Adam (the paper's) or a natural-gradient step with a KL bound.

Adam normalises each entry of psi by its own gradient history, so in its first steps every free
entry moves by about lr whatever its gradient says, and its step is in psi's units (a light's
mean and a logit alike). `NaturalStep` measures steps in the distribution itself:

    m = EMA(g), s = EMA(g^T F^+ g) (same decay), step = -sqrt(2 kl / s) F^+ m

F is q_psi's Fisher information (protocol.fisher), so a step's KL(q_old || q_new) is about
kl * (m^T F^+ m) / s <= kl (Jensen, as the two averages share their weights): the full kl when
recent gradients agree, less as they cancel out. It is scale-free (the hypergradient's scale
does not matter) and moves a narrow normal's mean less than a wide one's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from protocol.fisher import fisher_norm2, natural_direction
from protocol.space import ParameterSpace

PSI_OPTIMIZERS = ("adam", "natural")


class NaturalStep:
    def __init__(self, kl: float, momentum: float = 0.9) -> None:
        if not kl > 0 or not math.isfinite(kl):
            raise ValueError(f"kl_step must be a positive number, got {kl}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"psi_momentum must be in [0, 1), got {momentum}")
        self.kl, self.beta = float(kl), float(momentum)
        self.m: np.ndarray | None = None
        self.s = 0.0
        self.t = 0

    def direction(self, space: ParameterSpace, psi: np.ndarray, grad: np.ndarray,
                  free: np.ndarray) -> np.ndarray:
        """The step to add to psi (zero on fixed entries) for hypergradient `grad` at psi."""
        g = np.where(free, grad, 0.0)
        nat = np.where(free, natural_direction(space, g, psi), 0.0)
        if not (np.isfinite(g).all() and np.isfinite(nat).all() and np.isfinite(g @ nat)):
            return np.zeros_like(g)  # (a near-certain choice: F^+ overflows) no step, no state
        if self.m is None:
            self.m = np.zeros_like(g)
        self.t += 1
        b = self.beta
        self.m = b * self.m + (1.0 - b) * g
        self.s = b * self.s + (1.0 - b) * float(g @ nat)  # g^T F^+ g
        corr = 1.0 - b ** self.t
        s_hat = self.s / corr
        if not s_hat > 0:
            return np.zeros_like(g)
        d = np.where(free, natural_direction(space, self.m / corr, psi), 0.0)
        return -math.sqrt(2.0 * self.kl / s_hat) * d

    @staticmethod
    def kl_of(space: ParameterSpace, psi: np.ndarray, step: np.ndarray) -> float:
        """The second-order KL of a step at psi (for the run's record)."""
        return 0.5 * fisher_norm2(space, step, psi)

    def state_dict(self) -> dict[str, Any]:
        return {"m": None if self.m is None else self.m.copy(), "s": self.s, "t": self.t}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.m = None if state["m"] is None else np.asarray(state["m"], dtype=np.float64)
        self.s, self.t = float(state["s"]), int(state["t"])


class EvidenceGate:
    """Scales each entry's psi step by the evidence for its direction, so entries without a
    signal stop drifting (on clevr they walked as far from the target as the others walked
    towards it). m = EMA_b(g) as Adam's first moment, V = sum_j (1 - b)^2 b^(2j) var_j its
    sampling variance for independent steps (var_j: the estimator's own, from its K samples),
    and the factor is the positive-part James-Stein max(0, 1 - c V / m^2): 0 while m is
    within sqrt(c) standard errors of zero, towards 1 as the evidence grows."""

    def __init__(self, strength: float, beta: float = 0.9) -> None:
        if not strength > 0 or not math.isfinite(strength):
            raise ValueError(f"shrink must be a positive number, got {strength}")
        self.c, self.beta = float(strength), float(beta)
        self.m: np.ndarray | None = None
        self.v: np.ndarray | None = None

    def factor(self, grad: np.ndarray, var: np.ndarray) -> np.ndarray:
        g, var = np.asarray(grad, dtype=np.float64), np.asarray(var, dtype=np.float64)
        if self.m is None or self.v is None:
            self.m, self.v = np.zeros_like(g), np.zeros_like(g)
        b = self.beta
        self.m = b * self.m + (1.0 - b) * g
        self.v = b * b * self.v + (1.0 - b) ** 2 * var
        with np.errstate(divide="ignore", invalid="ignore"):
            f = 1.0 - self.c * self.v / (self.m * self.m)
        return np.where(np.isfinite(f), np.clip(f, 0.0, 1.0), 0.0)

    def state_dict(self) -> dict[str, Any]:
        return {"m": None if self.m is None else self.m.copy(),
                "v": None if self.v is None else self.v.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.m = None if state["m"] is None else np.asarray(state["m"], dtype=np.float64)
        self.v = None if state["v"] is None else np.asarray(state["v"], dtype=np.float64)


def make_psi_optimizer(kind: str, psi_t: torch.Tensor, *, lr: float, kl: float,
                       momentum: float) -> torch.optim.Adam | NaturalStep:
    if kind == "adam":
        return torch.optim.Adam([psi_t], lr=lr)
    if kind == "natural":
        return NaturalStep(kl, momentum)
    raise ValueError(f"unknown psi optimizer {kind!r}; known: {', '.join(PSI_OPTIMIZERS)}")
