"""What a scene's own defaults are, bpy-free: the task it trains, what stays fixed, per-method
settings, how a learned psi is judged and the bench's budgets.

A scene description carries them (`defaults`, protocol/scene.py), so a .blend brings its own and
nothing in the optimizer branches on a scene's name. What a scene leaves out comes from its
task's defaults (TASK_DEFAULTS), which are keyed by the task, a choice the user makes.

JSON form (all keys optional):
  {"task": "segmentation", "fixed": ["obj*", "color"],
   "methods": {"autosimulate": {"epochs": 10, "lr_psi": 0.1}},
   "judge": {"train_n": 256, "epochs": 15},
   "budgets": {"full": [1920, 3], "quick": [640, 2]}}
stdlib only (runs inside Blender's Python and in the optimizer).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from protocol.bindings import SceneError
from protocol.distributions import _known

TASKS = ("segmentation", "detection", "classifier")
KEYS = ("task", "fixed", "methods", "judge", "budgets")
JUDGE_INT = ("val_n", "test_n", "train_n", "epochs", "batch_size")
JUDGE_FLOAT = ("lr_theta", "lr_final")
BUDGETS = ("full", "quick")

# The judging protocol and bench budgets of each task: sizes of the validation and test sets,
# images and epochs of the fresh model. lr_final: the rate decays linearly to lr_theta *
# lr_final, as ultralytics' trainer does (lrf=0.01): a YOLO from scratch at a constant 3e-3
# ended on a jumpy epoch (test mAP over 3 seeds 0.448/0.537/0.345 constant, 0.498/0.511/0.423
# decayed, one psi, 256 images).
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "segmentation": {"judge": {"val_n": 48, "test_n": 96, "train_n": 256, "epochs": 15,
                               "batch_size": 16, "lr_theta": 3e-3, "lr_final": 1.0},
                     "budgets": {"full": [1920, 3], "quick": [640, 2]}},
    "detection": {"judge": {"val_n": 48, "test_n": 96, "train_n": 256, "epochs": 15,
                            "batch_size": 8, "lr_theta": 3e-3, "lr_final": 0.01},
                  "budgets": {"full": [1920, 3], "quick": [640, 2]}},
    "classifier": {"judge": {"val_n": 500, "test_n": 2000, "train_n": 1024, "epochs": 30,
                             "batch_size": 64, "lr_theta": 1e-2, "lr_final": 1.0},
                   "budgets": {"full": [3200, 3], "quick": [1920, 3]}},
}


def _positive_int(v: Any, path: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise SceneError(f"{path}: expected a positive integer, got {v!r}")
    return v


@dataclass(frozen=True)
class SceneDefaults:
    """A scene's defaults, validated; construction raises SceneError naming the field."""

    task: str | None = None
    fixed: tuple[str, ...] = ()
    methods: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    judge: Mapping[str, float] = field(default_factory=dict)
    budgets: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task is not None and self.task not in TASKS:
            raise SceneError(f"defaults.task: unknown task {self.task!r} "
                             f"(known: {_known(TASKS)})")
        if not isinstance(self.fixed, list | tuple) or not all(
                isinstance(p, str) and p for p in self.fixed):
            raise SceneError(f"defaults.fixed: expected a list of parameter-name patterns, "
                             f"got {self.fixed!r}")
        object.__setattr__(self, "fixed", tuple(self.fixed))
        if not isinstance(self.methods, Mapping):
            raise SceneError("defaults.methods: expected an object (method -> options)")
        methods = {}
        for name, opts in self.methods.items():
            if not isinstance(opts, Mapping) or not all(isinstance(k, str) for k in opts):
                raise SceneError(f"defaults.methods.{name}: expected an object of options")
            try:
                methods[name] = json.loads(json.dumps(dict(opts), allow_nan=False))
            except (TypeError, ValueError) as e:
                raise SceneError(f"defaults.methods.{name}: must be JSON: {e}") from None
        object.__setattr__(self, "methods", methods)
        if not isinstance(self.judge, Mapping):
            raise SceneError("defaults.judge: expected an object")
        judge: dict[str, float] = {}
        for k, v in self.judge.items():
            if k in JUDGE_INT:
                judge[k] = _positive_int(v, f"defaults.judge.{k}")
            elif k in JUDGE_FLOAT:
                if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < 1e3:
                    raise SceneError(f"defaults.judge.{k}: expected a positive number, got {v!r}")
                judge[k] = float(v)
            else:
                raise SceneError(f"defaults.judge.{k}: unknown key "
                                 f"(allowed: {_known(JUDGE_INT + JUDGE_FLOAT)})")
        object.__setattr__(self, "judge", judge)
        if not isinstance(self.budgets, Mapping):
            raise SceneError("defaults.budgets: expected an object")
        budgets = {}
        for k, v in self.budgets.items():
            if k not in BUDGETS:
                raise SceneError(f"defaults.budgets.{k}: unknown key (allowed: {_known(BUDGETS)})")
            if not isinstance(v, list | tuple) or len(v) != 2:
                raise SceneError(f"defaults.budgets.{k}: expected [images, seeds], got {v!r}")
            budgets[k] = (_positive_int(v[0], f"defaults.budgets.{k}[0]"),
                          _positive_int(v[1], f"defaults.budgets.{k}[1]"))
        object.__setattr__(self, "budgets", budgets)

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def from_dict(cls, d: Any) -> SceneDefaults:
        if not isinstance(d, Mapping):
            raise SceneError(f"defaults: expected an object, got {type(d).__name__}")
        for k in d:
            if k not in KEYS:
                raise SceneError(f"defaults.{k}: unknown key (allowed: {_known(KEYS)})")
        return cls(**{k: d[k] for k in KEYS if k in d})

    def to_dict(self) -> dict[str, Any]:
        """Only what is set, so an empty SceneDefaults is {}."""
        d: dict[str, Any] = {}
        if self.task is not None:
            d["task"] = self.task
        if self.fixed:
            d["fixed"] = list(self.fixed)
        if self.methods:
            d["methods"] = {k: dict(v) for k, v in self.methods.items()}
        if self.judge:
            d["judge"] = dict(self.judge)
        if self.budgets:
            d["budgets"] = {k: list(v) for k, v in self.budgets.items()}
        return d

    # ---- what callers ask -------------------------------------------------------------------
    def task_or(self, task: str | None) -> str:
        """The task a run trains: the given one (--task), else the scene's, else segmentation."""
        chosen = task or self.task or "segmentation"
        if chosen not in TASKS:
            raise SceneError(f"unknown task {chosen!r} (known: {_known(TASKS)})")
        return chosen

    def method_options(self, method: str) -> dict[str, Any]:
        """The scene's settings for a method (its own defaults fill the rest)."""
        return dict(self.methods.get(method, {}))

    def judge_protocol(self, task: str | None = None) -> dict[str, float]:
        """The task's judging protocol with the scene's own values over it."""
        return {**TASK_DEFAULTS[self.task_or(task)]["judge"], **self.judge}

    def budget(self, quick: bool, task: str | None = None) -> tuple[int, int]:
        """(images, seeds) of a bench run: the scene's, else the task's."""
        key = "quick" if quick else "full"
        if key in self.budgets:
            return self.budgets[key]
        images, seeds = TASK_DEFAULTS[self.task_or(task)]["budgets"][key]
        return int(images), int(seeds)
