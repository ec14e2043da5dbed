"""Bayesian optimisation and random search over a box of psi (AutoSimulate sec. 5 baselines).

Both treat "render M images from q_psi, train a fresh task model xi epochs, score it on the
validation set" (objective.evaluate) as a noisy black box of the free entries of psi, and look
for its maximum inside `search_box`. One step = one evaluation; the psi published (and kept as
the method's current psi) is the best one evaluated so far. The step's record holds
val_metric = the best metric so far (the metric of the published psi) and eval_metric = this
step's evaluation.

BO uses the bayesian-optimization package (3.x) in its ask/tell form:
BayesianOptimization(f=None, pbounds, acquisition_function, random_state) -> suggest() ->
register(params, target). The package maximises, so the metric itself is registered. The first
`init_points` points come from the package's own seeded sampler (random_sample), the rest from
suggest() (GP with a Matern 5/2 kernel; EI by default, or UCB). A failed evaluation (NaN) is
registered as the worst value seen so far (so the GP learns to avoid the region) or, before any
value was seen, skipped; it never becomes the best psi.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from typing import Any

import numpy as np

from optimizer.algorithms import objective
from optimizer.algorithms.base import Algorithm, Context, clamp_psi, register
from protocol.space import LOG_STD_RANGE, ParameterSpace


def search_box(space: ParameterSpace, radius: float = 2.0,
               log_std_radius: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) over the FREE entries of psi, centred on the space's current psi.

    Means, logits: psi0 +- radius. Log-stds: psi0 +- log_std_radius, clipped to the range the
    space accepts (LOG_STD_RANGE), so every point of the box is a valid psi.
    """
    if not (radius > 0 and log_std_radius > 0):
        raise ValueError(f"radius and log_std_radius must be positive, got {radius}, "
                         f"{log_std_radius}")
    free = space.free_mask
    psi0 = space.psi[free]
    is_log_std = np.array([".log_std" in label for label in space.psi_labels])[free]
    half = np.where(is_log_std, float(log_std_radius), float(radius))
    low, high = psi0 - half, psi0 + half
    low[is_log_std] = np.maximum(low[is_log_std], LOG_STD_RANGE[0])
    high[is_log_std] = np.minimum(high[is_log_std], LOG_STD_RANGE[1])
    return low, high


class _BlackBox(Algorithm):
    """Shared by BO and random search: the box, the evaluation, best-so-far, state."""

    defaults: dict[str, Any] = {
        "m": 32,               # images rendered per evaluation (M)
        "epochs": 5,           # xi: epochs of the fresh task model on its M images
        "batch_size": 8,
        "lr_theta": 3e-3,      # Adam on the task model
        "radius": 2.0,         # box half-width for means and logits
        "log_std_radius": 1.0,  # box half-width for log-stds (then clipped to the valid range)
    }

    def __init__(self, ctx: Context, **options: Any) -> None:
        super().__init__(ctx, **options)
        o = self.options
        for key in ("m", "epochs", "batch_size"):
            if int(o[key]) < 1:
                raise ValueError(f"{key} must be at least 1, got {o[key]}")
        self.free = self.space.free_mask
        if not self.free.any():
            raise ValueError(f"every parameter is fixed: nothing for {self.name} to optimise")
        self.psi0 = self.space.psi
        self.low, self.high = search_box(self.space, float(o["radius"]),
                                         float(o["log_std_radius"]))
        self.best_metric = float("nan")
        self.best_x: np.ndarray | None = None
        self.proposals = 0

    # ---- what a method supplies ------------------------------------------------------------
    def _propose(self) -> tuple[np.ndarray, str]:
        """The next point (free entries) and where it came from."""
        raise NotImplementedError

    def _observe(self, x: np.ndarray, metric: float) -> None:
        """Learn from one evaluation (metric may be NaN)."""

    # ---- shared --------------------------------------------------------------------------------
    def psi_of(self, x: np.ndarray) -> np.ndarray:
        psi = self.psi0.copy()
        psi[self.free] = x
        return clamp_psi(self.space, psi)

    @property
    def images_per_step(self) -> int:
        return int(self.options["m"])

    def evaluate(self, psi: np.ndarray) -> objective.Evaluation:
        o = self.options
        return objective.evaluate(self, psi, m=int(o["m"]), epochs=int(o["epochs"]),
                                  batch_size=int(o["batch_size"]),
                                  lr_theta=float(o["lr_theta"]))

    def step(self) -> dict[str, Any]:
        x, source = self._propose()
        x = np.clip(np.asarray(x, dtype=np.float64), self.low, self.high)
        self.proposals += 1
        ev = self.evaluate(self.psi_of(x))
        metric = ev.metric if math.isfinite(ev.metric) else float("nan")
        self._observe(x, metric)
        improved = math.isfinite(metric) and not metric <= self.best_metric
        if improved:
            self.best_metric, self.best_x = metric, x.copy()
        self.iteration += 1
        best_psi = self.psi0 if self.best_x is None else self.psi_of(self.best_x)
        self.set_psi(best_psi, {"val_metric": self.best_metric})
        return {"val_metric": self.best_metric, "eval_metric": metric, "improved": improved,
                "source": source, "train_loss": ev.train_loss,
                "evaluations": self.budget.evaluations}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "best_metric": self.best_metric,
                "best_x": None if self.best_x is None else self.best_x.tolist(),
                "proposals": self.proposals, "box": [self.low.tolist(), self.high.tolist()]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        low, high = (np.asarray(b, dtype=np.float64) for b in state["box"])
        if low.shape != self.low.shape:
            raise ValueError(f"checkpoint's box has {low.size} free entries, this space "
                             f"{self.low.size}")
        self.low, self.high = low, high
        self.best_metric = float(state["best_metric"])
        self.best_x = None if state["best_x"] is None else np.asarray(state["best_x"], float)
        self.proposals = int(state["proposals"])


