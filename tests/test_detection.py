"""DetectionTask (ultralytics YOLO) and the YOLO-folder loader.

The loss is checked against ultralytics' own criterion, the metric against ultralytics' own
DetectionValidator, second order through the loss in eval mode, freezing through
optimizer.training.fit, and learning on coloured squares drawn in numpy (64 px, yolo11n).
"""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

import optimizer  # noqa: F401  (offline ultralytics, CPU NMS) before ultralytics is imported
from optimizer.data import DatasetError
from optimizer.hypergrad import directional_derivatives
from optimizer.linalg import flat_grad, hvp_operator
from optimizer.tasks.base import TaskData
from optimizer.tasks.detection import (
    DetectionTask,
    dense_targets,
    detection_metrics,
    to_ultralytics_batch,
)
from optimizer.training import fit
from optimizer.yolo_data import load_yolo_folder
from protocol.dataset import DatasetWriter

COLORS = [(230, 40, 40), (40, 200, 40), (40, 40, 230)]
NAMES = ["red", "green", "blue"]


def squares(n: int, seed: int, size: int = 64, max_objects: int = 2, empty_first: bool = False):
    """Coloured squares on grey: class id 1..3 = colour, boxes known exactly."""
    rng = np.random.default_rng(seed)
    images = np.full((n, size, size, 3), 90, np.uint8)
    boxes, classes = [], []
    for i in range(n):
        b, c = [], []
        for _ in range(0 if (empty_first and i == 0) else int(rng.integers(1, max_objects + 1))):
            s = int(rng.integers(14, 26))
            x0, y0 = (int(v) for v in rng.integers(0, size - s, 2))
            cls = int(rng.integers(1, 4))
            images[i, y0:y0 + s, x0:x0 + s] = COLORS[cls - 1]
            b.append([x0, y0, x0 + s, y0 + s])
            c.append(cls)
        boxes.append(np.array(b, np.float32).reshape(-1, 4))
        classes.append(np.array(c, np.int32))
    return types.SimpleNamespace(images=images, boxes=boxes, classes=classes)


@pytest.fixture(scope="module")
def task():
    return DetectionTask(3, "yolo11n.yaml", names=NAMES)


@pytest.fixture(scope="module")
def model(task):
    return task.build_model(torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def trained(task):
    """yolo11n trained briefly on squares: (model, mAP before, train data)."""
    torch.manual_seed(0)
    m = task.build_model(torch.Generator().manual_seed(1))
    data = task.to_data(squares(24, seed=1), "cpu")
    before = task.metric(m, data)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    result = fit(task, m, opt, data, epochs=25, batch_size=8,
                 generator=torch.Generator().manual_seed(0))
    assert result.ok
    return m, before, data


# ------------------------------------------------------------------ loss
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_per_sample_loss_mean_is_ultralytics_batch_loss(task, model, mode):
    data = task.to_data(squares(6, seed=3, max_objects=3, empty_first=True), "cpu")
    model.train(mode == "train")
    losses = task.per_sample_loss(model, data)
    batch = to_ultralytics_batch(data.targets, 64, 64)
    ref, _ = model.loss({**batch, "img": data.inputs})
    assert losses.shape == (6,)
    assert torch.isfinite(losses).all() and (losses > 0).all()
    torch.testing.assert_close(losses.mean(), ref.sum() / 6, rtol=1e-5, atol=1e-6)
    # one image alone: l equals ultralytics' loss of that single image
    one = data.subset(slice(2, 3))
    ref1, _ = model.loss({**to_ultralytics_batch(one.targets, 64, 64), "img": one.inputs})
    torch.testing.assert_close(task.per_sample_loss(model, one)[0], ref1.sum(), rtol=1e-5,
                               atol=1e-6)
    model.train()


def test_images_without_objects_and_seeding(task, model):
    empty = squares(3, seed=0)
    empty.boxes = [np.zeros((0, 4), np.float32)] * 3
    empty.classes = [np.zeros(0, np.int32)] * 3
    data = task.to_data(empty, "cpu")
    model.eval()
    losses = task.per_sample_loss(model, data)
    ref, _ = model.loss({**to_ultralytics_batch(data.targets, 64, 64), "img": data.inputs})
    torch.testing.assert_close(losses.mean(), ref.sum() / 3)
    head = task.head_parameters(model)
    hv = hvp_operator(losses.mean(), head)(torch.ones(sum(p.numel() for p in head)))
    assert torch.isfinite(hv).all()
    model.train()
    a, b, c = (task.build_model(torch.Generator().manual_seed(s)) for s in (3, 3, 4))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                    c.state_dict().values()))


