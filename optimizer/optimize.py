"""`autosim optimize`: assemble simulator, task, validation set and method; run; report."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from optimizer import algorithms
from optimizer.algorithms.base import Context
from optimizer.data import DatasetError, load_image_set
from optimizer.errors import CliError
from optimizer.run import CONFIG, REPORT, Runner, read_metrics, resolve_device
from protocol.space import ParameterSpace

# Per-scene settings that differ from a method's own defaults (chosen on validation data only;
# the toy's 2-D points want bigger batches than 64 px images).
SCENE_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "toy": {"autosimulate": {"k": 64, "epochs": 2, "batch_size": 32, "lr_theta": 1e-2,
                             "hessian": "all"},
            "reinforce": {"m": 64, "batch_size": 32, "lr_theta": 1e-2},
            "bayesopt": {"m": 64, "batch_size": 32, "lr_theta": 1e-2},
            "random": {"m": 64, "batch_size": 32, "lr_theta": 1e-2}},
    "clevr": {"autosimulate": {"epochs": 10, "hessian_subsample": 8, "val_batch": 32,
                               "lr_psi": 0.1}},
    # placement: a YOLO trained from scratch at 64 px scores mAP 0 for its first ~150 steps
    # (batch 8). The black-box methods' fresh model per evaluation gets 160 steps (64 images x
    # 20 epochs) so an evaluation scores above 0; AutoSimulate warms theta up for 15 iterations.
    "placement": {"autosimulate": {"k": 16, "epochs": 5, "lr_theta": 1e-3, "hessian_subsample": 8,
                                   "val_batch": 16, "lr_psi": 0.1, "warmup": 15},
                  "reinforce": {"k": 2, "m": 64, "epochs": 20},
                  "bayesopt": {"m": 64, "epochs": 20}, "random": {"m": 64, "epochs": 20}},
}
# Held fixed unless --fix says otherwise (`--fix none`: optimise everything). The placement
# experiment is the paper's 54-parameter one: only the layout x location x quality categorical
# moves; the hidden validation configuration differs from the start in nothing else.
SCENE_FIXED: dict[str, list[str]] = {"placement": ["object_set", "cluster_*"]}
SCENE_TASKS = {"toy": "classifier", "clevr": "segmentation", "placement": "detection"}
METHOD_OPTIONS = ("approx", "k", "epochs", "batch_size", "lr_theta", "lr_psi", "damping",
                  "cg_iters", "cg_rtol", "hessian", "hessian_subsample", "val_batch", "warmup",
                  "replay", "order", "normalise", "sampling", "active_only", "m", "sigma2",
                  "lr_policy", "ema", "retain", "init_points", "acq", "radius", "log_std_radius")
TOY_VAL_SEED, TOY_TEST_SEED, TOY_VAL_N = 1, 2, 500


def add_method_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("method options (defaults depend on the method and scene)")
    g.add_argument("--approx", choices=("quadratic", "approx_quadratic", "linear", "no_val"),
                   help="Table 1 approximation (autosimulate; default quadratic)")
    g.add_argument("--k", type=int, help="latents rendered per iteration (autosimulate); "
                   "psi samples per policy step (reinforce)")
    g.add_argument("--epochs", type=int, help="fine-tuning epochs per iteration (epsilon)")
    g.add_argument("--batch-size", type=int)
    g.add_argument("--lr-theta", type=float, help="task-model learning rate")
    g.add_argument("--lr-psi", type=float, help="simulator-parameter learning rate")
    g.add_argument("--damping", type=float, help="lambda in (H + lambda I)")
    g.add_argument("--cg-iters", type=int)
    g.add_argument("--cg-rtol", type=float)
    g.add_argument("--hessian", choices=("head", "all"),
                   help="parameters in the local quadratic model: the head only (fast) or all")
    g.add_argument("--hessian-subsample", type=int, help="samples in the Hessian (0 = all K)")
    g.add_argument("--val-batch", type=int, help="validation samples for g_val (0 = all)")
    g.add_argument("--warmup", type=int, help="autosimulate: iterations that fine-tune theta "
                   "before psi moves (default 0; placement 15)")
    g.add_argument("--replay", type=int, help="autosimulate: reuse the samples of the last N "
                   "iterations in the hypergradient, importance-weighted (0 = this step's only)")
    g.add_argument("--order", choices=("paper", "fresh"),
                   help="autosimulate: hypergradient after fine-tuning on the new samples "
                   "(paper, Algorithm 1) or before, on samples theta has not seen (fresh)")
    g.add_argument("--normalise", action="store_true", default=None,
                   help="autosimulate: divide each sample's grad l . v by its gradient norm")
    g.add_argument("--sampling", choices=("iid", "stratified"),
                   help="autosimulate: latents i.i.d. or Latin-hypercube stratified")
    g.add_argument("--active-only", action=argparse.BooleanOptionalAction, default=None,
                   help="autosimulate: drop the score terms of parameters a render does not "
                   "use (the space's active_if; unbiased)")
    g.add_argument("--m", type=int, help="images per objective evaluation (baselines)")
    g.add_argument("--sigma2", type=float, help="REINFORCE policy variance (default 0.05)")
    g.add_argument("--lr-policy", type=float, help="REINFORCE policy learning rate")
    g.add_argument("--ema", type=float, help="REINFORCE baseline: weight on the old average")
    g.add_argument("--retain", action="store_true", default=None,
                   help="REINFORCE: keep and fine-tune the task model instead of from scratch")
    g.add_argument("--init-points", type=int, help="bayesopt: random points before the GP")
    g.add_argument("--acq", choices=("ei", "ucb"), help="bayesopt acquisition function")
    g.add_argument("--radius", type=float, help="bayesopt/random: box half-width around psi0")
    g.add_argument("--log-std-radius", type=float, help="bayesopt/random: the same for log-stds")


def method_options(args: argparse.Namespace, scene: str, method: str) -> dict[str, Any]:
    opts = dict(SCENE_DEFAULTS.get(scene, {}).get(method, {}))
    for key in METHOD_OPTIONS:
        value = getattr(args, key, None)
        if value is not None:
            opts[key] = value
    return opts


def single_thread_for_tiny_models() -> None:
    """The toy's 2-D MLP is far too small to split across threads; with other work on the
    cores, intra-op threads just contend (measured: 10-100x slower on a loaded 2-core box)."""
    import torch

    torch.set_num_threads(1)


@contextlib.contextmanager
def open_scene(config: dict[str, Any], args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """Simulator, task, validation data and render function for a scene."""
    try:
        device = resolve_device(config["device"])
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    scene = config["scene"]
    if scene == "toy":
        from optimizer.simulators.toy import ToySimulator, sample_real
        from optimizer.tasks.classifier import ClassifierTask

        if config.get("val"):
            raise CliError("the toy scene makes its own validation set: drop --val")
        single_thread_for_tiny_models()
        sim = ToySimulator()
        task = ClassifierTask()
        val = task.to_data(sample_real(TOY_VAL_N, np.random.default_rng(TOY_VAL_SEED)), device)
        yield {"sim": sim, "task": task, "val": val, "device": device, "render": sim.render,
               "target": None}
        return
    from optimizer.commands import open_simulator

    if not config.get("val"):
        raise CliError(f"scene {scene!r} needs --val DIR (make one with: autosim render "
                       f"--scene {scene} --n 64 --out DIR)")
    try:  # before any server starts: a bad folder should cost nothing
        val_set = load_scene_folder(scene, config["val"], task_of(config))
    except DatasetError as exc:
        raise CliError(f"--val: {exc}") from exc
    with open_simulator(args, scene, config.get("blend")) as sim:
        task = make_task(scene, sim.classes, config, val_set)
        height, width = val_set.images.shape[1:3]
        val = task.to_data(val_set, device)
        try:
            target = sim.space.preset("validation")
        except Exception:  # noqa: BLE001  (a user's space may have no such preset)
            target = None
        yield {"sim": sim, "task": task, "val": val, "device": device, "target": target,
               "render": lambda latents: sim.render(latents, width, height)}


def task_of(config: dict[str, Any]) -> str:
    """The task model a run trains: the built-in scene's own, or --task for a .blend."""
    return config.get("task") or SCENE_TASKS.get(config["scene"], "segmentation")


