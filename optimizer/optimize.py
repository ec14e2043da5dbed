"""An optimisation run: open the scene's simulator, task and validation data, run a method
until its image budget, report. The CLI (cli/optimize.py) and the demo call `run_optimize`
with a RunConfig; nothing here sees an argparse object or a scene's name."""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optimizer import algorithms
from optimizer.algorithms.base import Context
from optimizer.data import DatasetError
from optimizer.errors import CliError
from optimizer.run import REPORT, Runner, read_metrics, resolve_device
from optimizer.run_config import RunConfig
from optimizer.session import check_space_matches, load_space_file, open_simulator
from optimizer.tasks.base import Task, TaskData
from optimizer.tasks.factory import load_folder, make_task
from protocol.scene_defaults import SceneDefaults
from protocol.space import ParameterSpace


@dataclasses.dataclass
class RunScene:
    """What a run optimises against."""

    sim: Any
    task: Task
    task_name: str
    val: TaskData
    device: torch.device
    render: Callable[[np.ndarray], Any]
    target: ParameterSpace | None   # the space's "validation" preset, where it has one
    defaults: SceneDefaults


def device_of(name: str) -> torch.device:
    try:
        return resolve_device(name)
    except ValueError as exc:
        raise CliError(str(exc)) from exc


def preload(task: str | None, path: str | None, flag: str = "--val") -> Any:
    """A folder read before any server starts, so a bad one costs nothing (None: not yet)."""
    if task is None or path is None or task == "classifier":
        return None
    try:
        return load_folder(task, path)
    except DatasetError as exc:
        raise CliError(f"{flag}: {exc}") from exc


@contextlib.contextmanager
def open_run_scene(config: RunConfig) -> Iterator[RunScene]:
    device = device_of(config.device)
    ref = config.ref
    known = ref.known_task()  # read once: a built-in's comes from its scene file
    if known == "classifier" and config.val:
        raise CliError(f"scene {ref.label!r} makes its own validation set: drop --val")
    if known != "classifier" and not config.val:
        raise CliError(f"scene {ref.label!r} needs --val DIR (make one with: autosim render "
                       f"{'--blend ' + config.blend if config.blend else '--scene ' + ref.scene}"
                       f" --n 64 --out DIR)")
    val_set = preload(known, config.val)
    with open_simulator(ref, config.simulator) as sim:
        defaults = sim.defaults
        task_name = ref.task_given(defaults)
        if hasattr(sim, "real_set"):  # the toy: its own real data
            task = make_task(task_name, sim.classes, None)
            val = task.to_data(sim.real_set("val", defaults.judge_protocol(task_name)["val_n"]),
                               device)
            yield RunScene(sim, task, task_name, val, device, sim.render, None, defaults)
            return
        if val_set is None:
            val_set = preload(task_name, config.val)
        task = make_task(task_name, sim.classes, val_set, model=config.model,
                         freeze=config.freeze)
        height, width = val_set.images.shape[1:3]
        target = sim.space.preset("validation") if "validation" in sim.space.presets else None
        yield RunScene(sim, task, task_name, task.to_data(val_set, device), device,
                       lambda latents: sim.render(latents, width, height), target, defaults)


def fix_parameters(space: ParameterSpace, patterns: list[str]) -> ParameterSpace:
    """Hold parameters whose names match any glob pattern fixed (not optimised); the pattern
    "none" fixes nothing (it overrides the scene's own list)."""
    for pattern in patterns:
        if pattern == "none":
            continue
        matched = [n for n in space.names if fnmatch.fnmatchcase(n, pattern)]
        if not matched:
            raise CliError(f"--fix {pattern!r} matches no parameter; parameters: "
                           f"{', '.join(space.names)}")
        for name in matched:
            space = space.with_fixed(name, True)
    return space


def resolve_fix(patterns: list[str] | None, defaults: SceneDefaults) -> list[str]:
    """--fix patterns as given, else the scene's own."""
    return list(patterns) if patterns else list(defaults.fixed)


