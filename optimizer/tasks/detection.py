"""Object detection with an ultralytics YOLO model, built from ultralytics' own parts.

Model: `ultralytics.nn.tasks.DetectionModel` from a yaml ("yolo11n.yaml", "yolov8n.yaml", a file)
or started from a user's .pt checkpoint (its architecture, its weights where shapes match: the
ultralytics fine-tuning path). `freeze=N` freezes model.model[0..N-1] as ultralytics' `freeze` does.

Data: TaskData.inputs (K,3,H,W) float in [0,1], H and W padded up to multiples of 32 (bottom and
right, grey 114, so pixel boxes stay put); TaskData.targets (K, max_boxes, 5) float: rows
(yolo_class, x0, y0, x1, y1) in input pixels, padded with -1 rows. Dense padding keeps
`TaskData.subset` and `cat` working for ragged box lists; the loss converts to ultralytics' batch
dict (batch_idx, cls, normalised cxcywh bboxes).

Per-sample loss. ultralytics' v8DetectionLoss on a batch of B images returns
    loss = B * [gain_box * S_box, gain_cls * S_cls, gain_dfl * S_dfl] / T
with S_* the component sums over the whole batch (BCE over every anchor and class; CIoU and DFL
over foreground anchors, weighted by their target scores) and T = target_scores_sum (the batch's
total assigned target-score mass, clamped to >= 1). T comes from the task-aligned assigner, which
sees detached predictions, so it is a constant w.r.t. theta. We run ONE forward pass and ONE
assignment for the whole batch (the assigner is per image, so this equals assigning each image
alone) and split every sum by image:
    l_k = B * (gain_box * S_box,k + gain_cls * S_cls,k + gain_dfl * S_dfl,k) / T
so   mean_k l_k = loss.sum() / B   exactly (ultralytics' per-image batch loss), and
     sum_k  l_k = loss.sum()       (what ultralytics' trainer back-propagates).
l_k = (image k's own summed loss) / (T / B): the only coupling between samples is the shared
positive constant T / B, the mean target mass per image. Double backward works through it
(the Hessian is that of the surrogate with assigned targets held fixed, as in ultralytics).
End-to-end heads (YOLO26, E2ELoss) give o2m * l_k(one-to-many) + o2o * l_k(one-to-one) with
ultralytics' initial branch weights (no epoch decay). In eval mode the model returns
(inference, raw) and the raw dict is used; use eval mode (BatchNorm frozen) for second order.

Metric: mAP@0.5 as ultralytics' DetectionValidator computes it: ultralytics' NMS with the
validator's defaults (conf 0.001, IoU 0.7, multi-label, max_det 300), `box_iou` and the
validator's greedy `match_predictions` at IoU 0.50:0.95, then `DetMetrics` (`ap_per_class`,
101-point interpolated AP, averaged over the classes present in the targets).
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from optimizer.tasks.base import Task, TaskData

PAD_VALUE = 114 / 255.0
_IOUV = types.SimpleNamespace(iouv=torch.linspace(0.5, 0.95, 10))  # the validator's thresholds


def _ultralytics():
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.modules.head import Detect
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils import DEFAULT_CFG

    import optimizer  # noqa: F401  (offline ultralytics, CPU torchvision NMS)

    return types.SimpleNamespace(get_cfg=get_cfg, Detect=Detect, DetectionModel=DetectionModel,
                                 DEFAULT_CFG=DEFAULT_CFG)


# ----------------------------------------------------------------------------- targets
def dense_targets(boxes: list[np.ndarray], classes: list[np.ndarray], max_boxes: int,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Ragged boxes (x0,y0,x1,y1 px) + ids (1.. ; 0 = background) -> (K, max_boxes, 5), -1 padded,
    rows (yolo_class = id - 1, x0, y0, x1, y1)."""
    out = torch.full((len(boxes), max_boxes, 5), -1.0)
    for k, (b, c) in enumerate(zip(boxes, classes)):
        b = np.array(b, np.float32).reshape(-1, 4)  # a copy: torch wants a writable array
        c = np.asarray(c).reshape(-1)
        if len(b) != len(c):
            raise ValueError(f"sample {k}: {len(b)} boxes but {len(c)} class ids")
        if len(b) > max_boxes:
            raise ValueError(f"sample {k} has {len(b)} boxes, more than max_boxes={max_boxes} "
                             f"(raise DetectionTask(max_boxes=...))")
        out[k, :len(b), 0] = torch.from_numpy(c.astype(np.float32) - 1)
        out[k, :len(b), 1:] = torch.from_numpy(b)
    return out.to(device)