@register
class RandomSearch(_BlackBox):
    name = "random"
    defaults = dict(_BlackBox.defaults)

    def _propose(self) -> tuple[np.ndarray, str]:
        return self.low + (self.high - self.low) * self.rng.random(self.low.size), "random"


@register
class BayesOpt(_BlackBox):
    name = "bayesopt"
    defaults = {
        **_BlackBox.defaults,
        "init_points": 3,   # first evaluations at the package's own seeded random points
        # ei | ucb. The package defaults to UCB(kappa=2.576), which in 10-40 dimensions spends a
        # budget of tens of evaluations exploring the box's corners; EI exploits sooner.
        "acq": "ei",
        "xi": 0.01,         # EI exploration margin (package default)
        "kappa": 2.576,     # UCB exploration weight (package default)
        # GP nugget on the normalised targets. The package's 1e-6 assumes a noiseless f; ours
        # is noisy (a fresh model's metric varies by seed) and BO may re-probe a point.
        "gp_alpha": 1e-2,
    }

    def __init__(self, ctx: Context, **options: Any) -> None:
        super().__init__(ctx, **options)
        o = self.options
        if o["acq"] not in ("ei", "ucb"):
            raise ValueError(f"acq must be 'ei' or 'ucb', got {o['acq']!r}")
        if int(o["init_points"]) < 0 or float(o["gp_alpha"]) <= 0:
            raise ValueError("init_points must be >= 0 and gp_alpha > 0")
        self.keys = [label for label, f in zip(self.space.psi_labels, self.free) if f]
        self.bo = self._new_optimizer()

    def _new_optimizer(self):
        from bayes_opt import BayesianOptimization, acquisition  # sklearn: import when used

        o = self.options
        if o["acq"] == "ei":
            acq = acquisition.ExpectedImprovement(xi=float(o["xi"]))
        else:
            acq = acquisition.UpperConfidenceBound(kappa=float(o["kappa"]))
        pbounds = {key: (float(lo), float(hi))
                   for key, lo, hi in zip(self.keys, self.low, self.high)}
        # One seeded RandomState drives the package's random points, the GP's restarts and the
        # acquisition search; we hold it to checkpoint it.
        self.bo_rng = np.random.RandomState(self.ctx.seed)
        bo = BayesianOptimization(f=None, pbounds=pbounds, acquisition_function=acq,
                                  random_state=self.bo_rng, verbose=0,
                                  allow_duplicate_points=True)
        bo.set_gp_params(alpha=float(o["gp_alpha"]))
        return bo

    @property
    def registered(self) -> tuple[np.ndarray, np.ndarray]:
        """(points, targets) the GP has seen, in the free-entry order of psi."""
        return self.bo.space.params.copy(), self.bo.space.target.copy()

    def _propose(self) -> tuple[np.ndarray, str]:
        source = "random"
        if self.proposals < int(self.options["init_points"]) or len(self.bo.space) == 0:
            params = self.bo.random_sample(1)[0]
        else:
            try:
                params, source = self.bo.suggest(), "gp"
            except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
                warnings.warn(f"bayesopt step {self.iteration}: suggest failed ({exc}); "
                              "a random point instead", stacklevel=3)
                params = self.bo.random_sample(1)[0]
        return self.bo.space.params_to_array(params), source

    def _register(self, x: np.ndarray, target: float) -> None:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints a line per duplicate point
            self.bo.register(params=x, target=float(target))

    def _observe(self, x: np.ndarray, metric: float) -> None:
        if math.isfinite(metric):
            self._register(x, metric)
        elif len(self.bo.space):
            worst = float(self.bo.space.target.min())
            warnings.warn(f"bayesopt step {self.iteration}: the evaluation failed (non-finite "
                          f"loss or metric); registered as the worst value seen ({worst:g})",
                          stacklevel=3)
            self._register(x, worst)
        else:
            warnings.warn(f"bayesopt step {self.iteration}: the evaluation failed (non-finite "
                          "loss or metric) before any value was seen; not registered",
                          stacklevel=3)

    def state_dict(self) -> dict[str, Any]:
        rs = self.bo_rng.get_state(legacy=False)
        acq = self.bo.acquisition_function
        points, targets = self.registered
        return {**super().state_dict(), "bo_points": points.tolist(),
                "bo_targets": targets.tolist(),
                "bo_random_state": {**rs, "state": {"key": rs["state"]["key"].tolist(),
                                                    "pos": int(rs["state"]["pos"])}},
                "bo_acquisition": {**acq.get_acquisition_params(), "i": int(acq.i)}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.bo = self._new_optimizer()
        for x, target in zip(state["bo_points"], state["bo_targets"]):
            self._register(np.asarray(x, dtype=np.float64), float(target))
        rs = state["bo_random_state"]
        self.bo_rng.set_state(
            {**rs, "state": {"key": np.asarray(rs["state"]["key"], dtype=np.uint32),
                             "pos": rs["state"]["pos"]}})
        acq_params = dict(state["bo_acquisition"])
        i = int(acq_params.pop("i"))
        self.bo.acquisition_function.set_acquisition_params(acq_params)
        self.bo.acquisition_function.i = i
