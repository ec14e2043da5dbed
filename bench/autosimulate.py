"""AutoSimulate benchmark: hypergradient overhead, and start/end metrics on the toy and clevr.

    python bench/autosimulate.py [--device auto] [--iters 12] [--toy-budget 3200]
                                 [--clevr-budget 1280] [--skip-runs]

1. Overhead: per iteration, time of CG + HVPs + score term (hyper_s) divided by that
   iteration's fine-tuning time (fine_tune_s), at the clevr defaults, on real renders (rendered
   once through a local bpy server, then replayed so rendering is not in either number). Rows
   for every approximation and for the Hessian over the head vs all parameters. Target <= 0.25
   for the default (quadratic, head).
2. Runs: `autosim optimize` on the toy and on clevr (local render servers): validation metric
   at the start and the end, and the images it took to get within 1 point (0.01) of the end
   value (end = mean of the last 3 iterations).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="autosim-bench-"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from blender_addon.scenes import defaults as scene_defaults  # noqa: E402
from optimizer.algorithms import Context, get  # noqa: E402
from optimizer.run import resolve_device  # noqa: E402
from optimizer.simulators.local_servers import LocalServers  # noqa: E402
from optimizer.simulators.remote import RemoteSimulator  # noqa: E402
from optimizer.tasks.segmentation import SegmentationTask  # noqa: E402

TARGET = 0.25


def replayed_overhead(scene: str, make_task, defaults: dict, variants: list[dict],
                      device: torch.device, iters: int, threads: int,
                      k: int = 16, size: int = 64) -> list[dict]:
    """Per variant, median fine-tune s, hypergradient s and their ratio over iterations 3..,
    on real renders made once and replayed, so rendering is in neither number. A variant is
    a dict of autosimulate options plus optional task keys ("model", "freeze")."""
    with LocalServers(scene, 1, threads=threads) as endpoints, \
            RemoteSimulator(endpoints) as sim:
        rng = np.random.default_rng(0)
        val_batch = sim.render(sim.space.preset("validation").sample(48, rng), size, size)
        batches = [sim.render(sim.space.sample(k, rng), size, size) for _ in range(iters)]
        space = sim.space
    rows = []
    for variant in variants:
        task_keys = {key: variant[key] for key in ("model", "freeze") if key in variant}
        task = make_task(**task_keys)
        val = task.to_data(val_batch, device)
        replay = iter(batches)
        ctx = Context(space=space, task=task, val=val, device=device,
                      render_fn=lambda _lat, it=replay: next(it), publish_fn=lambda p, m: None)
        opts = {**defaults, "k": k,
                **{key: v for key, v in variant.items() if key not in task_keys}}
        algo = get("autosimulate")(ctx, **opts)
        records = []
        for _ in range(iters):
            started = time.perf_counter()
            records.append({**algo.step(), "iteration_s": time.perf_counter() - started})
        records = records[2:]  # the first two warm up
        rows.append({
            **variant,
            "iteration_s": statistics.median(r["iteration_s"] for r in records),
            "fine_tune_s": statistics.median(r["fine_tune_s"] for r in records),
            "hyper_s": statistics.median(r["hyper_s"] for r in records),
            "ratio": statistics.median(r["overhead"] for r in records),
            "cg_iters": statistics.median(r.get("cg_iterations", 0) for r in records),
            "negative_curvature": statistics.fmean(bool(r.get("cg_negative_curvature"))
                                                   for r in records),
        })
    return rows


def overhead_table(device: torch.device, iters: int, threads: int) -> list[dict]:
    variants = [{"approx": "quadratic", "hessian": "head"},
                {"approx": "quadratic", "hessian": "all"},
                {"approx": "approx_quadratic", "hessian": "head"},
                {"approx": "linear", "hessian": "head"}, {"approx": "no_val", "hessian": "head"}]
    own = scene_defaults("clevr").method_options("autosimulate")
    return replayed_overhead("clevr", lambda: SegmentationTask(4), own, variants, device, iters,
                             threads)


def _images_to_within(records: list[dict], end: float, tol: float = 0.01) -> int | None:
    for r in records:
        if r["val_metric"] >= end - tol:
            return r["images_rendered"]
    return None


def run_scene(scene: str, budget: int, workdir: Path, device: str) -> dict:
    cli = [sys.executable, "-m", "optimizer.cli"]
    args = ["optimize", "--scene", scene, "--budget-images", str(budget), "--device", device,
            "--out", str(workdir / f"{scene}-run")]
    if scene == "clevr":
        val = workdir / "clevr-val"
        subprocess.run([*cli, "render", "--scene", "clevr", "--n", "48", "--seed", "10000",
                        "--out", str(val)], check=True, capture_output=True)
        args += ["--val", str(val)]
    subprocess.run([*cli, *args], check=True, capture_output=True, text=True)
    records = [json.loads(line) for line in
               (workdir / f"{scene}-run" / "metrics.jsonl").read_text().splitlines()]
    metrics = [r["val_metric"] for r in records]
    end = float(np.mean(metrics[-3:]))
    return {"scene": scene, "start": metrics[0], "end": end, "best": max(metrics),
            "images": records[-1]["images_rendered"], "wall_s": records[-1]["wall_s"],
            "images_to_within_1pt": _images_to_within(records, end)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--iters", type=int, default=12)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--toy-budget", type=int, default=3200)
    p.add_argument("--clevr-budget", type=int, default=1280)
    p.add_argument("--skip-runs", action="store_true", help="only the overhead table")
    args = p.parse_args()
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {device} ({name}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads)")
    print("\n1. hypergradient overhead per iteration, clevr defaults (K=16, epsilon=10, 64 px), "
          "median of iterations 3..")
    print(f"{'approx':18s} {'hessian':8s} {'fine-tune s':>11s} {'hyper s':>8s} {'ratio':>6s} "
          f"{'CG it':>5s}")
    for row in overhead_table(device, args.iters, args.threads):
        flag = ""
        if row["approx"] == "quadratic" and row["hessian"] == "head":
            flag = "  (default) " + ("PASS" if row["ratio"] <= TARGET else "MISS") + \
                f" target <= {TARGET}"
        print(f"{row['approx']:18s} {row['hessian']:8s} {row['fine_tune_s']:11.3f} "
              f"{row['hyper_s']:8.3f} {row['ratio']:6.2f} {row['cg_iters']:5.0f}{flag}")
    if args.skip_runs:
        return 0
    print("\n2. AutoSimulate (quadratic) runs: validation metric start -> end")
    print(f"{'scene':6s} {'start':>6s} {'end':>6s} {'best':>6s} {'images':>7s} {'wall s':>7s} "
          f"{'images to within 1 pt of end':>29s}")
    with tempfile.TemporaryDirectory(prefix="autosim-bench-") as tmp:
        for scene, budget in (("toy", args.toy_budget), ("clevr", args.clevr_budget)):
            r = run_scene(scene, budget, Path(tmp), args.device)
            print(f"{r['scene']:6s} {r['start']:6.3f} {r['end']:6.3f} {r['best']:6.3f} "
                  f"{r['images']:7d} {r['wall_s']:7.0f} {str(r['images_to_within_1pt']):>29s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
