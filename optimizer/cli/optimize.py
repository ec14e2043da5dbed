"""`autosim optimize`: learn psi with a method (AutoSimulate by default), or resume a run."""

from __future__ import annotations

import argparse
from pathlib import Path

from optimizer.cli.base import Command
from optimizer.cli.options import (
    add_method_options,
    add_publish_option,
    add_scene_options,
    add_simulator_options,
    method_options,
    scene_ref,
    simulator_options,
)
from optimizer.errors import CliError


class OptimizeCommand(Command):
    name = "optimize"
    help = "learn psi with a method (AutoSimulate by default)"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        add_scene_options(p, "clevr", tasks=("segmentation", "detection", "classifier"),
                          what="clevr (segmentation), placement (YOLO detection), toy (numpy)")
        p.add_argument("--model", help="detection: an ultralytics yaml (default yolo11n.yaml; "
                       "yolov8s.yaml for a larger one) or a local .pt checkpoint to start from")
        p.add_argument("--freeze", type=int, default=0,
                       help="detection: freeze the first N layers of the model")
        p.add_argument("--method", default="autosimulate")
        p.add_argument("--val", help="validation folder: images/ + masks/ (segmentation) or "
                       "images/ + labels/ in YOLO format (detection)")
        p.add_argument("--params", help="parameter-space JSON to start from (default: the "
                       "scene's)")
        p.add_argument("--budget-images", type=int, default=0,
                       help="stop after this many images")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--device", default="auto", help="auto (CUDA if torch sees it), cpu, "
                       "cuda")
        p.add_argument("--out", help="run folder (metrics.jsonl, checkpoint, report.png)")
        p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run (its "
                       "config.json; simulator flags given again replace the saved ones)")
        p.add_argument("--no-progress", dest="progress", action="store_false",
                       help="no progress bar (logs, CI)")
        p.add_argument("--fix", action="append", default=[], metavar="GLOB",
                       help="hold parameters matching this name pattern fixed (repeatable; "
                       "default: the scene's own list, e.g. placement: object_set, cluster_*; "
                       "'none': nothing)")
        add_simulator_options(p)
        add_publish_option(p)
        add_method_options(p)

    def run(self, args: argparse.Namespace) -> int:
        from optimizer.optimize import print_summary, run_optimize
        from optimizer.publish import check
        from optimizer.run import CONFIG
        from optimizer.run_config import RunConfig

        check(args.publish, args.curve)
        if args.resume:
            config = RunConfig.load(args.resume)
            config.simulator = simulator_options(args, config.simulator)
            if args.budget_images:
                config.budget_images = args.budget_images
        else:
            config = self.config(args)
            if (Path(config.out) / CONFIG).exists():
                raise CliError(f"{config.out} already holds a run: use --resume {config.out} "
                               f"or another --out")
            config.save()
        result = run_optimize(config, resume=bool(args.resume), progress=args.progress,
                              publish=args.publish)
        print_summary(result, Path(config.out))
        return 0

    @staticmethod
    def config(args: argparse.Namespace):  # -> RunConfig (imported here: it needs torch)
        from optimizer.run_config import RunConfig

        if not args.out:
            raise CliError("--out RUN_DIR is required (or --resume RUN_DIR)")
        from optimizer import algorithms

        if args.method not in algorithms.REGISTRY:
            raise CliError(f"unknown method {args.method!r}; known: "
                           f"{', '.join(sorted(algorithms.REGISTRY))}")
        ref = scene_ref(args)
        known = ref.defaults()
        return RunConfig(
            scene=ref.scene, blend=ref.blend, task=ref.task, method=args.method,
            options={**known.method_options(args.method), **method_options(args)},
            budget_images=args.budget_images, out=args.out,
            val=str(Path(args.val).resolve()) if args.val else None, seed=args.seed,
            device=args.device, params=args.params,
            fix=list(args.fix) or list(known.fixed), model=args.model, freeze=args.freeze,
            simulator=simulator_options(args))
