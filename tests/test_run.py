"""The run loop's bookkeeping: an interruption at any point leaves a resumable, gap-free log."""

import json
import math

import numpy as np
import pytest
import torch

from optimizer.algorithms import get
from optimizer.algorithms.base import Algorithm
from optimizer.run import CHECKPOINT, METRICS, Runner, read_metrics
from tests.fakes import toy_context


def _runner(out, budget, **options):
    ctx, _ = toy_context(val_n=200)
    algo = get("autosimulate")(ctx, k=32, epochs=1, batch_size=16, hessian="all", **options)
    return Runner(algo, out, budget, progress=False)


def test_interrupted_between_metrics_line_and_checkpoint(tmp_path):
    first = _runner(tmp_path, 3 * 32)
    first.run()
    assert [r["iteration"] for r in read_metrics(tmp_path)] == [0, 1, 2]
    # the 4th iteration wrote its line, then died before its checkpoint
    with open(tmp_path / METRICS, "a") as fh:
        fh.write(json.dumps({"iteration": 3, "images_rendered": 128, "val_metric": -1.0,
                             "psi": []}) + "\n")
    state = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    assert state["algorithm"]["iteration"] == 3
    again = _runner(tmp_path, 6 * 32)
    assert again.resume()
    again.run()
    records = read_metrics(tmp_path)
    assert [r["iteration"] for r in records] == list(range(6))
    assert records[3]["val_metric"] != -1.0
    assert [r["images_rendered"] for r in records] == [32 * (i + 1) for i in range(6)]


@pytest.mark.parametrize("options", [{}, {"replay": 2, "order": "fresh"},
                                     {"psi_optimizer": "natural", "kl_step": 0.05},
                                     {"shrink": 1.0}])
def test_resumed_run_equals_an_uninterrupted_one(tmp_path, options):
    straight = _runner(tmp_path / "a", 4 * 32, **options)
    straight.run()
    part = _runner(tmp_path / "b", 2 * 32, **options)
    part.run()
    rest = _runner(tmp_path / "b", 4 * 32, **options)
    rest.resume()
    rest.run()
    a, b = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    np.testing.assert_allclose([r["psi"] for r in a], [r["psi"] for r in b])
    assert [r["val_metric"] for r in a] == [r["val_metric"] for r in b]


class _NanMethod(Algorithm):
    """One image a step; its records hold non-finite numbers, as a failed evaluation's do."""

    name = "nan-test"
    images_per_step = 1

    def step(self):
        self.render(self.space.sample(1, self.rng))
        self.iteration += 1
        return {"val_metric": float("nan"), "reward_mean": float("inf"),
                "baseline": float("-inf"), "loss": 0.25, "failed": 1}


def _strict(text):
    def reject(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=reject)


def test_non_finite_numbers_are_written_as_null(tmp_path):
    ctx, _ = toy_context(val_n=10)
    records = Runner(_NanMethod(ctx), tmp_path, 2, progress=False).run()
    assert math.isnan(records[0]["val_metric"])  # the in-memory record keeps the NaN
    lines = (tmp_path / METRICS).read_text().splitlines()
    assert len(lines) == 2
    for i, line in enumerate(lines):
        assert "NaN" not in line and "Infinity" not in line
        rec = _strict(line)
        assert rec["iteration"] == i
        assert rec["val_metric"] is None and rec["reward_mean"] is None
        assert rec["baseline"] is None
        assert rec["loss"] == 0.25 and rec["failed"] == 1
    with pytest.raises(ValueError, match="NaN"):  # the strict parser does reject NaN
        _strict('{"a": NaN}')
