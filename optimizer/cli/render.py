"""`autosim render`: a dataset folder from a parameter space."""

from __future__ import annotations

import argparse
from pathlib import Path

from optimizer.cli.base import Command
from optimizer.cli.options import add_simulator_options, scene_ref, simulator_options
from optimizer.errors import CliError
from optimizer.session import load_space_file, open_simulator
from protocol.space import ParameterSpace, SpaceError


def target_space(default: ParameterSpace, params: str | None,
                 preset: str | None) -> ParameterSpace:
    """--params (else the scene's space) at --preset: 'validation' by default where the
    scene's own space has one, 'none' for the space's own psi."""
    space = load_space_file(params) if params else default
    if preset is None:
        preset = "validation" if not params and "validation" in space.presets else None
    if preset and preset != "none":
        try:
            space = space.preset(preset)
        except SpaceError as exc:
            raise CliError(str(exc)) from exc
    return space


class RenderCommand(Command):
    name = "render"
    help = "render a dataset folder from a parameter space"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--scene", default="clevr", help="a built-in example scene")
        p.add_argument("--blend", help="a .blend with autosim bindings (instead of --scene)")
        p.add_argument("--params", help="parameter-space JSON (default: the scene's own)")
        p.add_argument("--preset", default=None,
                       help="a preset of the space, e.g. 'validation' (the default without "
                       "--params); 'none' for the space's own psi")
        p.add_argument("--n", type=int, required=True, help="number of images")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--size", type=int, default=64, help="image side in pixels")
        p.add_argument("--out", required=True, help="dataset folder to write")
        p.add_argument("--format", choices=("autosim", "yolo", "coco"), default="autosim",
                       help="autosim: images, masks, YOLO labels, items.jsonl, data.yaml; "
                       "yolo: the same without masks (what `yolo train data=` reads); "
                       "coco: images + annotations.json (boxes, RLE instance masks)")
        p.add_argument("--resume", action="store_true",
                       help="continue an interrupted render in --out (same settings)")
        p.add_argument("--val-fraction", type=float, default=0.0, metavar="F",
                       help="put the last F of the items in OUT/val, the rest in OUT/train")
        p.add_argument("--chunk", type=int, default=16,
                       help="images per request (several are in flight per server)")
        p.add_argument("--no-progress", dest="progress", action="store_false",
                       help="no progress bar")
        add_simulator_options(p)

    def run(self, args: argparse.Namespace) -> int:
        from optimizer.dataset_render import render_dataset

        if args.n < 1:
            raise CliError(f"--n must be at least 1, got {args.n}")
        if args.chunk < 1:
            raise CliError(f"--chunk must be at least 1, got {args.chunk}")
        if not 8 <= args.size <= 2048:
            raise CliError(f"--size must be in [8, 2048], got {args.size}")
        ref = scene_ref(args, rendered=True)
        with open_simulator(ref, simulator_options(args)) as sim:
            space = target_space(sim.space, args.params, args.preset)
            if space.psi_dim != sim.space.psi_dim:
                raise CliError(f"{args.params}: space does not match scene {sim.scene!r}")
            summary = render_dataset(sim, space, args.n, args.seed, args.size, Path(args.out),
                                     fmt=args.format, resume=args.resume,
                                     progress=args.progress, val_fraction=args.val_fraction,
                                     chunk=args.chunk, manifest=True)
        resumed = (f", {summary['resumed_from']} were already there"
                   if summary["resumed_from"] else "")
        print(f"rendered {summary['rendered']} images of {sim.scene} to {args.out}{resumed} "
              f"({summary['images_per_s']:.1f} images/s)")
        return 0
