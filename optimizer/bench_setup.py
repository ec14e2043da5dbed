"""What a bench runs against: the scene's simulator, task, start space and its targets.

A target is a validation set (what methods see) and a test set (what the judge scores on),
drawn from one configuration: the scene's shipped one, each of N generated hidden ones
(`--targets N --target-seed S`), or a user's own folders (`--val DIR --test DIR`, where the
configuration is unknown and "gap closed" cannot be computed).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optimizer.data import DatasetError
from optimizer.errors import CliError
from optimizer.judge import EVAL, Judge, eval_scene
from optimizer.targets import draw_targets, moved_parameters
from optimizer.tasks.base import Task, TaskData
from protocol.space import ParameterSpace

VAL_SEED, TEST_SEED = 10_000, 20_000  # rendered val/test sets of target i: seed + i


@dataclasses.dataclass
class Target:
    name: str
    space: ParameterSpace | None    # the configuration, where known
    val: TaskData
    test: TaskData
    moved: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class BenchSetup:
    scene: str
    task: Task
    space: ParameterSpace                        # the start, with --fix applied
    make_render: Callable[[], Callable[[np.ndarray], Any]]
    publish: Callable[[np.ndarray, dict], None]
    targets: list[Target]
    device: torch.device
    eval: dict[str, Any]

    def judge(self, target: Target) -> Judge:
        return Judge.for_scene(self.scene, overrides=self.eval, task=self.task,
                               space=self.space, render=self.make_render(), test=target.test,
                               device=self.device)


def judge_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, f"judge_{k}", None) for k in ("val_n", "test_n", "train_n",
                                                           "epochs")}


def _drawn(space: ParameterSpace, args: argparse.Namespace) -> list[ParameterSpace]:
    n = int(getattr(args, "targets", 0) or 0)
    if n < 0:
        raise CliError(f"--targets must be >= 0, got {n}")
    return draw_targets(space, n, int(getattr(args, "target_seed", 0))) if n else []


def _write_target(folder: Path, target: ParameterSpace, start: ParameterSpace) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "target_space.json").write_text(target.to_json())
    (folder / "moved.json").write_text(json.dumps(moved_parameters(start, target)))


@contextlib.contextmanager
def open_bench(scene: str, args: argparse.Namespace, device: torch.device,
               out: Path) -> Iterator[BenchSetup]:
    from optimizer.optimize import fix_parameters, scene_fix

    task = getattr(args, "task", None)
    if scene not in EVAL and scene != "blend":
        raise CliError(f"unknown scene {scene!r} for bench; known: {', '.join(EVAL)}")
    fixed = scene_fix(scene, getattr(args, "fix", []))
    ev = {**EVAL[eval_scene(scene, task)], **{k: v for k, v in judge_overrides(args).items() if v}}
    user_val, user_test = getattr(args, "val", None), getattr(args, "test", None)
    if bool(user_val) != bool(user_test):
        raise CliError("--val and --test go together: a bench judges on data it did not "
                       "choose on")
    if user_val and getattr(args, "targets", 0):
        raise CliError("--targets draws its own validation and test sets: drop --val/--test")
    if scene == "toy":
        if user_val:
            raise CliError("the toy scene makes its own data: drop --val/--test")
        yield _toy_setup(args, device, ev, fixed, fix_parameters, out)
        return
    yield from _rendered_setup(scene, args, device, ev, fixed, fix_parameters, out)


def _toy_setup(args, device, ev, fixed, fix_parameters, out: Path) -> BenchSetup:
    from optimizer.optimize import TOY_TEST_SEED, TOY_VAL_SEED, single_thread_for_tiny_models
    from optimizer.simulators.toy import ToySimulator, sample_real
    from optimizer.tasks.classifier import ClassifierTask

    single_thread_for_tiny_models()
    task = ClassifierTask()
    space = fix_parameters(ToySimulator().space, fixed)
    drawn = _drawn(space, args)
    targets = []
    for i, target in enumerate(drawn):
        _write_target(out / "targets" / f"t{i}", target, space)
        sim = ToySimulator(target)
        sets = [task.to_data(sim.render(target.sample(ev[f"{k}_n"], np.random.default_rng(
            seed + i))), device) for k, seed in (("val", VAL_SEED), ("test", TEST_SEED))]
        targets.append(Target(f"t{i}", target, *sets, moved_parameters(space, target)))
    if not drawn:  # the real data of Learning To Simulate: no simulator configuration
        targets.append(Target("real", None, *[
            task.to_data(sample_real(ev[f"{k}_n"], np.random.default_rng(seed)), device)
            for k, seed in (("val", TOY_VAL_SEED), ("test", TOY_TEST_SEED))]))
    render = ToySimulator().render
    return BenchSetup("toy", task, space, lambda: render, lambda psi, m=None: None, targets,
                      device, ev)


def _rendered_setup(scene, args, device, ev, fixed, fix_parameters, out: Path):
    from functools import partial

    from optimizer.commands import open_simulator, render_dataset
    from optimizer.optimize import SCENE_TASKS, load_scene_folder, make_task

    task_name = getattr(args, "task", None) or SCENE_TASKS.get(scene, "segmentation")
    detection = task_name == "detection"
    load = partial(load_scene_folder, scene, task=task_name)
    user = None
    if args.val:
        try:  # before any server starts: a bad folder costs nothing
            user = (load(args.val), load(args.test))
        except DatasetError as exc:
            raise CliError(f"--val/--test: {exc}") from exc
    with open_simulator(args, scene) as sim:
        space = fix_parameters(sim.space, fixed)
        # a user's images set the size the methods render at (their model sees both)
        size = int(user[0].images.shape[1]) if user is not None else args.size
        configs: list[tuple[str, ParameterSpace]] = []
        if user is None:
            drawn = _drawn(space, args)
            configs = [(f"t{i}", t) for i, t in enumerate(drawn)] or \
                [("shipped", space.preset("validation"))]
        sets: dict[str, tuple] = {}
        for i, (name, config) in enumerate(configs):
            folder = out / "targets" / name
            _write_target(folder, config, space)
            pair = []
            for kind, seed in (("val", VAL_SEED), ("test", TEST_SEED)):
                path = folder / f"{kind}-set"
                if not (path / "images").is_dir():
                    render_dataset(sim, config, ev[f"{kind}_n"], seed + i, size, path,
                                   masks=not detection)
                pair.append(load(path))
            sets[name] = tuple(pair)
        if user is not None:
            sets["user"] = user
        first = next(iter(sets.values()))[0]
        task = make_task(scene, sim.classes, {"model": getattr(args, "model", None),
                                              "freeze": getattr(args, "freeze", 0),
                                              "task": task_name}, first)
        known = dict(configs)
        targets = [Target(name, known.get(name), task.to_data(v, device), task.to_data(t, device),
                          moved_parameters(space, known[name]) if name in known else [])
                   for name, (v, t) in sets.items()]
        yield BenchSetup(scene, task, space, lambda: (lambda lat: sim.render(lat, size, size)),
                         sim.set_psi, targets, device, ev)