def effective_options(method: str, defaults: SceneDefaults,
                      given: dict[str, Any]) -> dict[str, Any]:
    """The scene's settings for the method, with the user's flags over them."""
    return {**defaults.method_options(method), **given}


def run_optimize(config: RunConfig, *, resume: bool, progress: bool = True,
                 publish: str | None = None) -> dict[str, Any]:
    from optimizer.report import write_choice_grids, write_report

    if config.method not in algorithms.REGISTRY:
        raise CliError(f"unknown method {config.method!r}; known: "
                       f"{', '.join(sorted(algorithms.REGISTRY))}")
    out = Path(config.out)
    with open_run_scene(config) as s:
        sim = s.sim
        if hasattr(sim, "metric_name"):  # render servers show it next to the metric
            sim.metric_name = s.task.metric_name
        space = sim.space
        if config.params:
            space = load_space_file(config.params)
            check_space_matches(space, sim.space, config.params, config.label)
            sim.set_psi(space.psi, {})
        # what the scene's description adds is written back, so the folder says what ran
        config.fix = resolve_fix(config.fix, s.defaults)
        config.options = effective_options(config.method, s.defaults, config.options)
        config.task = s.task_name if config.blend else config.task
        config.save()
        space = fix_parameters(space, config.fix)
        ctx = Context(space=space, task=s.task, val=s.val, device=s.device,
                      render_fn=s.render, publish_fn=sim.set_psi, seed=config.seed)
        try:
            algo = algorithms.get(config.method)(ctx, **config.options)
        except (KeyError, ValueError) as exc:
            raise CliError(str(exc).strip("'\"")) from exc
        if algo.images_per_step > config.budget_images:
            raise CliError(f"--budget-images {config.budget_images} is less than one step of "
                           f"{config.method} ({algo.images_per_step} images)")
        runner = Runner(algo, out, config.budget_images, target=s.target, progress=progress)
        if resume and not runner.resume():
            raise CliError(f"--resume {out}: no checkpoint.pt there to resume from")
        with _publisher(publish, config, s.task.metric_name) as pub:
            if pub is not None:
                runner.on_iteration = pub.hook(algo, config.budget_images)
            runner.run()
        records = read_metrics(out)
        write_report(records, algo.space, out / REPORT, metric_name=s.task.metric_name,
                     target=s.target, title=f"{config.method} on {config.label}")
        write_choice_grids(space, algo.space, s.target, out)
        return {"records": records, "start": space, "end": algo.space,
                "target": s.target, "metric_name": s.task.metric_name}


@contextlib.contextmanager
def _publisher(endpoint: str | None, config: RunConfig, metric_name: str) -> Iterator[Any]:
    """The --publish PUB socket for a watcher (optimizer/publish.py), else None."""
    if not endpoint:
        yield None
        return
    from optimizer.publish import Publisher

    with Publisher(endpoint, run=Path(config.out).name, scene=config.label,
                   metric_name=metric_name, curve=config.simulator.curve) as pub:
        print(f"publishing the run to watchers on {pub.endpoint}", flush=True)
        yield pub


def print_summary(result: dict[str, Any], out: Path) -> None:
    from optimizer.report import agreement_lines, categorical_agreement

    records = result["records"]
    if not records:
        print("no iterations ran")
        return
    first, last = records[0], records[-1]
    name = result["metric_name"]
    print(f"{name}: {first['val_metric']:.3f} after the first iteration -> "
          f"{last['val_metric']:.3f} after {last['images_rendered']} images "
          f"({last['wall_s']:.0f} s)")
    target: ParameterSpace | None = result["target"]
    if target is not None:
        free = result["start"].free_mask
        d0 = np.linalg.norm((result["start"].psi - target.psi)[free])
        d1 = np.linalg.norm((result["end"].psi - target.psi)[free])
        print(f"distance of psi to the validation configuration: {d0:.2f} -> {d1:.2f}")
        for line in agreement_lines(categorical_agreement(result["start"], result["end"],
                                                          target)):
            print(line)
    print(f"report: {out / REPORT}")
