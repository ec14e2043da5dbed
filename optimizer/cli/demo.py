"""`autosim demo`: the quick start on local render servers, a short real run, judged."""

from __future__ import annotations

import argparse
from pathlib import Path

from optimizer.cli.base import Command
from optimizer.cli.options import add_publish_option, add_simulator_options, simulator_options


class DemoCommand(Command):
    name = "demo"
    help = "the quick start: local render servers, a short real run"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
        p.add_argument("--n", type=int, default=48, help="validation images (default 48)")
        p.add_argument("--budget-images", type=int, default=1280,
                       help="images rendered while optimising (default 1280)")
        p.add_argument("--k", type=int, default=16, help="images per iteration (default 16)")
        p.add_argument("--judge-seeds", type=int, default=2,
                       help="fresh models per psi that judge the result (0: skip; default 2)")
        p.add_argument("--judge-train-n", type=int, default=256,
                       help="images each judging model trains on (default 256)")
        p.add_argument("--test-n", type=int, default=96,
                       help="test images rendered from the validation configuration (default 96)")
        p.add_argument("--device", default="auto")
        p.add_argument("--no-progress", dest="progress", action="store_false")
        add_simulator_options(p)
        add_publish_option(p)

    def run(self, args: argparse.Namespace) -> int:
        from optimizer.demo import DemoConfig, run_demo

        return run_demo(DemoConfig(
            out=Path(args.out), seed=args.seed, size=args.size, n=args.n,
            budget_images=args.budget_images, k=args.k, judge_seeds=args.judge_seeds,
            judge_train_n=args.judge_train_n, test_n=args.test_n, device=args.device,
            progress=args.progress, simulator=simulator_options(args), publish=args.publish))