def to_ultralytics_batch(targets: torch.Tensor, height: int, width: int) -> dict[str, torch.Tensor]:
    """(K, M, 5) padded targets -> ultralytics' {batch_idx, cls (N,1), bboxes (N,4) cxcywh/1}."""
    k_idx, j_idx = (targets[..., 0] >= 0).nonzero(as_tuple=True)  # row-major: sorted by image
    t = targets[k_idx, j_idx]
    scale = t.new_tensor([width, height, width, height])
    x0, y0, x1, y1 = (t[:, 1:5] / scale).unbind(1)
    bboxes = torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], 1)
    return {"batch_idx": k_idx.to(t.dtype), "cls": t[:, :1], "bboxes": bboxes}


# ----------------------------------------------------------------------------- loss
def per_image_detection_loss(crit, preds: dict[str, Any], batch: dict[str, torch.Tensor]
                             ) -> torch.Tensor:
    """(B,) losses whose mean is v8DetectionLoss(preds, batch)[0].sum() / B (module docstring).

    Mirrors v8DetectionLoss.get_assigned_targets_and_loss step by step with ultralytics' own
    parts (preprocess, bbox_decode, assigner, bce, bbox_loss), reducing per image at the end.
    """
    from ultralytics.utils.tal import make_anchors

    pred_distri = preds["boxes"].permute(0, 2, 1).contiguous()
    pred_scores = preds["scores"].permute(0, 2, 1).contiguous()
    anchor_points, stride_tensor = make_anchors(preds["feats"], crit.stride, 0.5)
    dtype, bsz = pred_scores.dtype, pred_scores.shape[0]
    imgsz = torch.tensor(preds["feats"][0].shape[2:], device=crit.device, dtype=dtype) \
        * crit.stride[0]
    targets = torch.cat((batch["batch_idx"].view(-1, 1), batch["cls"].view(-1, 1),
                         batch["bboxes"]), 1)
    targets = crit.preprocess(targets.to(crit.device), bsz, scale_tensor=imgsz[[1, 0, 1, 0]])
    gt_labels, gt_bboxes = targets.split((1, 4), 2)
    mask_gt = gt_bboxes.sum(2, keepdim=True).gt_(0.0)
    pred_bboxes = crit.bbox_decode(anchor_points, pred_distri)
    _, target_bboxes, target_scores, fg_mask, _ = crit.assigner(
        pred_scores.detach().sigmoid(),
        (pred_bboxes.detach() * stride_tensor).type(gt_bboxes.dtype),
        anchor_points * stride_tensor, gt_labels, gt_bboxes, mask_gt)
    target_scores_sum = target_scores.sum().clamp_(min=1)

    bce = crit.bce(pred_scores, target_scores.to(dtype))
    if crit.class_weights is not None:
        bce = bce * crit.class_weights
    cls_k = bce.sum((1, 2)) / target_scores_sum
    box_dfl = [crit.bbox_loss(pred_distri[k:k + 1], pred_bboxes[k:k + 1], anchor_points,
                              target_bboxes[k:k + 1] / stride_tensor, target_scores[k:k + 1],
                              target_scores_sum, fg_mask[k:k + 1], imgsz, stride_tensor)
               for k in range(bsz)]
    box_k = torch.stack([b for b, _ in box_dfl])
    dfl_k = torch.stack([d for _, d in box_dfl])
    hyp = crit.hyp
    return bsz * (hyp.box * box_k + hyp.cls * cls_k + hyp.dfl * dfl_k)


def _criterion_device(crit) -> torch.device:
    inner = getattr(crit, "one2many", crit)
    return torch.device(inner.device)


# ----------------------------------------------------------------------------- metric
@torch.no_grad()
def detection_metrics(detections: list[torch.Tensor], targets: torch.Tensor,
                      names: list[str]):
    """ultralytics' DetMetrics over images: detections[i] (n,6) x0,y0,x1,y1,conf,cls (NMS output),
    targets (N, M, 5) padded rows (cls, x0, y0, x1, y1) in the same pixels. None for no images."""
    from ultralytics.engine.validator import BaseValidator
    from ultralytics.utils.metrics import DetMetrics, box_iou

    metrics = DetMetrics(names=dict(enumerate(names)))
    niou = _IOUV.iouv.numel()
    for i, (det, tgt) in enumerate(zip(detections, targets)):
        tgt = tgt[tgt[:, 0] >= 0].float().cpu()
        det = det.float().cpu()
        gt_cls, gt_box = tgt[:, 0], tgt[:, 1:5]
        if len(gt_cls) == 0 or len(det) == 0:
            tp = np.zeros((len(det), niou), bool)
        else:  # the validator's own greedy matcher (it only reads self.iouv)
            iou = box_iou(gt_box, det[:, :4])
            tp = BaseValidator.match_predictions(_IOUV, det[:, 5], gt_cls, iou).numpy()
        gt = gt_cls.numpy()
        metrics.update_stats({"tp": tp, "conf": det[:, 4].numpy(), "pred_cls": det[:, 5].numpy(),
                              "target_cls": gt, "target_img": np.unique(gt), "im_name": str(i)})
    if not metrics.stats["tp"]:
        return None
    metrics.process(plot=False)
    return metrics


