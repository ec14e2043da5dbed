"""The black-box objective the baselines share: psi -> M rendered images -> trained model -> metric.

REINFORCE, Bayesian optimisation and random search all treat "render a dataset from q_psi, train a
task model on it for xi epochs, score it on the validation set" as one opaque, noisy function of
psi (Ruiz et al. 2019 sec. 2; Behl et al. 2020 sec. 5). It lives here once, so the three methods
spend images, training time and evaluations in exactly the same way (through the base class's
`render`, which counts images and render time).
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch
from torch import nn

from optimizer.algorithms.base import Algorithm, clamp_psi
from optimizer.training import fit, train_fresh


@dataclasses.dataclass
class Evaluation:
    metric: float       # validation metric, higher is better; NaN: the evaluation failed
    train_loss: float   # mean training loss (NaN when training hit a non-finite loss)
    train_s: float

    @property
    def ok(self) -> bool:
        return math.isfinite(self.metric)


def evaluate(algo: Algorithm, psi: np.ndarray, *, m: int, epochs: int, batch_size: int,
             lr_theta: float, model: nn.Module | None = None,
             opt: torch.optim.Optimizer | None = None) -> Evaluation:
    """Render m latents of q_psi, train for `epochs`, return the validation metric.

    `psi` is any point of the unconstrained space (log-stds are clamped into the range the space
    accepts first). Without `model` a fresh one is built from `algo.torch_gen` and trained with
    Adam(lr_theta); with `model` (and its `opt`) that model is fine-tuned in place. A non-finite
    training loss (fit restores theta) or a non-finite metric gives metric = NaN: the caller
    decides what a failed evaluation means for it. Training time goes to `algo.budget.train_s`
    and every call counts one evaluation.
    """
    ctx = algo.ctx
    space = algo.space.with_psi(clamp_psi(algo.space, np.asarray(psi, dtype=np.float64)))
    latents = space.sample(int(m), algo.rng)
    data = algo.render(latents)
    if model is not None and opt is None:
        raise ValueError("evaluate: a model to fine-tune needs its optimizer")
    t0 = time.perf_counter()
    if model is None:
        model, fitted = train_fresh(ctx.task, data, device=ctx.device, generator=algo.torch_gen,
                                    lr=lr_theta, epochs=int(epochs), batch_size=int(batch_size))
    else:
        fitted = fit(ctx.task, model, opt, data, epochs=int(epochs), batch_size=int(batch_size),
                     generator=algo.torch_gen)
    train_s = time.perf_counter() - t0
    algo.budget.train_s += train_s
    algo.budget.evaluations += 1
    metric = float("nan")
    if fitted.ok:
        model.eval()
        metric = float(ctx.task.metric(model, ctx.val))
        if not math.isfinite(metric):
            metric = float("nan")
    return Evaluation(metric=metric, train_loss=fitted.loss, train_s=train_s)