def test_end_to_end_head_loss_matches_ultralytics():
    """YOLO26 (one-to-many + one-to-one branches, E2ELoss) decomposes the same way."""
    task26 = DetectionTask(3, "yolo26n.yaml")
    m = task26.build_model(torch.Generator().manual_seed(0)).eval()
    data = task26.to_data(squares(4, seed=4), "cpu")
    ref, _ = m.loss({**to_ultralytics_batch(data.targets, 64, 64), "img": data.inputs})
    torch.testing.assert_close(task26.per_sample_loss(m, data).mean(), ref.sum() / 4,
                               rtol=1e-5, atol=1e-6)


def test_second_order_in_eval_mode(task, model):
    model.eval()
    data = task.to_data(squares(4, seed=5), "cpu")
    head = task.head_parameters(model)
    losses = task.per_sample_loss(model, data)
    matvec = hvp_operator(losses.mean(), head)
    n = sum(p.numel() for p in head)
    gen = torch.Generator().manual_seed(0)
    v, w = torch.randn(n, generator=gen), torch.randn(n, generator=gen)
    hv, hw = matvec(v), matvec(w)
    assert torch.isfinite(hv).all() and hv.abs().sum() > 0
    torch.testing.assert_close(w @ hv, v @ hw, rtol=1e-3, atol=1e-6)  # symmetric
    # the K directional derivatives from one double-backward pass = per-sample grads . v
    d = directional_derivatives(task.per_sample_loss(model, data), head, v)
    losses = task.per_sample_loss(model, data)
    loop = torch.stack([flat_grad(losses[k], head, retain_graph=True) @ v for k in range(4)])
    torch.testing.assert_close(d, loop, rtol=1e-4, atol=1e-6)
    # and through every parameter (a full HVP stays finite)
    params = [p for p in model.parameters() if p.requires_grad]
    full = hvp_operator(task.per_sample_loss(model, data).mean(), params)
    assert torch.isfinite(full(torch.randn(sum(p.numel() for p in params), generator=gen))).all()
    model.train()


def test_head_parameters_are_the_detect_head(task, model):
    head = task.head_parameters(model)
    detect = model.model[-1]
    assert type(detect).__name__ == "Detect"
    ids = {id(p) for p in detect.parameters() if p.requires_grad}
    assert {id(p) for p in head} == ids and len(head) == len(ids) > 0
    assert all(p.requires_grad for p in head)


def test_freeze_keeps_first_layers(tmp_path):
    t = DetectionTask(3, "yolov8n.yaml", freeze=4)
    m = t.build_model(torch.Generator().manual_seed(0))
    frozen = [p for layer in list(m.model)[:4] for p in layer.parameters()]
    assert frozen and not any(p.requires_grad for p in frozen)
    assert all(p.requires_grad for p in m.model[4].parameters())
    before = {k: v.clone() for k, v in m.named_parameters()}
    data = t.to_data(squares(8, seed=6), "cpu")
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    assert fit(t, m, opt, data, epochs=1, batch_size=4, generator=torch.Generator()).ok
    for name, p in m.named_parameters():
        layer = int(name.split(".")[1])
        if layer < 4:
            assert torch.equal(p, before[name]), name
    assert not torch.equal(m.model[-1].cv2[0][-1].weight, before["model.22.cv2.0.2.weight"])


