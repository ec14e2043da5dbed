"""Learning To Simulate (Ruiz et al. 2019, Algorithm 1): REINFORCE over psi with an EMA baseline.

The policy is a Gaussian N(omega, sigma^2 I) over the free entries of the unconstrained psi; only
its mean omega is learned (sigma^2 = 0.05, as in the paper). Each step:
1. draw K parameter vectors psi_k ~ N(omega, sigma^2 I) (fixed entries stay at omega);
2. for each, render M images from q_{psi_k} and train a task model for xi epochs on them (from
   scratch, or - `retain` - fine-tuning the model kept from the previous step);
3. reward R_k = the validation metric of that model;
4. advantage A_k = R_k - b, with b an exponential moving average of past rewards (initialised to
   the first step's mean reward), b <- ema * b + (1 - ema) * mean_k R_k after the step;
5. omega <- omega + lr_policy * (1/K) sum_k (psi_k - omega) / sigma^2 * A_k   (eq. 4: the score
   of a Gaussian's mean is (psi - omega) / sigma^2).
The update is a plain gradient-ascent (SGD) step: it is eq. 4 verbatim, so a step is proportional
to the advantages (no move when every dataset scored the same) and can be checked by hand. Adam
would rescale every coordinate to a fixed step size and so chase the sign of a very noisy
estimate; the price of SGD is that lr_policy depends on the metric's scale (set it per scene).
A failed evaluation (non-finite loss or metric) is left out of that step's estimate and baseline.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any

import numpy as np
import torch

from optimizer.algorithms import objective
from optimizer.algorithms.base import Algorithm, Context, clamp_psi, register


@register
class Reinforce(Algorithm):
    name = "reinforce"
    defaults: dict[str, Any] = {
        "k": 4,              # psi samples (datasets, task models) per policy step
        "m": 32,             # images rendered per psi sample (M)
        "epochs": 5,         # xi: training epochs of each task model on its M images
        "batch_size": 8,
        "lr_theta": 3e-3,    # Adam on the task model
        "sigma2": 0.05,      # policy variance (fixed, as in the paper)
        "lr_policy": 1.0,    # SGD step on omega (reward in metric units, e.g. mIoU in [0, 1])
        "ema": 0.7,          # weight of the old baseline in b <- ema * b + (1 - ema) * mean R
        "retain": False,     # True: fine-tune the kept model instead of training from scratch
    }

    def __init__(self, ctx: Context, **options: Any) -> None:
        super().__init__(ctx, **options)
        o = self.options
        for key in ("k", "m", "epochs", "batch_size"):
            if int(o[key]) < 1:
                raise ValueError(f"{key} must be at least 1, got {o[key]}")
        if not float(o["sigma2"]) > 0:
            raise ValueError(f"sigma2 must be positive, got {o['sigma2']}")
        if not 0.0 <= float(o["ema"]) < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {o['ema']}")
        self.free = self.space.free_mask
        if not self.free.any():
            raise ValueError("every parameter is fixed: nothing for reinforce to optimise")
        self.omega = self.space.psi
        self.baseline: float | None = None
        self.model: torch.nn.Module | None = None
        self.opt_theta: torch.optim.Optimizer | None = None
        if o["retain"]:
            self.model = ctx.task.build_model(self.torch_gen).to(ctx.device)
            self.opt_theta = torch.optim.Adam(self.model.parameters(), lr=float(o["lr_theta"]))

    @property
    def images_per_step(self) -> int:
        return int(self.options["k"]) * int(self.options["m"])

    def evaluate(self, psi: np.ndarray) -> objective.Evaluation:
        """Reward of one psi sample: M images, xi epochs, validation metric (NaN: failed)."""
        o = self.options
        return objective.evaluate(self, psi, m=int(o["m"]), epochs=int(o["epochs"]),
                                  batch_size=int(o["batch_size"]),
                                  lr_theta=float(o["lr_theta"]), model=self.model,
                                  opt=self.opt_theta)

    def step(self) -> dict[str, Any]:
        o = self.options
        k, sigma2 = int(o["k"]), float(o["sigma2"])
        eps = self.rng.standard_normal((k, int(self.free.sum()))) * math.sqrt(sigma2)
        samples = np.repeat(self.omega[None, :], k, axis=0)
        samples[:, self.free] += eps

        rewards = self._rewards(samples)
        ok = np.isfinite(rewards)
        record: dict[str, Any] = {"failed": int((~ok).sum())}
        if not ok.any():
            warnings.warn(f"reinforce step {self.iteration}: every evaluation failed "
                          "(non-finite loss or metric); policy not updated", stacklevel=2)
            baseline = self.baseline
            grad = np.zeros(int(self.free.sum()))
        else:
            if self.baseline is None:
                self.baseline = float(rewards[ok].mean())
            baseline = self.baseline
            grad = self.policy_gradient(eps[ok], rewards[ok], baseline, sigma2)
            omega = self.omega.copy()
            omega[self.free] += float(o["lr_policy"]) * grad
            self.omega = clamp_psi(self.space, omega)
            ema = float(o["ema"])
            self.baseline = ema * self.baseline + (1.0 - ema) * float(rewards[ok].mean())
        self.iteration += 1
        val_metric = float(np.max(rewards[ok])) if ok.any() else float("nan")
        self.set_psi(self.omega, {"val_metric": val_metric})
        record.update(val_metric=val_metric,
                      reward_mean=float(rewards[ok].mean()) if ok.any() else float("nan"),
                      baseline=float("nan") if baseline is None else float(baseline),
                      policy_grad_norm=float(np.linalg.norm(grad)),
                      evaluations=self.budget.evaluations)
        return record

    @staticmethod
    def policy_gradient(eps: np.ndarray, rewards: np.ndarray, baseline: float,
                        sigma2: float) -> np.ndarray:
        """Eq. 4: (1/K) sum_k grad_omega log N(psi_k; omega, sigma^2 I) * (R_k - b).

        eps: (K, d) psi_k - omega on the free entries; returns the ascent direction (d,).
        """
        adv = np.asarray(rewards, dtype=np.float64) - baseline
        return (eps / sigma2 * adv[:, None]).mean(axis=0)

    def _rewards(self, samples: np.ndarray) -> np.ndarray:
        if self.model is None:
            return np.array([self.evaluate(psi).metric for psi in samples])
        # retain: every psi_k fine-tunes the same start model (so rewards compare); the model
        # of the best-scoring dataset is the one kept for the next step.
        assert self.opt_theta is not None
        start = (copy.deepcopy(self.model.state_dict()),
                 copy.deepcopy(self.opt_theta.state_dict()))
        best, best_state = -math.inf, start
        rewards = []
        for psi in samples:
            self.model.load_state_dict(start[0])
            self.opt_theta.load_state_dict(start[1])
            reward = self.evaluate(psi).metric
            rewards.append(reward)
            if math.isfinite(reward) and reward > best:
                best = reward
                best_state = (copy.deepcopy(self.model.state_dict()),
                              copy.deepcopy(self.opt_theta.state_dict()))
        self.model.load_state_dict(best_state[0])
        self.opt_theta.load_state_dict(best_state[1])
        return np.array(rewards)

    def state_dict(self) -> dict[str, Any]:
        state = {**super().state_dict(), "omega": self.omega.tolist(),
                 "baseline": self.baseline}
        if self.model is not None and self.opt_theta is not None:
            state.update(model=self.model.state_dict(), opt_theta=self.opt_theta.state_dict())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.omega = np.asarray(state["omega"], dtype=np.float64)
        self.baseline = None if state["baseline"] is None else float(state["baseline"])
        if self.model is not None and self.opt_theta is not None:
            if "model" not in state:
                raise ValueError("checkpoint has no retained model (it ran with retain=False)")
            self.model.load_state_dict(state["model"])
            self.opt_theta.load_state_dict(state["opt_theta"])
