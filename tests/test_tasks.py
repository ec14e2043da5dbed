"""Task models and metrics, checked against a library's and against their definitions."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from optimizer.tasks.classifier import ClassifierTask
from optimizer.tasks.segmentation import SegmentationTask, UNet, confusion, miou_from_confusion


def test_unet_has_eight_conv_layers_and_keeps_resolution():
    net = UNet(4)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)]
    assert len(convs) == 8
    assert net.eval()(torch.rand(2, 3, 64, 48)).shape == (2, 4, 64, 48)


def _sklearn_miou(pred, target, n_classes):
    """Mean IoU over the non-background classes present in either, by sklearn."""
    from sklearn.metrics import jaccard_score

    labels = [c for c in range(1, n_classes) if (target == c).any() or (pred == c).any()]
    if not labels:
        return 0.0
    return jaccard_score(target.ravel(), pred.ravel(), labels=labels, average="macro")


def test_miou_by_hand():
    target = torch.tensor([[[0, 1], [1, 2]], [[2, 2], [0, 0]]])
    pred = torch.tensor([[[0, 1], [2, 2]], [[2, 1], [0, 1]]])
    # pixels in reading order p0..p7; class 1: target {p1, p2}, pred {p1, p5, p7}: IoU 1/4;
    # class 2: target {p3, p4, p5}, pred {p2, p3, p4}: IoU 2/4; background left out
    assert miou_from_confusion(confusion(pred, target, 3)) == pytest.approx(0.375, abs=1e-12)


def test_segmentation_metric_is_miou_over_the_whole_set_by_sklearn():
    """metric() pools every image (one confusion, not a mean of per-image IoUs), in batches."""
    task = SegmentationTask(4, eval_batch=2)
    model = task.build_model(torch.Generator().manual_seed(0))
    rng = np.random.default_rng(2)

    class Rendered:
        images = rng.integers(0, 255, (5, 16, 16, 3), dtype=np.uint8)
        masks = rng.integers(0, 4, (5, 16, 16)).astype(np.uint8)

    data = task.to_data(Rendered, torch.device("cpu"))
    model.train()
    got = task.metric(model, data)
    assert model.training  # left as it was
    with torch.no_grad():
        pred = model.eval()(data.inputs).argmax(1).numpy()
    assert got == pytest.approx(_sklearn_miou(pred, Rendered.masks, 4), abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_miou_matches_sklearn_jaccard_without_background(seed):
    from sklearn.metrics import jaccard_score

    rng = np.random.default_rng(seed)
    target = rng.integers(0, 4, (5, 16, 16))
    pred = np.where(rng.random(target.shape) < 0.6, target, rng.integers(0, 4, target.shape))
    if seed == 3:  # a class absent from both prediction and target is not averaged in
        target[target == 2] = 0
        pred[pred == 2] = 1
    ours = miou_from_confusion(confusion(torch.tensor(pred), torch.tensor(target), 4))
    labels = [c for c in (1, 2, 3) if (target == c).any() or (pred == c).any()]
    ref = jaccard_score(target.ravel(), pred.ravel(), labels=labels, average="macro")
    assert ours == pytest.approx(ref, abs=1e-12)


def test_segmentation_loss_is_per_sample_cross_entropy():
    task = SegmentationTask(4)
    model = task.build_model(torch.Generator().manual_seed(0)).eval()

    class Rendered:
        images = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
        masks = np.random.default_rng(1).integers(0, 4, (3, 32, 32)).astype(np.uint8)

    data = task.to_data(Rendered, torch.device("cpu"))
    per = task.per_sample_loss(model, data)
    logits = model(data.inputs)
    for k in range(3):
        ref = F.cross_entropy(logits[k:k + 1], data.targets[k:k + 1])
        assert per[k].item() == pytest.approx(ref.item(), rel=1e-5)
    assert task.metric(model, data) == pytest.approx(
        _sklearn_miou(logits.argmax(1).numpy(), data.targets.numpy(), 4), abs=1e-12)
    assert [p.shape for p in task.head_parameters(model)] == [(4, 16, 1, 1), (4,)]


def test_segmentation_rejects_inconsistent_input():
    task = SegmentationTask(4)

    class Bad:
        images = np.zeros((2, 8, 8, 3), np.uint8)
        masks = np.full((2, 8, 8), 7, np.uint8)

    with pytest.raises(ValueError, match="class 7"):
        task.to_data(Bad, torch.device("cpu"))


def test_classifier_metric_is_accuracy():
    task = ClassifierTask()
    model = task.build_model(torch.Generator().manual_seed(0))
    x = np.random.default_rng(0).normal(size=(50, 2))
    y = np.random.default_rng(1).integers(0, 2, 50)
    data = task.to_data((x, y), torch.device("cpu"))
    pred = model(data.inputs).argmax(1).numpy()
    assert task.metric(model, data) == pytest.approx(float((pred == y).mean()))
    same = task.build_model(torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), same.parameters()))
