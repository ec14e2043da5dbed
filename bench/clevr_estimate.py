"""The clevr diagnoses' one hypergradient: AutoSimulate's quadratic estimate with the run's
own CG settings, so that a diagnosis measures what a run computes (issue 10)."""

from __future__ import annotations

import numpy as np
import torch

from optimizer.algorithms.autosimulate import AutoSimulate
from optimizer.hypergrad import CGSettings, hypergradient
from optimizer.tasks.base import TaskData

SIZE = 64
CG = CGSettings(damping=AutoSimulate.defaults["damping"],
                max_iter=AutoSimulate.defaults["cg_iters"], rtol=AutoSimulate.defaults["cg_rtol"])


def render_data(task, sim, latents: np.ndarray) -> TaskData:
    """The latents rendered in requests of 64, as one batch of task data on the CPU."""
    return TaskData.cat([task.to_data(sim.render(latents[i:i + 64], SIZE, SIZE), "cpu")
                         for i in range(0, len(latents), 64)])


def estimate(task, model, space, data: TaskData, latents: np.ndarray, val: TaskData, *,
             weights: np.ndarray | None = None, partner: torch.Tensor | None = None,
             hessian: TaskData | None = None) -> np.ndarray:
    """psi's hypergradient (psi_dim,) from rendered `data` of `latents`. partner: pairs,
    the partner the baseline of these entries (None: i.i.d. rows, leave-one-out);
    hessian: the samples of the Hessian's loss (default: all of data)."""
    score = torch.as_tensor(space.score(latents), dtype=torch.float32)
    hessian = data if hessian is None else hessian
    model.eval()
    res = hypergradient(approx="quadratic", params=task.head_parameters(model),
                        per_sample_loss=lambda: task.per_sample_loss(model, data),
                        val_loss=lambda: task.loss(model, val), score=score,
                        weights=None if weights is None else torch.as_tensor(
                            weights, dtype=torch.float32),
                        hessian_loss=lambda: task.loss(model, hessian),
                        pairs=partner is not None, partner=partner, cg=CG)
    return res.grad.double().numpy()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))