def test_checkpoint_start_and_missing_file(tmp_path, model):
    path = tmp_path / "start.pt"
    torch.save({"model": model}, path)
    same = DetectionTask(3, path).build_model(torch.Generator().manual_seed(5))
    for (name, a), b in zip(model.state_dict().items(), same.state_dict().values()):
        assert torch.equal(a, b), name
    other = DetectionTask(2, path).build_model(torch.Generator().manual_seed(5))  # new head rows
    assert other.model[-1].nc == 2
    assert torch.equal(other.model[0].conv.weight, model.model[0].conv.weight)
    with pytest.raises(FileNotFoundError, match="never downloads"):
        DetectionTask(3, tmp_path / "yolo11n.pt")
    with pytest.raises(ValueError, match="unknown model"):
        DetectionTask(3, "yolo99n.yaml").build_model(torch.Generator())


# ------------------------------------------------------------------ data
def test_to_data_pads_and_subsets(task):
    rendered = squares(3, seed=7, size=48)
    rendered.images = rendered.images[:, :, :40]  # 48 x 40
    data = task.to_data(rendered, "cpu")
    assert data.inputs.shape == (3, 3, 64, 64)
    assert torch.allclose(data.inputs[:, :, 48:], torch.tensor(114 / 255))
    assert data.targets.shape == (3, task.max_boxes, 5)
    n = len(rendered.classes[1])
    expected_cls = torch.tensor(rendered.classes[1] - 1.0).float()
    torch.testing.assert_close(data.targets[1, :n, 0], expected_cls)
    torch.testing.assert_close(data.targets[1, :n, 1:], torch.from_numpy(rendered.boxes[1]))
    assert (data.targets[1, n:] == -1).all()
    sub = data.subset(torch.tensor([2, 0]))
    assert isinstance(sub, TaskData) and len(sub) == 2
    assert TaskData.cat([sub, data]).targets.shape == (5, task.max_boxes, 5)
    batch = to_ultralytics_batch(data.targets, 64, 64)
    assert batch["bboxes"].shape == (sum(len(c) for c in rendered.classes), 4)
    assert (batch["batch_idx"].diff() >= 0).all()
    bad = squares(2, seed=8)
    bad.classes[1] = np.array([0] * len(bad.classes[1]), np.int32)
    with pytest.raises(ValueError, match="background"):
        task.to_data(bad, "cpu")
    with pytest.raises(ValueError, match="max_boxes"):
        dense_targets([np.zeros((3, 4))], [np.ones(3)], max_boxes=2)


def _write_folder(root, data, names=("background", *NAMES)):
    with DatasetWriter(root, list(names)) as w:
        for img, b, c in zip(data.images, data.boxes, data.classes):
            w.add(img, np.zeros(img.shape[:2], np.uint8), b, c, {})


def test_load_yolo_folder_round_trip(tmp_path, task):
    data = squares(5, seed=9, empty_first=True)
    _write_folder(tmp_path / "set", data)
    loaded = load_yolo_folder(tmp_path / "set")
    assert loaded.names == NAMES and len(loaded) == 5
    assert np.array_equal(loaded.images, data.images)
    for a, b, ca, cb in zip(loaded.boxes, data.boxes, loaded.classes, data.classes):
        np.testing.assert_allclose(a, b, atol=1e-3)
        assert np.array_equal(ca, cb)
    td = task.to_data(tmp_path / "set", "cpu")  # a path works too
    assert td.inputs.shape == (5, 3, 64, 64)
    # letterboxing to another size moves the boxes with the pixels
    lb = load_yolo_folder(tmp_path / "set", imgsz=128)
    assert lb.images.shape == (5, 128, 128, 3)
    np.testing.assert_allclose(lb.boxes[1], data.boxes[1] * 2, atol=1e-2)