# ----------------------------------------------------------------------------- task
class DetectionTask(Task):
    name = "detection"
    metric_name = "mAP50"

    def __init__(self, n_classes: int, model: str | Path = "yolo11n.yaml", imgsz: int | None = None,
                 freeze: int = 0, *, names: list[str] | None = None, max_boxes: int = 100,
                 eval_batch: int = 32, conf: float = 0.001, iou: float = 0.7, max_det: int = 300,
                 hyp: dict[str, Any] | None = None) -> None:
        """n_classes: object classes, background excluded. model: an ultralytics model yaml or a
        .pt checkpoint to start from. imgsz: letterbox every image set to imgsz x imgsz (None: keep
        sizes, pad to multiples of 32). freeze: freeze model.model[0..freeze-1]. hyp: overrides of
        ultralytics' default hyperparameters (box, cls, dfl gains...)."""
        if int(n_classes) < 1:
            raise ValueError(f"n_classes must be >= 1 (background excluded), got {n_classes}")
        if int(freeze) < 0:
            raise ValueError(f"freeze must be >= 0, got {freeze}")
        if imgsz is not None and int(imgsz) <= 0:
            raise ValueError(f"imgsz must be positive, got {imgsz}")
        self.n_classes = int(n_classes)
        self.model_source = str(model)
        self.imgsz = None if imgsz is None else int(imgsz)
        self.freeze = int(freeze)
        self.names = list(names) if names is not None else [str(i) for i in range(self.n_classes)]
        if len(self.names) != self.n_classes:
            raise ValueError(f"{len(self.names)} names for {self.n_classes} classes")
        self.max_boxes, self.eval_batch = int(max_boxes), int(eval_batch)
        self.conf, self.iou, self.max_det = float(conf), float(iou), int(max_det)
        self.hyp = dict(hyp or {})
        if self.model_source.lower().endswith(".pt") and not Path(self.model_source).is_file():
            raise FileNotFoundError(f"{self.model_source}: no such checkpoint file (autosim never "
                                    f"downloads weights; give the path of a local .pt)")

    # -- model
    def _checkpoint_model(self) -> nn.Module:
        from ultralytics.nn.tasks import torch_safe_load

        try:
            ckpt, _ = torch_safe_load(self.model_source)
        except Exception as exc:  # noqa: BLE001  (unpickling errors of every kind)
            raise ValueError(f"{self.model_source}: not a readable ultralytics checkpoint "
                             f"({type(exc).__name__}: {exc})") from exc
        src = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else None
        if not isinstance(src, nn.Module) or not hasattr(src, "yaml"):
            raise ValueError(f"{self.model_source}: no ultralytics model in the checkpoint "
                             f"(expected a dict with 'model' or 'ema', as ultralytics saves)")
        return src.float()

    def build_model(self, generator: torch.Generator) -> nn.Module:
        u = _ultralytics()
        src = self._checkpoint_model() if self.model_source.lower().endswith(".pt") else None
        cfg = src.yaml if src is not None else self.model_source
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
            try:
                model = u.DetectionModel(cfg, nc=self.n_classes, verbose=False)
            except FileNotFoundError as exc:
                raise ValueError(f"unknown model {self.model_source!r}: give an ultralytics model "
                                 f"yaml such as yolo11n.yaml or yolov8n.yaml, a yaml file, or a "
                                 f".pt checkpoint ({exc})") from exc
        head = model.model[-1]
        if type(head) is not u.Detect:
            raise ValueError(f"{self.model_source}: the last layer is {type(head).__name__}, not a "
                             f"plain Detect head; DetectionTask needs a detection model")
        if src is not None:
            model.load(src, verbose=False)
        model.args = u.get_cfg(u.DEFAULT_CFG, self.hyp or None)
        model.names = dict(enumerate(self.names))
        if self.freeze >= len(model.model):
            raise ValueError(f"freeze={self.freeze} but the model has only {len(model.model)} "
                             f"layers (the last is the Detect head)")
        for layer in list(model.model)[: self.freeze]:
            for p in layer.parameters():
                p.requires_grad_(False)
        return model

    def head_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """The Detect head's trainable parameters (box and class branches; DFL is fixed)."""
        return [p for p in model.model[-1].parameters() if p.requires_grad]

    # -- data
    def to_data(self, rendered, device: torch.device | str) -> TaskData:
        """A rendered Batch, a DetectionSet (optimizer.yolo_data) or a YOLO folder path."""
        from optimizer.yolo_data import letterbox, load_yolo_folder

        if isinstance(rendered, (str, Path)):
            rendered = load_yolo_folder(rendered, self.imgsz)
        images = np.asarray(rendered.images)
        boxes, classes = list(rendered.boxes), list(rendered.classes)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"detection needs uint8 images (N,H,W,3), got {images.dtype} "
                             f"{images.shape}")
        if not len(boxes) == len(classes) == len(images):
            raise ValueError(f"{len(images)} images but {len(boxes)} box lists and "
                             f"{len(classes)} class lists")
        for k, c in enumerate(classes):
            c = np.asarray(c)
            if c.size and (c.min() < 1 or c.max() > self.n_classes):
                raise ValueError(f"sample {k}: class id {int(c.min() if c.min() < 1 else c.max())}"
                                 f" outside 1..{self.n_classes} (0 is background)")
        if self.imgsz is not None and images.shape[1:3] != (self.imgsz, self.imgsz):
            pairs = [letterbox(im, np.asarray(b, np.float32).reshape(-1, 4), self.imgsz)
                     for im, b in zip(images, boxes)]
            images = np.stack([p[0] for p in pairs])
            boxes = [p[1] for p in pairs]
        x = torch.from_numpy(np.ascontiguousarray(images)).to(device)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        h, w = x.shape[-2:]
        ph, pw = -h % 32, -w % 32
        if ph or pw:
            x = torch.nn.functional.pad(x, (0, pw, 0, ph), value=PAD_VALUE)
        return TaskData(x, dense_targets(boxes, classes, self.max_boxes, device))

    # -- loss
    def criterion(self, model: nn.Module):
        """ultralytics' own criterion for the model (built once per device, kept on model)."""
        crit = getattr(model, "criterion", None)
        device = next(model.parameters()).device
        if crit is None or _criterion_device(crit) != device:
            if not hasattr(getattr(model, "args", None), "box"):
                u = _ultralytics()
                model.args = u.get_cfg(u.DEFAULT_CFG, self.hyp or None)
            crit = model.criterion = model.init_criterion()
        return crit

    def per_sample_loss(self, model: nn.Module, data: TaskData) -> torch.Tensor:
        out = model(data.inputs)
        preds = out[1] if isinstance(out, tuple) else out  # eval: (inference, raw)
        crit = self.criterion(model)
        batch = to_ultralytics_batch(data.targets, *data.inputs.shape[-2:])
        if "one2many" in preds:  # end-to-end head (E2ELoss)
            return (crit.o2m * per_image_detection_loss(crit.one2many, preds["one2many"], batch)
                    + crit.o2o * per_image_detection_loss(crit.one2one, preds["one2one"], batch))
        return per_image_detection_loss(crit, preds, batch)

    # -- metric
    @torch.no_grad()
    def predict(self, model: nn.Module, inputs: torch.Tensor) -> list[torch.Tensor]:
        """NMS'd detections per image, (n, 6) x0,y0,x1,y1,conf,yolo_class, in input pixels."""
        from ultralytics.utils.nms import non_max_suppression

        was_training = model.training
        model.eval()
        try:
            dets: list[torch.Tensor] = []
            for start in range(0, len(inputs), self.eval_batch):
                out = model(inputs[start:start + self.eval_batch])
                dets += non_max_suppression(out, self.conf, self.iou, multi_label=True,
                                            max_det=self.max_det,
                                            end2end=bool(getattr(model, "end2end", False)))
        finally:
            model.train(was_training)
        return dets

    def evaluate(self, model: nn.Module, data: TaskData) -> dict[str, float]:
        """precision, recall (at max mean F1), mAP50 and mAP50-95, as ultralytics reports them."""
        metrics = detection_metrics(self.predict(model, data.inputs), data.targets, self.names)
        if metrics is None:
            return {"precision": 0.0, "recall": 0.0, "mAP50": 0.0, "mAP50-95": 0.0}
        p, r, map50, map5095 = (float(v) for v in metrics.mean_results())
        return {"precision": p, "recall": r, "mAP50": map50, "mAP50-95": map5095}

    def metric(self, model: nn.Module, data: TaskData) -> float:
        return self.evaluate(model, data)["mAP50"]