def load_scene_folder(scene: str, path: str | Path, task: str | None = None) -> Any:
    """A validation or test folder in the task's format: YOLO images/ + labels/
    (detection: placement) or images/ + masks/; a bad folder raises DatasetError."""
    if (task or SCENE_TASKS.get(scene)) == "detection":
        from optimizer.yolo_data import load_yolo_folder

        return load_yolo_folder(path)
    return load_image_set(path)


def make_task(scene: str, classes: list[str], config: dict[str, Any], val_set: Any):
    """The task model of a rendered scene: UNet segmentation (clevr), YOLO detection
    (placement, or config["task"] for a .blend); the validation set must fit the classes."""
    if (config.get("task") or SCENE_TASKS.get(scene)) == "detection":
        from optimizer.tasks.detection import DetectionTask

        top = max((int(c.max()) for c in val_set.classes if len(c)), default=0)
        if top >= len(classes):
            raise CliError(f"--val: labels hold class {top - 1}, scene {scene!r} has "
                           f"{len(classes) - 1} object classes ({', '.join(classes[1:])})")
        try:
            return DetectionTask(len(classes) - 1, model=config.get("model") or "yolo11n.yaml",
                                 freeze=int(config.get("freeze") or 0), names=classes[1:])
        except (ValueError, FileNotFoundError) as exc:
            raise CliError(str(exc)) from exc
    from optimizer.tasks.segmentation import SegmentationTask

    if int(val_set.masks.max()) >= len(classes):
        raise CliError(f"--val: masks hold class {int(val_set.masks.max())}, scene {scene!r} "
                       f"has classes 0..{len(classes) - 1} ({', '.join(classes)})")
    return SegmentationTask(len(classes))


