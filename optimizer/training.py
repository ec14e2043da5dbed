"""Fine-tuning the task model on freshly rendered data, with a NaN guard on theta."""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from optimizer.tasks.base import Task, TaskData


@dataclasses.dataclass
class FitResult:
    loss: float
    steps: int
    ok: bool          # False: a non-finite loss or gradient; theta was restored


def fit(task: Task, model: nn.Module, opt: torch.optim.Optimizer, data: TaskData, *,
        epochs: int, batch_size: int, generator: torch.Generator) -> FitResult:
    """epochs passes over `data` in shuffled minibatches; theta never takes a NaN."""
    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())
    model.train()
    total, steps = 0.0, 0
    n = len(data)
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).to(data.inputs.device)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            if len(idx) < 2 and n >= 2:  # BatchNorm needs two samples
                continue
            opt.zero_grad(set_to_none=True)
            loss = task.loss(model, data.subset(idx))
            loss.backward()
            finite = torch.isfinite(loss) and all(
                torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
            if not finite:
                model.load_state_dict(saved_model)
                opt.load_state_dict(saved_opt)
                return FitResult(float("nan"), steps, False)
            opt.step()
            total += float(loss.detach())
            steps += 1
    return FitResult(total / max(steps, 1), steps, True)


def train_fresh(task: Task, data: TaskData, *, device: torch.device | str,
                generator: torch.Generator, lr: float, epochs: int, batch_size: int,
                lr_final: float = 1.0) -> tuple[nn.Module, FitResult]:
    """A new task model (from `generator`) trained with Adam(lr) on `data`: what every
    black-box evaluation and every bench judge does. lr_final < 1 decays the learning rate
    linearly over the epochs to lr * lr_final (ultralytics' lrf); training stops at the first
    epoch that hits a non-finite loss (theta restored to that epoch's start)."""
    model = task.build_model(generator).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=float(lr))
    if lr_final == 1.0:
        return model, fit(task, model, opt, data, epochs=epochs, batch_size=batch_size,
                          generator=generator)
    losses, steps = [], 0
    for epoch in range(epochs):
        for group in opt.param_groups:
            group["lr"] = float(lr) * (1.0 - (1.0 - lr_final) * epoch / epochs)
        result = fit(task, model, opt, data, epochs=1, batch_size=batch_size,
                     generator=generator)
        if not result.ok:
            return model, FitResult(float("nan"), steps + result.steps, False)
        losses.append(result.loss * result.steps)
        steps += result.steps
    return model, FitResult(sum(losses) / max(steps, 1), steps, True)
