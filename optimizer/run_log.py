"""TensorBoard event files for a run, where PyTorch users look: `tensorboard --logdir runs/`.

The global step is the number of images rendered, so methods with different images per
iteration line up. Scalars: the validation metric by its name, training loss, hypergradient
norm, overhead, and every free psi component in the units the artist sees in Blender (means and
spreads of normals, choice probabilities, on-probabilities). Every `image_every` iterations, a
grid of the latest rendered batch with its masks (segmentation) or boxes (detection); a
categorical whose choices are products of factors ("L0_P3_low": layout x place x quality)
also gets its probabilities as an image, one row per first factor.
On resume the writer purges events past the checkpoint, so the run has no duplicate steps.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protocol.space import ParameterSpace

_PALETTE = torch.tensor([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25],
                         [0, 130, 200], [245, 130, 48], [145, 30, 180], [70, 240, 240],
                         [240, 50, 230], [210, 245, 60]], dtype=torch.uint8)
SCALARS = {"val_metric": None, "train_loss": "train/loss", "hypergrad_norm": "train/hypergrad_norm",
           "overhead": "train/overhead", "wall_s": "time/wall_s", "render_s": "time/render_s"}


def psi_scalars(space: ParameterSpace) -> dict[str, float]:
    """Free psi components as the artist reads them: 'psi/key_light/mean', '.../std',
    'psi/material/p[metal]', 'psi/shadows/p'."""
    out: dict[str, float] = {}
    for p in space.params:
        if p.fixed:
            continue
        summary = p.summary()
        if p.kind == "normal":
            for i, (m, s) in enumerate(zip(summary["mean"], summary["std"])):
                suffix = f"[{i}]" if len(summary["mean"]) > 1 else ""
                out[f"psi/{p.name}/mean{suffix}"] = float(m)
                out[f"psi/{p.name}/std{suffix}"] = float(s)
        elif p.kind == "categorical":
            for choice, prob in summary["probs"].items():
                out[f"psi/{p.name}/p[{choice}]"] = float(prob)
        else:
            out[f"psi/{p.name}/p"] = float(summary["p"])
    return out


def choice_grid(choices: tuple[str, ...], probs: np.ndarray) -> np.ndarray | None:
    """A product categorical's probabilities as a grid (report.product_grid), else None."""
    from optimizer.report import product_grid

    grid = product_grid(choices, probs)
    return None if grid is None else grid[0]


def batch_grid(inputs: torch.Tensor, targets: torch.Tensor, n: int = 8) -> torch.Tensor | None:
    """(3, H', W') uint8: images above their colourised masks, or with their boxes drawn."""
    from torchvision.utils import draw_bounding_boxes, make_grid

    if inputs.ndim != 4 or inputs.shape[1] != 3:
        return None  # not images (the toy's 2-D points)
    images = (inputs[:n].detach().float().clamp(0, 1) * 255).to(torch.uint8).cpu()
    targets = targets[:n].detach().cpu()
    if targets.ndim == 3 and targets.shape[-1] == 5:  # detection: (K, M, 5) cls, x0, y0, x1, y1
        drawn = []
        for im, t in zip(images, targets):
            t = t[t[:, 0] >= 0]
            colors = [tuple(int(v) for v in _PALETTE[1 + int(c) % 9]) for c in t[:, 0]]
            drawn.append(draw_bounding_boxes(im, t[:, 1:], colors=colors) if len(t) else im)
        return make_grid(torch.stack(drawn), nrow=n, padding=1)
    masks = _PALETTE[targets.long().clamp(0, len(_PALETTE) - 1)].permute(0, 3, 1, 2)
    return make_grid(torch.cat([images, masks]), nrow=len(images), padding=1)


def _after_existing_files(run_dir: Path) -> None:
    """TensorBoard reads a folder's event files in name order, and a name is
    events.out.tfevents.<whole seconds>.<host>.<pid>.<counter>: a resumed writer opened in the
    same second as the one before can sort first (counter 10 < 9), and its purge would then be
    read before the events it purges. Wait (at most a second) until the new name sorts last."""
    newest = max((int(f.name.split(".")[3]) for f in run_dir.glob("events.out.tfevents.*")
                  if f.name.split(".")[3].isdigit()), default=None)
    if newest is not None:
        delay = newest + 1 - time.time()
        if delay > 0:
            time.sleep(min(delay, 1.0))


class RunLogger:
    """One SummaryWriter per run folder; `log(record, space, batch)` per iteration."""

    def __init__(self, run_dir: Path, metric_name: str, *, image_every: int = 10,
                 purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        if purge_step is not None:
            _after_existing_files(Path(run_dir))
        self.writer = SummaryWriter(str(run_dir), purge_step=purge_step)
        self.metric_name = metric_name or "metric"
        self.image_every = max(int(image_every), 1)

    def log(self, record: dict[str, Any], space: ParameterSpace, batch: Any = None) -> None:
        step = int(record["images_rendered"])
        for key, tag in SCALARS.items():
            v = record.get(key)
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                self.writer.add_scalar(tag or f"val/{self.metric_name}", float(v), step)
        for tag, v in psi_scalars(space).items():
            self.writer.add_scalar(tag, v, step)
        if int(record["iteration"]) % self.image_every == 0:
            if batch is not None:
                grid = batch_grid(batch.inputs, batch.targets)
                if grid is not None:
                    self.writer.add_image("batch/latest", grid, step)
            for p in space.params:
                if p.kind == "categorical" and not p.fixed:
                    probs = np.asarray(list(p.summary()["probs"].values()))
                    grid = choice_grid(p.choices, probs)
                    if grid is not None:
                        img = torch.from_numpy(grid / max(grid.max(), 1e-12)).float()
                        img = img.repeat_interleave(16, 0).repeat_interleave(16, 1)
                        self.writer.add_image(f"psi/{p.name}/grid", img[None], step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
