"""`autosim demo`: the README's main job on a fresh machine, with nothing else running.

Renders a validation set from the clevr example's shipped validation configuration, then runs
AutoSimulate from the default psi on local bpy render servers and prints where psi and the
validation mIoU started and ended. Its settings are the example's own (clevr.scene.json):
object layout and colours are held fixed (with a validation set this small they are barely
identifiable, while lights, render quality, material and object count are what separates the
two distributions).

It ends with what the learned distribution is for: the judge (optimizer.judge) trains a fresh
UNet on images from the start psi, from the learned psi and from the validation configuration
itself and scores each on a test set rendered apart from the validation set. The demo uses
`autosim optimize`'s default approximation (quadratic); it used `linear` until that was found
to be chosen on the shipped configuration alone: on a hidden clevr configuration a fresh
model on linear's psi scored 0.148 test mIoU against the start's 0.18 and quadratic's 0.246
(issue 10; docs/benchmarks.md has the held-out comparison).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

import numpy as np

from optimizer.dataset_render import render_dataset
from optimizer.errors import CliError
from optimizer.optimize import run_optimize
from optimizer.run import CONFIG
from optimizer.run_config import RunConfig
from optimizer.scene_ref import SceneRef
from optimizer.session import SimulatorOptions
from optimizer.simulators.local_servers import LocalServers
from optimizer.simulators.remote import RemoteSimulator
from protocol.space import ParameterSpace

SCENE = "clevr"


@dataclasses.dataclass
class DemoConfig:
    out: Path
    seed: int = 0
    size: int = 64
    n: int = 48
    budget_images: int = 1280
    k: int = 16
    judge_seeds: int = 2
    judge_train_n: int = 256
    test_n: int = 96
    device: str = "auto"
    progress: bool = True
    simulator: SimulatorOptions = dataclasses.field(default_factory=SimulatorOptions)
    publish: str | None = None


def _describe(space: ParameterSpace, name: str) -> str:
    s = space.params[space.names.index(name)].summary()
    if "mean" in s:
        return f"{s['mean'][0]:.2f}±{s['std'][0]:.2f}"
    probs = s.get("probs", {})
    top = max(probs, key=probs.get)
    return f"P({top})={probs[top]:.2f}"


def run_demo(cfg: DemoConfig) -> int:
    out = Path(cfg.out)
    run_dir = out / "run"
    if (run_dir / CONFIG).exists():
        raise CliError(f"{run_dir} already holds a demo run: pass another --out")
    print(f"autosim demo: AutoSimulate (quadratic approximation) on the {SCENE} example "
          f"(segmentation, UNet, mIoU)", flush=True)
    opts = cfg.simulator
    if opts.listen:
        raise CliError("demo takes --server or local servers, not --listen (use "
                       "`autosim optimize --listen`)")
    if opts.max_renders:
        raise CliError("demo does not recycle its servers: drop --max-renders (use "
                       "`autosim optimize --max-renders N`)")
    from optimizer.publish import check

    check(cfg.publish, opts.curve)  # before any server starts
    defaults = SceneRef(SCENE).defaults()
    servers = contextlib.nullcontext(list(opts.server)) if opts.server else LocalServers(
        SCENE, opts.local_servers, threads=opts.threads, curve=opts.curve,
        log=lambda msg: print(f"  {msg}", flush=True))
    with servers as endpoints:
        with RemoteSimulator(endpoints, timeout_s=opts.timeout, curve=opts.curve) as sim:
            print(f"  render server(s): Blender {sim.blender} at {', '.join(endpoints)}",
                  flush=True)
            target = sim.space.preset("validation")
            summary = render_dataset(sim, target, cfg.n, 10_000 + cfg.seed, cfg.size,
                                     out / "val", progress=cfg.progress)
            print(f"  rendered a validation set of {cfg.n} images from the validation "
                  f"configuration ({summary['images_per_s']:.1f} images/s) -> {out / 'val'}",
                  flush=True)
            start_space = sim.space
        config = RunConfig(
            scene=SCENE, method="autosimulate",
            options={**defaults.method_options("autosimulate"), "k": cfg.k},
            budget_images=cfg.budget_images, out=str(run_dir),
            val=str((out / "val").resolve()), seed=cfg.seed, device=cfg.device,
            fix=list(defaults.fixed), simulator=opts.replace(server=tuple(endpoints)))
        config.save()
        print(f"  optimising psi for {cfg.budget_images} rendered images (K={cfg.k} per "
              f"iteration; held fixed: {', '.join(defaults.fixed)}) ...", flush=True)
        result = run_optimize(config, resume=False, progress=cfg.progress,
                              publish=cfg.publish)
        _print_outcome(result, start_space, target, run_dir)
        if cfg.judge_seeds:
            with RemoteSimulator(endpoints, timeout_s=opts.timeout, curve=opts.curve) as sim:
                _judge_outcome(sim, cfg, out, start_space, result["end"], target)
    return 0


def _judge_outcome(sim: RemoteSimulator, cfg: DemoConfig, out: Path,
                   start: ParameterSpace, end: ParameterSpace, target: ParameterSpace) -> None:
    """The real gain: a fresh model's test mIoU for the start, learned and target psi."""
    from optimizer.data import load_image_set
    from optimizer.judge import Judge, gap_closed, mean_std
    from optimizer.optimize import device_of
    from optimizer.tasks.factory import make_task

    test_set = out / "test"
    render_dataset(sim, target, cfg.test_n, 20_000 + cfg.seed, cfg.size, test_set)
    test = load_image_set(test_set)
    task_name = sim.defaults.task_or(None)
    task = make_task(task_name, sim.classes, test, flag="test set")
    device = device_of(cfg.device)
    judge = Judge.from_protocol(sim.defaults.judge_protocol(task_name),
                                overrides={"train_n": cfg.judge_train_n}, task=task,
                                space=start,
                                render=lambda lat: sim.render(lat, cfg.size, cfg.size),
                                test=task.to_data(test, device), device=device)
    seeds = range(cfg.judge_seeds)
    print(f"\n  judging: a fresh UNet trained on {judge.train_n} images from each psi, test "
          f"mIoU on {cfg.test_n} new images of the validation configuration "
          f"({cfg.judge_seeds} seed(s)) ...", flush=True)
    scores = {name: mean_std(judge.scores(space, seeds))
              for name, space in (("start", start), ("learned", end), ("validation", target))}
    for name, (mean, std) in scores.items():
        print(f"  test mIoU, {name + ' psi':15s} {mean:.3f} ± {std:.3f}")
    gap = gap_closed(scores["learned"][0], scores["start"][0], scores["validation"][0])
    print(f"  gap closed (learned - start) / (validation - start): {gap:.2f}")
    (out / "judged.json").write_text(json.dumps(
        {name: {"mean": m, "std": sd} for name, (m, sd) in scores.items()} | {"gap": gap},
        indent=1))


def _print_outcome(result, start: ParameterSpace, target: ParameterSpace, run_dir: Path) -> None:
    records = result["records"]
    end: ParameterSpace = result["end"]
    metrics = [r["val_metric"] for r in records]
    head, tail = np.mean(metrics[:3]), np.mean(metrics[-3:])
    print(f"\n  validation mIoU: {head:.3f} (first 3 iterations) -> {tail:.3f} (last 3), "
          f"best {max(metrics):.3f}; {records[-1]['images_rendered']} images, "
          f"{records[-1]['wall_s']:.0f} s")
    print(f"  {'parameter':12s} {'start':>14s} {'end':>14s} {'validation':>14s}")
    free = end.free_mask
    for name in [p.name for p in end.params if not p.fixed]:
        print(f"  {name:12s} {_describe(start, name):>14s} {_describe(end, name):>14s} "
              f"{_describe(target, name):>14s}")
    d0 = np.linalg.norm((start.psi - target.psi)[free])
    d1 = np.linalg.norm((end.psi - target.psi)[free])
    print(f"  distance of the optimised psi to the validation configuration: {d0:.2f} -> "
          f"{d1:.2f}")
    print(f"  report: {run_dir / 'report.png'}  metrics: {run_dir / 'metrics.jsonl'}")
