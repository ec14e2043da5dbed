"""`autosim evaluate`: the judge on its own, for any parameter space and test folder."""

from __future__ import annotations

import argparse

import numpy as np

from optimizer.data import DatasetError
from optimizer.errors import CliError
from optimizer.judge import EVAL, Judge, mean_std
from optimizer.run import resolve_device


def cmd_evaluate(args: argparse.Namespace) -> int:
    from optimizer.commands import BLEND, blend_path, load_space_file

    if blend_path(args):
        if args.task not in (None, "segmentation", "detection"):
            raise CliError("--blend renders images: --task segmentation or detection")
        args.scene = BLEND
    elif args.scene not in EVAL:
        raise CliError(f"unknown scene {args.scene!r}; known: {', '.join(EVAL)}")
    if args.seeds < 1:
        raise CliError(f"--seeds must be at least 1, got {args.seeds}")
    for flag in ("train_n", "epochs"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise CliError(f"--{flag.replace('_', '-')} must be at least 1")
    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    space = load_space_file(args.params)
    overrides = {"train_n": args.train_n, "epochs": args.epochs}
    run = _evaluate_toy if args.scene == "toy" else _evaluate_rendered
    scores, metric = run(args, space, overrides, device)
    mean, std = mean_std(scores)
    print(f"test {metric}: {mean:.4f} ± {std:.4f} over {len(scores)} judge seed(s) "
          f"({', '.join(f'{s:.4f}' for s in scores)})")
    return 0


def _check_matches(space, scene_space, path: str, scene: str) -> None:
    if space.names != scene_space.names:
        raise CliError(f"{path}: parameters {space.names} do not match scene {scene!r}")


def _evaluate_toy(args, space, overrides, device) -> tuple[list[float], str]:
    from optimizer.optimize import TOY_TEST_SEED, single_thread_for_tiny_models
    from optimizer.simulators.toy import ToySimulator, sample_real
    from optimizer.tasks.classifier import ClassifierTask

    if args.test:
        raise CliError("the toy scene has its own test set: drop --test")
    single_thread_for_tiny_models()
    sim = ToySimulator()
    _check_matches(space, sim.space, args.params, "toy")
    task = ClassifierTask()
    test = task.to_data(sample_real(EVAL["toy"]["test_n"], np.random.default_rng(TOY_TEST_SEED)),
                        device)
    judge = Judge.for_scene("toy", overrides=overrides, task=task, space=space,
                            render=sim.render, test=test, device=device)
    return judge.scores(space, range(args.seeds)), task.metric_name


def _evaluate_rendered(args, space, overrides, device) -> tuple[list[float], str]:
    from optimizer.commands import open_simulator
    from optimizer.optimize import load_scene_folder, make_task

    if not args.test:
        raise CliError(f"scene {args.scene!r} needs --test DIR (a folder `autosim render` "
                       "wrote, or your own images/ + masks/ or YOLO labels/)")
    try:
        test_set = load_scene_folder(args.scene, args.test, args.task)
    except DatasetError as exc:
        raise CliError(f"--test: {exc}") from exc
    height, width = test_set.images.shape[1:3]
    with open_simulator(args, args.scene) as sim:
        _check_matches(space, sim.space, args.params, args.scene)
        task = make_task(args.scene, sim.classes, {"model": args.model, "task": args.task},
                         test_set)
        judge = Judge.for_scene(args.scene, overrides=overrides, task=task, space=space,
                                eval_task=args.task,
                                render=lambda lat: sim.render(lat, width, height),
                                test=task.to_data(test_set, device), device=device)
        return judge.scores(space, range(args.seeds)), task.metric_name