def run_optimize(config: dict[str, Any], args: argparse.Namespace, *, resume: bool,
                 progress: bool = True) -> dict[str, Any]:
    from optimizer.report import write_report

    out = Path(config["out"])
    with open_scene(config, args) as s:
        sim = s["sim"]
        space = sim.space
        if hasattr(sim, "metric_name"):  # render servers show it next to the metric
            sim.metric_name = s["task"].metric_name
        if config.get("params"):
            from optimizer.commands import load_space_file

            space = load_space_file(config["params"])
            if space.names != sim.space.names:
                raise CliError(f"{config['params']}: parameters {space.names} do not match "
                               f"scene {config['scene']!r}")
            sim.set_psi(space.psi, {})
        space = fix_parameters(space, config.get("fix") or [])
        ctx = Context(space=space, task=s["task"], val=s["val"], device=s["device"],
                      render_fn=s["render"], publish_fn=sim.set_psi, seed=config["seed"])
        try:
            algo = algorithms.get(config["method"])(ctx, **config["options"])
        except (KeyError, ValueError) as exc:
            raise CliError(str(exc).strip("'\"")) from exc
        if algo.images_per_step > config["budget_images"]:
            raise CliError(f"--budget-images {config['budget_images']} is less than one step of "
                           f"{config['method']} ({algo.images_per_step} images)")
        runner = Runner(algo, out, config["budget_images"], target=s["target"], progress=progress)
        if resume and not runner.resume():
            raise CliError(f"--resume {out}: no checkpoint.pt there to resume from")
        start_space = space
        with _publisher(args, config, s["task"].metric_name) as pub:
            if pub is not None:
                runner.on_iteration = pub.hook(algo, config["budget_images"])
            runner.run()
        records = read_metrics(out)
        write_report(records, algo.space, out / REPORT, metric_name=s["task"].metric_name,
                     target=s["target"], title=f"{config['method']} on {config['scene']}")
        if config["scene"] == "placement":
            from optimizer.report import write_placement_report

            write_placement_report(start_space, algo.space, s["target"],
                                   out / "placement_distribution.png")
        return {"records": records, "start": start_space, "end": algo.space,
                "target": s["target"], "metric_name": s["task"].metric_name}


@contextlib.contextmanager
def _publisher(args: argparse.Namespace, config: dict[str, Any],
               metric_name: str) -> Iterator[Any]:
    """The --publish PUB socket for a watcher (optimizer/publish.py), else None."""
    endpoint = getattr(args, "publish", None)
    if not endpoint:
        yield None
        return
    from optimizer.publish import Publisher

    with Publisher(endpoint, run=Path(config["out"]).name, scene=config["scene"],
                   metric_name=metric_name, curve=getattr(args, "curve", None)) as pub:
        print(f"publishing the run to watchers on {pub.endpoint}", flush=True)
        yield pub


def fix_parameters(space: ParameterSpace, patterns: list[str]) -> ParameterSpace:
    """Hold parameters whose names match any glob pattern fixed (not optimised); the pattern
    "none" fixes nothing (it overrides a scene's SCENE_FIXED)."""
    import fnmatch

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


