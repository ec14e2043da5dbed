"""`autosim demo`: the README's main job on a fresh machine, with nothing else running."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from optimizer.commands import open_simulator, render_dataset


def run_demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    print(f"autosim demo: starting {args.local_servers if not args.server else 0} local bpy "
          f"render server(s) for the clevr scene ...", flush=True)
    with open_simulator(args, "clevr") as sim:
        print(f"  connected: Blender {sim.blender}, scene {sim.scene}, "
              f"psi has {int(sim.space.free_mask.sum())} free parameters", flush=True)
        target = sim.space.preset("validation")
        sets = {"validation": target, "start": sim.space}
        summaries = {}
        for name, space in sets.items():
            summaries[name] = render_dataset(sim, space, args.n, args.seed, args.size, out / name)
            s = summaries[name]
            print(f"  rendered {s['n']} {name} images ({args.size} px) in {s['wall_s']:.1f} s "
                  f"({s['images_per_s']:.1f} images/s) -> {out / name}", flush=True)
    print("  class pixel fractions (background, " + ", ".join(sim.classes[1:]) + "):")
    for name, s in summaries.items():
        print(f"    {name:10s} " + " ".join(f"{f:.3f}" for f in s["class_fraction"]))
    gap = np.abs(target.psi - sim.space.psi)
    print(f"  start psi differs from the validation configuration by {gap.sum():.2f} "
          f"(L1 over {len(gap)} entries): that gap is what the optimizer learns to close.")
    return 0
