"""Semantic segmentation on the clevr scene: a small UNet (8 conv layers, as in the paper)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from optimizer.tasks.base import Task, TaskData


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
    )


class UNet(nn.Module):
    """Two down levels, one up level: 2+2+2 3x3 convs, a transposed conv, a 1x1 head = 8."""

    def __init__(self, n_classes: int, width: int = 16) -> None:
        super().__init__()
        self.down1 = _block(3, width)
        self.down2 = _block(width, 2 * width)
        self.up = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.dec = _block(2 * width, width)
        self.head = nn.Conv2d(width, n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1 = self.down1(x)
        d2 = self.down2(F.max_pool2d(d1, 2))
        u = self.up(d2)
        return self.head(self.dec(torch.cat([u, d1], dim=1)))


def confusion(pred: torch.Tensor, target: torch.Tensor, n_classes: int) -> torch.Tensor:
    idx = target.reshape(-1) * n_classes + pred.reshape(-1)
    return torch.bincount(idx, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def miou_from_confusion(conf: torch.Tensor, ignore_background: bool = True) -> float:
    """Mean IoU over classes that occur (in target or prediction); background excluded."""
    conf = conf.double()
    tp = conf.diag()
    union = conf.sum(0) + conf.sum(1) - tp
    iou = tp / union.clamp(min=1)
    present = union > 0
    if ignore_background:
        present[0] = False
    return float(iou[present].mean()) if present.any() else 0.0


class SegmentationTask(Task):
    name = "segmentation"
    metric_name = "mIoU"

    def __init__(self, n_classes: int, width: int = 16, eval_batch: int = 64) -> None:
        self.n_classes = n_classes
        self.width = width
        self.eval_batch = eval_batch

    def build_model(self, generator: torch.Generator) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
            return UNet(self.n_classes, self.width)

    def to_data(self, rendered, device: torch.device) -> TaskData:
        images, masks = rendered.images, rendered.masks
        if images.ndim != 4 or images.shape[-1] != 3 or masks.shape != images.shape[:3]:
            raise ValueError(f"segmentation needs images (N,H,W,3) and masks (N,H,W), got "
                             f"{images.shape} and {masks.shape}")
        if int(np.max(masks, initial=0)) >= self.n_classes:
            raise ValueError(f"mask holds class {int(masks.max())} but the task has "
                             f"{self.n_classes} classes")
        x = torch.from_numpy(np.ascontiguousarray(images)).to(device)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        y = torch.from_numpy(np.ascontiguousarray(masks).astype(np.int64)).to(device)
        return TaskData(x, y)

    def per_sample_loss(self, model: nn.Module, data: TaskData) -> torch.Tensor:
        logits = model(data.inputs)
        return F.cross_entropy(logits, data.targets, reduction="none").flatten(1).mean(1)

    @torch.no_grad()
    def predict(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        return torch.cat([model(inputs[i:i + self.eval_batch]).argmax(1)
                          for i in range(0, len(inputs), self.eval_batch)])

    @torch.no_grad()
    def metric(self, model: nn.Module, data: TaskData) -> float:
        was_training = model.training
        model.eval()
        pred = self.predict(model, data.inputs)
        model.train(was_training)
        return miou_from_confusion(confusion(pred, data.targets, self.n_classes))

    def head_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return list(model.head.parameters())
