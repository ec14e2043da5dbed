"""A scene's own defaults (protocol/scene_defaults.py): checked by name, over its task's."""

from __future__ import annotations

import json
import math

import pytest

from protocol.bindings import SceneError
from protocol.scene_defaults import TASK_DEFAULTS, SceneDefaults


def test_empty_defaults_fall_back_to_the_task():
    d = SceneDefaults()
    assert d.to_dict() == {} and d.task_or(None) == "segmentation"
    assert d.task_or("detection") == "detection"
    assert d.judge_protocol("detection") == TASK_DEFAULTS["detection"]["judge"]
    assert d.budget(True, "classifier") == (1920, 3) and d.budget(False) == (1920, 3)
    assert d.method_options("autosimulate") == {}


def test_own_values_override_the_task_and_round_trip():
    raw = {"task": "detection", "fixed": ["object_set", "cluster_*"],
           "methods": {"autosimulate": {"k": 16, "warmup": 15}, "random": {"m": 64}},
           "judge": {"train_n": 128, "lr_final": 0.5}, "budgets": {"quick": [320, 2]}}
    d = SceneDefaults.from_dict(json.loads(json.dumps(raw)))
    assert d.to_dict() == raw and SceneDefaults.from_dict(d.to_dict()) == d
    assert d.task_or(None) == "detection" and d.task_or("segmentation") == "segmentation"
    judge = d.judge_protocol()
    assert judge["train_n"] == 128 and judge["lr_final"] == 0.5
    assert judge["batch_size"] == TASK_DEFAULTS["detection"]["judge"]["batch_size"]
    assert d.budget(True) == (320, 2) and d.budget(False) == (1920, 3)
    opts = d.method_options("autosimulate")
    opts["k"] = 1  # a copy: the scene's defaults stay as they were
    assert d.method_options("autosimulate") == {"k": 16, "warmup": 15}


@pytest.mark.parametrize("raw, message", [
    ([], "defaults: expected an object"),
    ({"bench": {}}, "defaults.bench: unknown key"),
    ({"task": "depth"}, "defaults.task: unknown task 'depth'"),
    ({"fixed": "obj*"}, "defaults.fixed: expected a list"),
    ({"fixed": [""]}, "defaults.fixed: expected a list"),
    ({"methods": {"autosimulate": 3}}, "defaults.methods.autosimulate: expected an object"),
    ({"methods": {"random": {"m": math.inf}}}, "defaults.methods.random: must be JSON"),
    ({"judge": {"train_n": 0}}, "defaults.judge.train_n: expected a positive integer"),
    ({"judge": {"epochs": True}}, "defaults.judge.epochs: expected a positive integer"),
    ({"judge": {"lr_theta": -1}}, "defaults.judge.lr_theta: expected a positive number"),
    ({"judge": {"seeds": 3}}, "defaults.judge.seeds: unknown key"),
    ({"budgets": {"long": [1, 1]}}, "defaults.budgets.long: unknown key"),
    ({"budgets": {"quick": [640]}}, "defaults.budgets.quick: expected [images, seeds]"),
    ({"budgets": {"quick": [640, 0]}}, "defaults.budgets.quick[1]: expected a positive"),
])
def test_bad_defaults_name_the_field(raw, message):
    with pytest.raises(SceneError) as err:
        SceneDefaults.from_dict(raw)
    assert message in str(err.value)
