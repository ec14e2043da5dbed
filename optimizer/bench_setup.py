"""What a bench runs against: the scene's simulator, task, start space and its targets.

A target is a validation set (what methods see) and a test set (what the judge scores on),
drawn from one configuration: the scene's shipped one, each of N generated hidden ones
(`--targets N --target-seed S`), or a user's own folders (`--val DIR --test DIR`, where the
configuration is unknown and "gap closed" cannot be computed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optimizer.errors import CliError
from optimizer.judge import Judge
from optimizer.optimize import fix_parameters, preload, resolve_fix
from optimizer.scene_ref import SceneRef
from optimizer.session import SimulatorOptions, open_simulator
from optimizer.targets import draw_targets, moved_parameters
from optimizer.tasks.base import Task, TaskData
from optimizer.tasks.factory import load_folder, make_task
from protocol.scene_defaults import SceneDefaults
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
class BenchConfig:
    """What a bench compares, typed (cli/bench.py builds it from the flags)."""

    ref: SceneRef
    methods: list[str]
    out: Path
    budget_images: int | None = None     # None: the scene's (--quick: its quick) budget
    seeds: int | None = None
    quick: bool = False
    size: int = 64
    device: str = "auto"
    targets: int = 0
    target_seed: int = 0
    val: str | None = None
    test: str | None = None
    fractions: tuple[float, ...] = (0.25, 0.5, 1.0)
    judge: dict[str, int] = dataclasses.field(default_factory=dict)  # --judge-* overrides
    fix: list[str] = dataclasses.field(default_factory=list)
    model: str | None = None
    freeze: int = 0
    options: dict[str, Any] = dataclasses.field(default_factory=dict)  # method flags given
    simulator: SimulatorOptions = dataclasses.field(default_factory=SimulatorOptions)
    publish: str | None = None

    def __post_init__(self) -> None:
        if bool(self.val) != bool(self.test):
            raise CliError("--val and --test go together: a bench judges on data it did not "
                           "choose on")
        if self.val and self.targets:
            raise CliError("--targets draws its own validation and test sets: drop --val/--test")
        if self.targets < 0:
            raise CliError(f"--targets must be >= 0, got {self.targets}")


@dataclasses.dataclass
class BenchSetup:
    label: str
    task: Task
    space: ParameterSpace                        # the start, with --fix applied
    make_render: Callable[[], Callable[[np.ndarray], Any]]
    publish: Callable[[np.ndarray, dict], None]
    targets: list[Target]
    device: torch.device
    eval: dict[str, Any]                         # the judging protocol
    defaults: SceneDefaults

    def judge(self, target: Target) -> Judge:
        return Judge.from_protocol(self.eval, task=self.task, space=self.space,
                                   render=self.make_render(), test=target.test,
                                   device=self.device)


def _drawn(space: ParameterSpace, cfg: BenchConfig) -> list[ParameterSpace]:
    return draw_targets(space, cfg.targets, cfg.target_seed) if cfg.targets else []


def _write_target(folder: Path, target: ParameterSpace, start: ParameterSpace) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "target_space.json").write_text(target.to_json())
    (folder / "moved.json").write_text(json.dumps(moved_parameters(start, target)))


@contextlib.contextmanager
def open_bench(cfg: BenchConfig, device: torch.device) -> Iterator[BenchSetup]:
    """The scene's simulator with its targets' validation and test sets (rendered once into
    OUT/targets, reused by an interrupted bench)."""
    user = None
    task_name = cfg.ref.known_task()
    if cfg.val:
        if task_name == "classifier":
            raise CliError(f"scene {cfg.ref.label!r} makes its own data: drop --val/--test")
        user = (preload(task_name, cfg.val, "--val"), preload(task_name, cfg.test, "--test"))
    with open_simulator(cfg.ref, cfg.simulator) as sim:
        defaults = sim.defaults
        task_name = cfg.ref.task_given(defaults)
        ev = {**defaults.judge_protocol(task_name), **{k: v for k, v in cfg.judge.items() if v}}
        space = fix_parameters(sim.space, resolve_fix(cfg.fix, defaults))
        if user is not None and user[0] is None:  # a .blend's task came with its hello
            user = (preload(task_name, cfg.val, "--val"), preload(task_name, cfg.test, "--test"))
        if hasattr(sim, "real_set"):
            yield _own_data_setup(cfg, sim, space, device, ev, defaults, task_name)
            return
        yield _rendered_setup(cfg, sim, space, device, ev, defaults, task_name, user)


def _own_data_setup(cfg: BenchConfig, sim: Any, space: ParameterSpace, device: torch.device,
                    ev: dict[str, Any], defaults: SceneDefaults, task_name: str) -> BenchSetup:
    """A simulator with real data of its own (the toy): drawn targets render in-process;
    without --targets, its real data is the one target (no configuration known)."""
    task = make_task(task_name, sim.classes, None)
    drawn = _drawn(space, cfg)
    targets = []
    for i, target in enumerate(drawn):
        _write_target(cfg.out / "targets" / f"t{i}", target, space)
        sets = [task.to_data(sim.render(target.sample(ev[f"{k}_n"], np.random.default_rng(
            seed + i))), device) for k, seed in (("val", VAL_SEED), ("test", TEST_SEED))]
        targets.append(Target(f"t{i}", target, *sets, moved_parameters(space, target)))
    if not drawn:  # the real data of Learning To Simulate: no simulator configuration
        targets.append(Target("real", None, *[task.to_data(sim.real_set(k, ev[f"{k}_n"]), device)
                                              for k in ("val", "test")]))
    render = sim.render
    return BenchSetup(cfg.ref.label, task, space, lambda: render, lambda psi, m=None: None,
                      targets, device, ev, defaults)


def _rendered_setup(cfg: BenchConfig, sim: Any, space: ParameterSpace, device: torch.device,
                    ev: dict[str, Any], defaults: SceneDefaults, task_name: str,
                    user: tuple[Any, Any] | None) -> BenchSetup:
    from optimizer.dataset_render import render_dataset

    detection = task_name == "detection"
    # a user's images set the size the methods render at (their model sees both)
    size = int(user[0].images.shape[1]) if user is not None else cfg.size
    configs: list[tuple[str, ParameterSpace]] = []
    if user is None:
        drawn = _drawn(space, cfg)
        if not drawn and "validation" not in space.presets:
            raise CliError(f"scene {cfg.ref.label!r} has no 'validation' preset to bench on: "
                           f"draw targets (--targets N) or bring --val DIR --test DIR")
        configs = [(f"t{i}", t) for i, t in enumerate(drawn)] or \
            [("shipped", space.preset("validation"))]
    sets: dict[str, tuple] = {}
    for i, (name, config) in enumerate(configs):
        folder = cfg.out / "targets" / name
        _write_target(folder, config, space)
        pair = []
        for kind, seed in (("val", VAL_SEED), ("test", TEST_SEED)):
            path = folder / f"{kind}-set"
            if not (path / "images").is_dir():
                render_dataset(sim, config, ev[f"{kind}_n"], seed + i, size, path,
                               masks=not detection)
            pair.append(load_folder(task_name, path))
        sets[name] = tuple(pair)
    if user is not None:
        sets["user"] = user
    first = next(iter(sets.values()))[0]
    task = make_task(task_name, sim.classes, first, model=cfg.model, freeze=cfg.freeze)
    known = dict(configs)
    targets = [Target(name, known.get(name), task.to_data(v, device), task.to_data(t, device),
                      moved_parameters(space, known[name]) if name in known else [])
               for name, (v, t) in sets.items()]
    return BenchSetup(cfg.ref.label, task, space,
                      lambda: (lambda lat: sim.render(lat, size, size)), sim.set_psi, targets,
                      device, ev, defaults)
