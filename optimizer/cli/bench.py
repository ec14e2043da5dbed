"""`autosim bench`: every method side by side on the same targets and budget, judged."""

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

ALL = "autosimulate,approx_quadratic,linear,no_val,reinforce,bayesopt,random"


class BenchCommand(Command):
    name = "bench"
    help = "every method side by side on the same budget"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        add_scene_options(p, "toy", tasks=("segmentation", "detection"),
                          what="toy, clevr or placement")
        p.add_argument("--model", help="detection: the YOLO model yaml (default yolo11n.yaml)")
        p.add_argument("--freeze", type=int, default=0,
                       help="detection: freeze the model's first N layers")
        p.add_argument("--fix", action="append", default=[], metavar="GLOB",
                       help="hold parameters matching this name pattern fixed for every "
                       "method (repeatable; default: the scene's own list; 'none': nothing)")
        for key, what in (("val-n", "validation set size"), ("test-n", "test set size"),
                          ("train-n", "images the judging model trains on"),
                          ("epochs", "epochs of the judging model")):
            p.add_argument(f"--judge-{key}", type=int, help=f"evaluation protocol: {what}")
        p.add_argument("--methods", default=ALL,
                       help="comma-separated method names ('none': only judge the start psi "
                       "and the validation configuration)")
        p.add_argument("--seeds", type=int, help="seeds per method (default: the scene's, "
                       "see --quick)")
        p.add_argument("--budget-images", type=int, help="images per run (default: the "
                       "scene's; toy 30720, clevr and placement 1920)")
        p.add_argument("--quick", action="store_true",
                       help="the scene's small budget: toy 7680 images x 3 seeds, clevr and "
                       "placement 640 images x 2 seeds")
        p.add_argument("--size", type=int, default=64, help="image side for rendered scenes")
        p.add_argument("--device", default="auto")
        p.add_argument("--out", required=True)
        p.add_argument("--combine", nargs="+", metavar="DIR",
                       help="judge nothing: summarise these bench folders (same targets and "
                       "references, e.g. methods run apart) as one bench into --out")
        p.add_argument("--labels", metavar="L1,L2,...",
                       help="with --combine, one label per folder: its methods become "
                       "'method (label)', so one method under two settings pairs run by run")
        p.add_argument("--targets", type=int, default=0, metavar="N",
                       help="draw N hidden target configurations (each moves several free "
                       "parameters away from the start) and render a validation and a test "
                       "set from each; default: the scene's shipped one")
        p.add_argument("--target-seed", type=int, default=0, metavar="S",
                       help="seed of the drawn targets (choose defaults on one, report on "
                       "another)")
        p.add_argument("--val", help="your own validation folder (with --test): the methods "
                       "optimise on it")
        p.add_argument("--test", help="your own test folder (with --val): the judge scores "
                       "on it")
        p.add_argument("--judge-at", default="0.25,0.5,1", metavar="FRACTIONS",
                       help="points of the budget at which each run's psi is judged "
                       "(default 0.25,0.5,1)")
        add_simulator_options(p)
        add_publish_option(p)
        add_method_options(p)  # each method takes the options it has

    def run(self, args: argparse.Namespace) -> int:
        from optimizer.bench import parse_fractions, run_bench, write_results

        if args.labels is not None and not args.combine:
            raise CliError("--labels goes with --combine")
        if args.combine:
            from optimizer.bench_combine import combine

            out = Path(args.out)
            labels = None if args.labels is None else args.labels.split(",")
            write_results(out, combine([Path(d) for d in args.combine], out, labels))
            return 0
        from optimizer.bench_setup import BenchConfig
        from optimizer.publish import check

        check(args.publish, args.curve)
        methods = [m.strip() for m in args.methods.split(",")
                   if m.strip() and m.strip() != "none"]
        cfg = BenchConfig(
            ref=scene_ref(args), methods=methods, out=Path(args.out),
            budget_images=args.budget_images, seeds=args.seeds, quick=args.quick,
            size=args.size, device=args.device, targets=args.targets,
            target_seed=args.target_seed, val=args.val, test=args.test,
            fractions=tuple(parse_fractions(args.judge_at)),
            judge={k: getattr(args, f"judge_{k}") for k in ("val_n", "test_n", "train_n",
                                                            "epochs")},
            fix=list(args.fix), model=args.model, freeze=args.freeze,
            options=method_options(args), simulator=simulator_options(args),
            publish=args.publish)
        run_bench(cfg)
        return 0
