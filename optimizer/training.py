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
        epochs: int, batch_size: int, generator: torch.Generator,
        lr_final: float = 1.0) -> FitResult:
    """epochs passes over `data` in shuffled minibatches; theta never takes a NaN.
    lr_final < 1 decays each group's learning rate linearly over the epochs towards
    lr * lr_final (ultralytics' lrf); 1 leaves the optimizer's rates alone."""
    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())
    base_lrs = [group["lr"] for group in opt.param_groups]
    model.train()
    total, steps = 0.0, 0
    n = len(data)
    for epoch in range(epochs):
        if lr_final != 1.0:
            for group, lr in zip(opt.param_groups, base_lrs):
                group["lr"] = lr * (1.0 - (1.0 - lr_final) * epoch / epochs)
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
    black-box evaluation and every bench judge does (lr_final: see fit)."""
    model = task.build_model(generator).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=float(lr))
    return model, fit(task, model, opt, data, epochs=epochs, batch_size=batch_size,
                      generator=generator, lr_final=lr_final)
