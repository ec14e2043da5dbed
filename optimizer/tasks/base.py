"""What the optimizer needs from a task model: losses per sample, a metric, and its head."""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

import torch
from torch import nn


@dataclasses.dataclass
class TaskData:
    """Inputs and targets as tensors on one device; row k is rendered sample k."""

    inputs: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def subset(self, index: torch.Tensor | slice) -> TaskData:
        return TaskData(self.inputs[index], self.targets[index])

    def to(self, device: torch.device | str) -> TaskData:
        return TaskData(self.inputs.to(device), self.targets.to(device))

    @staticmethod
    def cat(parts: list[TaskData]) -> TaskData:
        return TaskData(torch.cat([p.inputs for p in parts]), torch.cat([p.targets for p in parts]))


class Task(abc.ABC):
    """A task model family. Higher metric is better."""

    name: str = ""
    metric_name: str = ""

    @abc.abstractmethod
    def build_model(self, generator: torch.Generator) -> nn.Module:
        """A fresh, seeded model (on the CPU; the caller moves it)."""

    @abc.abstractmethod
    def to_data(self, rendered: Any, device: torch.device) -> TaskData:
        """Simulator output -> tensors on `device`."""

    @abc.abstractmethod
    def per_sample_loss(self, model: nn.Module, data: TaskData) -> torch.Tensor:
        """(K,) training loss of each sample, differentiable twice."""

    @abc.abstractmethod
    def metric(self, model: nn.Module, data: TaskData) -> float:
        """Validation metric over the whole set."""

    def loss(self, model: nn.Module, data: TaskData) -> torch.Tensor:
        return self.per_sample_loss(model, data).mean()

    def head_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """The last layer(s): the cheap choice for the Hessian (`--hessian head`)."""
        params = [p for p in model.parameters() if p.requires_grad]
        return params[-2:]
