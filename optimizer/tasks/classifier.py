"""A small differentiable classifier for the Gaussian-mixture toy (Ruiz et al. sec. 4.1)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from optimizer.tasks.base import Task, TaskData


class ClassifierTask(Task):
    name = "classifier"
    metric_name = "accuracy"

    def __init__(self, n_inputs: int = 2, n_classes: int = 2, hidden: int = 32) -> None:
        self.n_inputs, self.n_classes, self.hidden = n_inputs, n_classes, hidden

    def build_model(self, generator: torch.Generator) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
            return nn.Sequential(nn.Linear(self.n_inputs, self.hidden), nn.Tanh(),
                                 nn.Linear(self.hidden, self.hidden), nn.Tanh(),
                                 nn.Linear(self.hidden, self.n_classes))

    def to_data(self, rendered, device: torch.device) -> TaskData:
        x, y = rendered
        return TaskData(torch.as_tensor(np.asarray(x), dtype=torch.float32, device=device),
                        torch.as_tensor(np.asarray(y), dtype=torch.int64, device=device))

    def per_sample_loss(self, model: nn.Module, data: TaskData) -> torch.Tensor:
        return F.cross_entropy(model(data.inputs), data.targets, reduction="none")

    @torch.no_grad()
    def metric(self, model: nn.Module, data: TaskData) -> float:
        return float((model(data.inputs).argmax(1) == data.targets).float().mean())