def test_load_yolo_folder_errors(tmp_path):
    root = tmp_path / "set"
    _write_folder(root, squares(2, seed=10))
    label = root / "labels" / "000001.txt"
    label.write_text("0 0.5 0.5 0.2 0.2\n1 0.5 0.5\n")
    with pytest.raises(DatasetError, match=r"000001\.txt:2: expected 'class cx cy w h'"):
        load_yolo_folder(root)
    label.write_text("0 0.5 0.5 0.2 0.2\n\nx 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DatasetError, match=r"000001\.txt:3: fields must be numbers"):
        load_yolo_folder(root)
    label.write_text("7 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DatasetError, match=r"000001\.txt:1: class 7 but data.yaml names only 3"):
        load_yolo_folder(root)
    label.write_text("0 50 40 10 10\n")
    with pytest.raises(DatasetError, match="normalised"):
        load_yolo_folder(root)
    label.write_text("2 0.1 0.1 0.5 0.1 0.5 0.6\n")  # a polygon: its bounding box
    np.testing.assert_allclose(load_yolo_folder(root).boxes[1], [[6.4, 6.4, 32, 38.4]], atol=1e-4)
    label.unlink()  # no label file: an image without objects
    assert len(load_yolo_folder(root).boxes[1]) == 0
    (root / "data.yaml").unlink()
    no_yaml = load_yolo_folder(root)  # names "0".."n-1" up to the largest class seen
    assert no_yaml.names == [str(i) for i in range(max(int(c.max()) for c in no_yaml.classes
                                                          if len(c)))]
    from PIL import Image
    Image.new("RGB", (32, 48)).save(root / "images" / "zz.png")
    with pytest.raises(DatasetError, match="imgsz"):
        load_yolo_folder(root)
    assert load_yolo_folder(root, imgsz=64).images.shape == (3, 64, 64, 3)
    for sub in ("labels", "images"):
        import shutil
        shutil.rmtree(root / sub)
        with pytest.raises(DatasetError, match=f"missing {sub}/"):
            load_yolo_folder(root)
    with pytest.raises(DatasetError, match="no such folder"):
        load_yolo_folder(tmp_path / "nope")


# ------------------------------------------------------------------ metric
def _targets(boxes, classes):
    return dense_targets(boxes, classes, 16)


def test_map_of_perfect_and_recall_limited_predictions():
    data = squares(6, seed=11, max_objects=3)
    tgt = _targets(data.boxes, data.classes)
    perfect = [torch.cat([torch.from_numpy(b), torch.full((len(b), 1), 0.9),
                          torch.from_numpy(c - 1.0).float()[:, None]], 1)
               for b, c in zip(data.boxes, data.classes)]
    m = detection_metrics(perfect, tgt, NAMES)
    # ultralytics' AP is the 101-point (COCO) trapezoid of the precision envelope, and its recall
    # grid ends in a sentinel point (recall 1, precision 0) that np.interp picks at recall 1.0:
    # a perfect detector scores 1 - 0.01/2 = 0.995, as ultralytics' own mAP50 does.
    assert m.box.map50 == pytest.approx(0.995, abs=1e-9)
    assert m.box.map == pytest.approx(0.995, abs=1e-9)
    # a single class, 4 objects, 2 found (at IoU 1): precision 1 up to recall 0.5, then nothing.
    # The envelope is 1 on [0, 0.5) and 0 from recall 0.5 on (np.interp takes the later of two
    # points at one recall): 0.5 less the half step 0.005 of the drop in [0.49, 0.50] -> 0.495
    boxes = [np.array([[0, 0, 20, 20], [30, 30, 50, 50]], np.float32)] * 2
    one = [np.ones(2, np.int32)] * 2
    dets = [torch.tensor([[0, 0, 20, 20, 0.8, 0.0]]), torch.tensor([[30, 30, 50, 50, 0.7, 0.0]])]
    m = detection_metrics(dets, _targets(boxes, one), NAMES)
    assert m.box.map50 == pytest.approx(0.495, abs=1e-9)
    # a false positive ranked first over 2 true positives: precision 0, 1/2, 2/3 at recall 0,
    # 1/2, 1: envelope 2/3 on [0, 1), 0 at recall 1 -> 2/3 less the half step at the end
    dets = [torch.tensor([[0, 0, 20, 20, 0.8, 0.0], [40, 0, 60, 20, 0.95, 0.0]]),
            torch.tensor([[30, 30, 50, 50, 0.7, 0.0]])]
    boxes = [np.array([[0, 0, 20, 20]], np.float32), np.array([[30, 30, 50, 50]], np.float32)]
    one = [np.ones(1, np.int32)] * 2
    m = detection_metrics(dets, _targets(boxes, one), NAMES)
    assert m.box.map50 == pytest.approx(2 / 3 - 0.005 * 2 / 3, abs=1e-9)
    # a wrong class or a box at IoU < 0.5 is no hit
    dets = [torch.tensor([[0, 0, 20, 20, 0.8, 1.0]]), torch.tensor([[40, 40, 60, 60, 0.7, 0.0]])]
    assert detection_metrics(dets, _targets(boxes, one), NAMES).box.map50 == 0.0


def test_metric_matches_ultralytics_detection_validator_update(trained, tmp_path):
    """Same NMS'd predictions through the validator's own update_metrics/get_stats."""
    from ultralytics.models.yolo.detect import DetectionValidator

    model, _, data = trained
    task = DetectionTask(3, names=NAMES)
    dets = task.predict(model, data.inputs)
    ours = detection_metrics(dets, data.targets, NAMES).mean_results()
    v = DetectionValidator(save_dir=tmp_path, args={"plots": False})
    v.device, v.seen, v.jdict, v.end2end = torch.device("cpu"), 0, [], False
    v.is_custom_json = v.build_gdict = False
    v.metrics.names = dict(enumerate(NAMES))
    batch = to_ultralytics_batch(data.targets, 64, 64)
    batch.update(img=data.inputs, ori_shape=[(64, 64)] * len(data),
                 ratio_pad=[((1.0, 1.0), (0.0, 0.0))] * len(data),
                 im_file=[f"{i}.png" for i in range(len(data))])
    batch["cls"] = batch["cls"].view(-1, 1)
    v.update_metrics([{"bboxes": d[:, :4], "conf": d[:, 4], "cls": d[:, 5], "extra": d[:, 6:]}
                      for d in dets], batch)
    stats = v.get_stats()
    assert stats["metrics/mAP50(B)"] > 0.1
    np.testing.assert_allclose(ours, [stats[k] for k in v.metrics.keys], rtol=1e-9)


def test_metric_matches_full_detection_validator(trained, tmp_path):
    """ultralytics' whole validation pipeline (dataset, letterbox, AutoBackend, NMS, metrics) on a
    YOLO folder gives the mAP that DetectionTask.metric computes on the same folder."""
    from ultralytics.models.yolo.detect import DetectionValidator

    model, _, _ = trained
    task = DetectionTask(3, names=NAMES)
    _write_folder(tmp_path / "val", squares(16, seed=2))
    ours = task.evaluate(model, task.to_data(tmp_path / "val", "cpu"))
    v = DetectionValidator(save_dir=tmp_path / "run", args={
        "data": str(tmp_path / "val" / "data.yaml"), "imgsz": 64, "batch": 8, "plots": False,
        "device": "cpu", "workers": 0, "half": False, "verbose": False})
    stats = v(model=model)  # (the validator fuses conv+BN: equal up to float rounding)
    assert ours["mAP50"] > 0.1
    for key in ("precision", "recall", "mAP50", "mAP50-95"):
        assert ours[key] == pytest.approx(stats[f"metrics/{key}(B)"], abs=5e-3), key


def test_training_on_squares_raises_map(task, trained):
    model, before, data = trained
    assert before < 0.05
    assert task.metric(model, data) > 0.25
    assert model.training  # metric restores the mode
