"""One interface for every method; the base class does the bookkeeping (DESIGN.md).

A method implements `step()`: render what it needs through `ctx.render`, train, evaluate, move
psi. Rendering and training are counted here, identically for every method, so budgets compare.
"""

from __future__ import annotations

import abc
import dataclasses
import time
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch

from optimizer.tasks.base import Task, TaskData
from protocol.space import ParameterSpace

REGISTRY: dict[str, type[Algorithm]] = {}


def register(cls: type[Algorithm]) -> type[Algorithm]:
    REGISTRY[cls.name] = cls
    return cls


def get(name: str) -> type[Algorithm]:
    if name not in REGISTRY:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


@dataclasses.dataclass
class Budget:
    """Everything a method spends, counted the same way for all of them."""

    images: int = 0
    render_s: float = 0.0
    train_s: float = 0.0
    evaluations: int = 0


@dataclasses.dataclass
class Context:
    """What a method works with. `render_fn(latents) -> simulator output` for the task."""

    space: ParameterSpace
    task: Task
    val: TaskData
    device: torch.device
    render_fn: Callable[[np.ndarray], Any]
    publish_fn: Callable[[np.ndarray, dict[str, float]], None]
    seed: int = 0
    log: Callable[[str], None] = print


class Algorithm(abc.ABC):
    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, ctx: Context, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise ValueError(f"method {self.name!r} has no option(s) {unknown}; "
                             f"known: {sorted(self.defaults)}")
        self.ctx = ctx
        self.options = {**self.defaults, **options}
        self.budget = Budget()
        self.space = ctx.space
        self.rng = np.random.default_rng(ctx.seed)
        self.torch_gen = torch.Generator().manual_seed(ctx.seed)
        self.iteration = 0

    # ------------------------------------------------------------------ accounting helpers
    def render(self, latents: np.ndarray) -> TaskData:
        t0 = time.perf_counter()
        out = self.ctx.render_fn(latents)
        data = self.ctx.task.to_data(out, self.ctx.device)
        self.last_batch = data  # what the run log shows of this step
        self.budget.render_s += time.perf_counter() - t0
        self.budget.images += len(latents)
        return data

    def set_psi(self, psi: np.ndarray, metrics: dict[str, float]) -> None:
        """Adopt a new psi (validated by the space) and show it to the render servers."""
        self.space = self.space.with_psi(psi)
        self.ctx.publish_fn(self.space.psi, metrics)

    @property
    def psi(self) -> np.ndarray:
        return self.space.psi

    @property
    @abc.abstractmethod
    def images_per_step(self) -> int:
        """Images the next step() renders, so a run can stop AT the budget, never past it."""

    @abc.abstractmethod
    def step(self) -> dict[str, Any]:
        """One iteration; returns its record (at least val_metric)."""

    def state_dict(self) -> dict[str, Any]:
        return {"psi": self.space.psi.tolist(), "iteration": self.iteration,
                "budget": dataclasses.asdict(self.budget),
                "rng": self.rng.bit_generator.state,
                "torch_gen": self.torch_gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.space = self.space.with_psi(np.asarray(state["psi"], float))
        self.iteration = int(state["iteration"])
        self.budget = Budget(**state["budget"])
        self.rng.bit_generator.state = state["rng"]
        self.torch_gen.set_state(state["torch_gen"])


def clamp_psi(space: ParameterSpace, psi: np.ndarray) -> np.ndarray:
    """Keep log-stds in the range the space accepts (a step may overshoot it)."""
    from protocol.space import LOG_STD_RANGE

    psi = psi.copy()
    for label_index, label in enumerate(space.psi_labels):
        if ".log_std" in label:
            psi[label_index] = min(max(psi[label_index], LOG_STD_RANGE[0]), LOG_STD_RANGE[1])
    return psi
