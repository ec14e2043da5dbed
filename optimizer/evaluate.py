"""The judge on its own: a fresh model trained on images from a parameter space, scored on a
test set (a folder, or the scene's own real data)."""

from __future__ import annotations

from typing import Any

from optimizer.errors import CliError
from optimizer.judge import Judge
from optimizer.optimize import device_of, preload
from optimizer.scene_ref import SceneRef
from optimizer.session import (
    SimulatorOptions,
    check_space_matches,
    load_space_file,
    open_simulator,
)
from optimizer.tasks.factory import make_task


def evaluate(ref: SceneRef, params_path: str, test: str | None,
             seeds: int, *, overrides: dict[str, Any], device: str = "auto",
             model: str | None = None,
             simulator: SimulatorOptions | None = None) -> tuple[list[float], str]:
    """(test metric per judge seed, metric name)."""
    if seeds < 1:
        raise CliError(f"--seeds must be at least 1, got {seeds}")
    for flag, value in overrides.items():
        if value is not None and value < 1:
            raise CliError(f"--{flag.replace('_', '-')} must be at least 1")
    dev = device_of(device)
    space = load_space_file(params_path)
    known = ref.known_task()  # read once: a built-in's comes from its scene file
    if known == "classifier" and test:
        raise CliError(f"scene {ref.label!r} has its own test set: drop --test")
    if known != "classifier" and not test:
        raise CliError(f"scene {ref.label!r} needs --test DIR (a folder `autosim render` "
                       "wrote, or your own images/ + masks/ or YOLO labels/)")
    test_set = preload(known, test, "--test")
    with open_simulator(ref, simulator or SimulatorOptions()) as sim:
        check_space_matches(space, sim.space, params_path, ref.label)
        task_name = ref.task_given(sim.defaults)
        protocol = sim.defaults.judge_protocol(task_name)
        if hasattr(sim, "real_set"):
            task = make_task(task_name, sim.classes, None)
            test_data, render = task.to_data(sim.real_set("test", protocol["test_n"]), dev), \
                sim.render
        else:
            if test_set is None:
                test_set = preload(task_name, test, "--test")
            task = make_task(task_name, sim.classes, test_set, model=model, flag="--test")
            height, width = test_set.images.shape[1:3]
            test_data = task.to_data(test_set, dev)

            def render(lat):
                return sim.render(lat, width, height)
        judge = Judge.from_protocol(protocol, overrides=overrides, task=task, space=space,
                                    render=render, test=test_data, device=dev)
        return judge.scores(space, range(seeds)), task.metric_name
