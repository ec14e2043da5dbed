"""`autosim evaluate`: judge a parameter space."""

from __future__ import annotations

import argparse

from optimizer.cli.base import Command
from optimizer.cli.options import (
    add_scene_options,
    add_simulator_options,
    scene_ref,
    simulator_options,
)


class EvaluateCommand(Command):
    name = "evaluate"
    help = ("judge a parameter space: a fresh model trained on images from it, scored on a "
            "test folder")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        add_scene_options(p, "clevr", tasks=("segmentation", "detection"),
                          what="clevr, placement or toy")
        p.add_argument("--params", required=True, help="parameter-space JSON "
                       "(final_space.json)")
        p.add_argument("--test", help="test folder in the formats --val accepts (the toy makes "
                       "its own)")
        p.add_argument("--train-n", type=int, help="images the fresh model trains on")
        p.add_argument("--epochs", type=int, help="epochs of the fresh model")
        p.add_argument("--seeds", type=int, default=3, help="judge seeds (default 3)")
        p.add_argument("--model", help="detection: the YOLO model yaml (default yolo11n.yaml)")
        p.add_argument("--device", default="auto")
        add_simulator_options(p)

    def run(self, args: argparse.Namespace) -> int:
        from optimizer.evaluate import evaluate
        from optimizer.judge import mean_std

        ref = scene_ref(args)
        scores, metric = evaluate(
            ref, args.params, args.test, args.seeds,
            overrides={"train_n": args.train_n, "epochs": args.epochs}, device=args.device,
            model=args.model, simulator=simulator_options(args))
        mean, std = mean_std(scores)
        print(f"test {metric}: {mean:.4f} ± {std:.4f} over {len(scores)} judge seed(s) "
              f"({', '.join(f'{s:.4f}' for s in scores)})")
        return 0