def scene_fix(scene: str, patterns: list[str]) -> list[str]:
    """--fix patterns as given, else the scene's default ones."""
    return list(patterns) if patterns else list(SCENE_FIXED.get(scene, []))


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    if args.budget_images < 1:
        raise CliError(f"--budget-images must be at least 1, got {args.budget_images}")
    from optimizer.commands import BLEND, blend_path

    blend = blend_path(args)
    if blend:
        if args.task == "classifier":
            raise CliError("--blend renders images: --task segmentation or detection")
        scene = BLEND
    elif args.scene not in SCENE_TASKS:
        raise CliError(f"unknown scene {args.scene!r} for optimize; known: "
                       f"{', '.join(SCENE_TASKS)}")
    elif args.task and args.task != SCENE_TASKS[args.scene]:
        raise CliError(f"scene {args.scene!r} trains a {SCENE_TASKS[args.scene]} model, "
                       f"not --task {args.task}")
    if args.method not in algorithms.REGISTRY:
        raise CliError(f"unknown method {args.method!r}; known: "
                       f"{', '.join(sorted(algorithms.REGISTRY))}")
    scene = BLEND if blend else args.scene
    options = method_options(args, scene, args.method)
    return {"scene": scene, "blend": blend, "task": args.task if blend else None,
            "method": args.method, "options": options,
            "val": str(Path(args.val).resolve()) if args.val else None, "seed": args.seed,
            "budget_images": args.budget_images, "device": args.device, "out": args.out,
            "params": args.params, "fix": scene_fix(scene, args.fix), "model": args.model,
            "freeze": args.freeze}


def cmd_optimize(args: argparse.Namespace) -> int:
    from optimizer.publish import check

    check(getattr(args, "publish", None), getattr(args, "curve", None))
    if args.resume:
        path = Path(args.resume) / CONFIG
        try:
            config = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CliError(f"--resume {args.resume}: cannot read {CONFIG} ({exc})") from exc
        config["out"] = args.resume
        if args.budget_images:
            config["budget_images"] = args.budget_images
    else:
        if not args.out:
            raise CliError("--out RUN_DIR is required (or --resume RUN_DIR)")
        config = config_from_args(args)
        out = Path(config["out"])
        if (out / CONFIG).exists():
            raise CliError(f"{out} already holds a run: use --resume {out} or another --out")
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG).write_text(json.dumps(config, indent=1))
    result = run_optimize(config, args, resume=bool(args.resume),
                          progress=getattr(args, "progress", True))
    print_summary(result, Path(config["out"]))
    return 0


def categorical_agreement(start: ParameterSpace, end: ParameterSpace,
                          target: ParameterSpace) -> list[dict[str, Any]]:
    """Per optimised categorical that the target sets apart from the start: the probability
    on the choices the target favours (those above uniform) and the total-variation distance
    to the target's probabilities, at the start and the end."""
    rows = []
    for p_start, p_end, p_target in zip(start.params, end.params, target.params):
        if p_start.kind != "categorical" or p_start.fixed:
            continue
        q0, q1, qt = (np.asarray(list(p.summary()["probs"].values()))
                      for p in (p_start, p_end, p_target))
        if np.allclose(q0, qt, atol=1e-6):
            continue
        favoured = qt > 1.0 / len(qt) + 1e-9
        rows.append({"name": p_start.name, "favoured": int(favoured.sum()),
                     "mass_start": float(q0[favoured].sum()),
                     "mass_end": float(q1[favoured].sum()),
                     "mass_target": float(qt[favoured].sum()),
                     "tv_start": float(0.5 * np.abs(q0 - qt).sum()),
                     "tv_end": float(0.5 * np.abs(q1 - qt).sum())})
    return rows


def agreement_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for r in rows:
        n = r["favoured"]
        lines.append(f"{r['name']}: P(the {n} choice{'s' if n != 1 else ''} the validation "
                     f"configuration favours) {r['mass_start']:.3f} -> {r['mass_end']:.3f} "
                     f"(validation {r['mass_target']:.3f}); total variation to it "
                     f"{r['tv_start']:.3f} -> {r['tv_end']:.3f}")
    return lines


def print_summary(result: dict[str, Any], out: Path) -> None:
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
