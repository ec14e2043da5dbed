"""TensorBoard event files of a run, read back with tensorboard's own reader."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from optimizer.algorithms import get
from optimizer.report import product_grid
from optimizer.run import CHECKPOINT, Runner, read_metrics
from optimizer.run_log import RunLogger, batch_grid, choice_grid, psi_scalars
from optimizer.tasks.base import TaskData
from protocol.space import ParameterSpace
from tests.fakes import toy_context


def _events(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def _runner(out, budget):
    ctx, _ = toy_context(val_n=200)
    algo = get("autosimulate")(ctx, k=32, epochs=1, batch_size=16, hessian="all")
    return Runner(algo, out, budget, progress=False)


def test_scalars_per_step_and_no_duplicates_after_a_resume(tmp_path):
    saved = tmp_path / "checkpoint-after-2.pt"
    first = _runner(tmp_path, 4 * 32)
    first.on_iteration = (lambda r: shutil.copy(tmp_path / CHECKPOINT, saved)
                          if r["iteration"] == 1 else None)
    first.run()
    # it "died" after iteration 3's events but its last checkpoint is after iteration 1
    shutil.copy(saved, tmp_path / CHECKPOINT)
    again = _runner(tmp_path, 6 * 32)
    assert again.resume()
    again.run()
    acc = _events(tmp_path)
    tags = acc.Tags()["scalars"]
    assert "val/accuracy" in tags and "train/loss" in tags and "train/hypergrad_norm" in tags
    steps = [e.step for e in acc.Scalars("val/accuracy")]
    assert steps == [32 * (i + 1) for i in range(6)]  # iterations 2 and 3 once, not twice
    records = read_metrics(tmp_path)
    np.testing.assert_allclose([e.value for e in acc.Scalars("val/accuracy")],
                               [r["val_metric"] for r in records], rtol=1e-6)
    # psi in the artist's units: the last logged mean is the final psi's
    final = again.algo.space.params[1]
    mean = acc.Scalars(f"psi/{final.name}/mean[0]")
    assert [e.step for e in mean] == steps
    assert mean[-1].value == pytest.approx(final.mean[0], rel=1e-5)
    std = acc.Scalars(f"psi/{final.name}/std[1]")[-1].value
    assert std == pytest.approx(float(np.exp(final.log_std[1])), rel=1e-5)
    assert not any(t.startswith("psi/component/") for t in tags)  # fixed: not logged


def test_psi_scalars_and_choice_grid_by_hand():
    space = ParameterSpace.from_dict({"format": "autosim.space", "version": 1, "params": [
        {"name": "light", "kind": "normal", "mean": [2.0], "log_std": [0.0]},
        {"name": "mat", "kind": "categorical", "choices": ["a", "b"], "logits": [0.0, 0.0]},
        {"name": "on", "kind": "bernoulli", "logit": 0.0},
        {"name": "cfg", "kind": "categorical", "fixed": True,
         "choices": ["L0_low", "L0_high", "L1_low", "L1_high"], "logits": [0, 0, 0, 0]}]})
    assert psi_scalars(space) == {"psi/light/mean": 2.0, "psi/light/std": 1.0,
                                  "psi/mat/p[a]": 0.5, "psi/mat/p[b]": 0.5, "psi/on/p": 0.5}
    grid = choice_grid(("L0_P0_low", "L0_P0_high", "L0_P1_low", "L0_P1_high",
                        "L1_P0_low", "L1_P0_high", "L1_P1_low", "L1_P1_high"),
                       np.arange(8) / 28)
    np.testing.assert_allclose(grid, np.arange(8).reshape(4, 2) / 28)  # quality across
    choices = [f"L{a}_P{b}_{q}" for a in range(3) for b in range(9) for q in ("low", "high")]
    grid, rows, cols = product_grid(choices, np.arange(54))
    assert cols == [f"P{b}" for b in range(9)] and rows[:3] == ["L0_low", "L0_high", "L1_low"]
    assert grid[rows.index("L2_high"), cols.index("P4")] == choices.index("L2_P4_high")
    assert choice_grid(("a", "b"), np.array([0.5, 0.5])) is None
    assert choice_grid(("x_1", "x_2", "y_1"), np.ones(3) / 3) is None  # not a full product


def test_batch_images_for_masks_and_boxes(tmp_path):
    images = torch.rand(3, 3, 16, 16)
    masks = torch.randint(0, 4, (3, 16, 16))
    seg = batch_grid(images, masks)
    assert seg.dtype == torch.uint8 and seg.shape[0] == 3 and seg.shape[1] > 32  # two rows
    boxes = torch.full((3, 4, 5), -1.0)
    boxes[0, 0] = torch.tensor([1.0, 2.0, 2.0, 10.0, 12.0])
    det = batch_grid(images, boxes)
    assert det.shape[0] == 3 and det.shape[1] < 32  # one row
    assert batch_grid(torch.rand(5, 2), torch.zeros(5)) is None  # the toy's points
    log = RunLogger(tmp_path, "mIoU", image_every=1)
    space = ParameterSpace.from_dict({"format": "autosim.space", "version": 1, "params": [
        {"name": "cfg", "kind": "categorical", "choices": ["A_x", "A_y", "B_x", "B_y"],
         "logits": [1.0, 0, 0, 0]}]})
    log.log({"iteration": 0, "images_rendered": 3, "val_metric": 0.25}, space,
            TaskData(images, masks))
    log.close()
    acc = _events(tmp_path)
    assert set(acc.Tags()["images"]) == {"batch/latest", "psi/cfg/grid"}
    assert acc.Scalars("val/mIoU")[0].value == 0.25 and acc.Scalars("val/mIoU")[0].step == 3
    img = acc.Images("psi/cfg/grid")[0]
    assert (img.height, img.width) == (32, 32)  # 2 x 2 choices, 16 px each


def test_a_resumed_writer_sorts_after_the_files_before_it(tmp_path):
    # TensorBoard reads event files in name order; a writer opened in the same second as the
    # one before it could sort first (its counter 10 < 9) and its purge be read too early.
    import socket
    import time

    RunLogger(tmp_path, "accuracy").writer.close()
    # a file of this very second whose counter sorts after any the next writer gets
    (tmp_path / f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.zz.zz"
     ).write_bytes(b"")
    for _ in range(3):
        before = set(tmp_path.glob("events.out.tfevents.*"))
        RunLogger(tmp_path, "accuracy", purge_step=1).writer.close()
        (new,) = set(tmp_path.glob("events.out.tfevents.*")) - before
        assert sorted(tmp_path.glob("events.out.tfevents.*"))[-1] == new
