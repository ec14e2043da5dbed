"""A fake render backend for plain-Python tests of the server and client logic."""

from __future__ import annotations

import dataclasses

import numpy as np

from optimizer.simulators.toy import ToySimulator
from protocol.space import ParameterSpace

FAKE_SPACE = {
    "format": "autosim.space", "version": 1, "name": "fake",
    "params": [
        {"name": "light", "kind": "normal", "mean": [1.0], "log_std": [-1.0], "low": [0.0]},
        {"name": "xy", "kind": "normal", "mean": [0.0, 0.0], "log_std": [0.0, 0.0]},
        {"name": "shape", "kind": "categorical", "choices": ["sphere", "cube"],
         "logits": [0.0, 0.0]},
        {"name": "explode", "kind": "bernoulli", "logit": -30.0},
    ],
    "presets": {"validation": {"light": {"mean": [3.0]}}},
}


@dataclasses.dataclass
class FakeResult:
    image: np.ndarray
    mask: np.ndarray
    instances: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    render_s: float = 0.001


class FakeBackend:
    """Draws one square whose class is the latent's shape and whose brightness is the light."""

    scene = "fake"
    classes = ["background", "sphere", "cube"]
    blender_version = "fake"

    def __init__(self) -> None:
        self.space = ParameterSpace.from_dict(FAKE_SPACE)
        self.calls: list[dict] = []

    def render(self, latent: dict, width: int, height: int) -> FakeResult:
        self.calls.append(latent)
        if latent["explode"]:
            raise RuntimeError("the fake renderer exploded as asked")
        cls = 1 + ["sphere", "cube"].index(latent["shape"])
        x0 = int(np.clip(width / 2 + latent["xy"][0] * width / 8, 0, width - 4))
        y0 = int(np.clip(height / 2 + latent["xy"][1] * height / 8, 0, height - 4))
        image = np.zeros((height, width, 3), np.uint8)
        image[...] = int(np.clip(latent["light"] * 40, 0, 255))
        mask = np.zeros((height, width), np.uint8)
        mask[y0:y0 + 4, x0:x0 + 4] = cls
        instances = (mask > 0).astype(np.uint16)
        boxes = np.array([[x0, y0, x0 + 4, y0 + 4]], np.float32)
        return FakeResult(image, mask, instances, boxes, np.array([cls], np.int32))


class PoisonedToy(ToySimulator):
    """Renders NaN points on chosen calls, as a broken renderer might."""

    def __init__(self, poison_calls):
        super().__init__()
        self.calls = 0
        self.poison_calls = set(poison_calls)

    def render(self, latents):
        x, y = super().render(latents)
        self.calls += 1
        if self.calls in self.poison_calls:
            x = x.copy()
            x[0] = np.nan
        return x, y


def toy_context(sim=None, seed: int = 0, val_n: int = 500):
    """A Context over the toy simulator, on the CPU; also the list publish_fn appends to."""
    import torch  # here, so that fake render-server processes start without torch

    from optimizer.algorithms import Context
    from optimizer.simulators.toy import sample_real
    from optimizer.tasks.classifier import ClassifierTask

    sim = sim or ToySimulator()
    task = ClassifierTask()
    val = task.to_data(sample_real(val_n, np.random.default_rng(1)), torch.device("cpu"))
    published: list = []
    ctx = Context(space=sim.space, task=task, val=val, device=torch.device("cpu"),
                  render_fn=sim.render, publish_fn=lambda p, m: published.append((p, m)),
                  seed=seed)
    return ctx, published
