"""Detection benchmark: AutoSimulate's hypergradient overhead with an ultralytics YOLO model.

    python bench/detection.py [--device auto] [--iters 8] [--models yolo11n.yaml,yolo11s.yaml]

At the placement defaults (K=16, epsilon=5, 64 px, 8-sample Hessian, 16-image g_val), on real
placement renders made once and replayed: per row the median fine-tuning time, hypergradient time
(CG + HVPs + score term) and their ratio, and the whole iteration (fine-tune + validation mAP +
hypergradient). Rows: the Hessian over the head only vs all parameters (the speed option),
Table 1's approximations, freezing the backbone (Table 5's knob) and a larger model (Table 6's).
The device and its name are printed first, so a GPU timing records what it ran on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from autosimulate import replayed_overhead  # noqa: E402  (bench/ is on sys.path as a script)

from blender_addon.scenes import classes  # noqa: E402
from blender_addon.scenes import defaults as scene_defaults  # noqa: E402
from optimizer.run import resolve_device  # noqa: E402
from optimizer.tasks.detection import DetectionTask  # noqa: E402

BACKBONE_LAYERS = 10  # yolo11 / yolov8 yamls: model.model[0..9] is the backbone


def variants(models: list[str]) -> list[dict]:
    nano, *larger = models
    rows = [{"model": nano, "approx": "quadratic", "hessian": "head"},
            {"model": nano, "approx": "quadratic", "hessian": "all"},
            {"model": nano, "approx": "approx_quadratic", "hessian": "head"},
            {"model": nano, "approx": "linear", "hessian": "head"},
            {"model": nano, "approx": "quadratic", "hessian": "all", "freeze": BACKBONE_LAYERS}]
    for model in larger:
        rows += [{"model": model, "approx": "quadratic", "hessian": "head"},
                 {"model": model, "approx": "quadratic", "hessian": "all"}]
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--iters", type=int, default=8, help="iterations per row (first 2 discarded)")
    p.add_argument("--threads", type=int, default=0, help="render threads (0 = Blender's)")
    p.add_argument("--models", default="yolo11n.yaml,yolo11s.yaml",
                   help="comma-separated yamls or .pt files; the first is the nano row set")
    args = p.parse_args()
    if args.iters < 3:
        p.error(f"--iters must be at least 3 (the first 2 are discarded), got {args.iters}")
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {device} ({name}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads)")
    names = classes("placement")[1:]

    def make_task(model: str, freeze: int = 0) -> DetectionTask:
        return DetectionTask(len(names), model=model, freeze=freeze, names=names)

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    # time every step: no warm-up
    defaults = {**scene_defaults("placement").method_options("autosimulate"), "warmup": 0}
    rows = replayed_overhead("placement", make_task, defaults, variants(models), device,
                             args.iters, args.threads)
    print(f"\nhypergradient overhead per iteration, placement defaults (K=16, epsilon=5, 64 px), "
          f"median of iterations 3..{args.iters}")
    print(f"{'model':14s} {'freeze':>6s} {'approx':17s} {'hessian':7s} {'fine-tune s':>11s} "
          f"{'hyper s':>8s} {'ratio':>6s} {'CG it':>5s} {'neg.curv.':>9s} {'iteration s':>11s}")
    for r in rows:
        print(f"{Path(r['model']).stem:14s} {r.get('freeze', 0):6d} {r['approx']:17s} "
              f"{r['hessian']:7s} {r['fine_tune_s']:11.3f} {r['hyper_s']:8.3f} "
              f"{r['ratio']:6.2f} {r['cg_iters']:5.0f} {r['negative_curvature']:9.0%} "
              f"{r['iteration_s']:11.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
