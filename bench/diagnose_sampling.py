"""How noisy is each sampling's hypergradient on clevr's whole space (issue 10)?

At the start psi, with every parameter the scene leaves free, theta trained as the judge
trains it: `--draws` hypergradients of K samples under each sampling, against a reference
from `--ref-k` i.i.d. samples (its own noise is printed as a split-half cosine). Per group of
psi entries (the lights and other normals; the choices) it prints the mean cosine with the
reference over draws, and the variance of the entries across draws relative to iid's:

- iid: K i.i.d. latents, the leave-one-out baseline (the defaults);
- choices: K / 2 pairs sharing all but the free choices, the partner the choices' baseline
  (the rest leave the pair out);
- paired (`--sampling paired`): K / 2 pairs sharing only the fixed parameters (the scene's
  layout: objects' places, shapes, colour), everything free drawn per row; the partner is
  the baseline of every entry (a valid one: it is independent of the row's own free draws).

    python bench/diagnose_sampling.py [--threads 1] [--draws 20] [--k 16] [--ref-k 512] [--seed 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from clevr_estimate import SIZE, cosine, estimate, render_data  # bench/, beside this script

from optimizer.data import load_image_set
from optimizer.dataset_render import render_dataset
from optimizer.judge import Judge
from optimizer.optimize import fix_parameters, resolve_fix
from optimizer.simulators.local_servers import LocalServers
from optimizer.simulators.remote import RemoteSimulator
from optimizer.tasks.segmentation import SegmentationTask
from optimizer.training import train_fresh

SAMPLINGS = ("iid", "choices", "paired")


def choice_mask(space) -> np.ndarray:
    """(psi_dim,) the free choices' (categoricals', bernoullis') psi entries."""
    mask = np.zeros(space.psi_dim, dtype=bool)
    for p in space.params:
        if p.kind != "normal" and not p.fixed:
            mask[space.psi_slices[p.name]] = True
    return mask


def draw(space, kind: str, k: int, rng: np.random.Generator) -> np.ndarray:
    if kind != "choices":
        return space.sample(k, rng, paired=kind == "paired")
    lat, fresh = space.sample(k, rng), space.sample(k, rng)
    lat[1::2] = lat[0::2]
    for p in space.params:
        if p.kind != "normal" and not p.fixed:
            cols = space.latent_slices[p.name]
            lat[1::2, cols] = fresh[1::2, cols]
    return lat


def sampled(task, model, space, sim, kind: str, latents: np.ndarray, val) -> np.ndarray:
    data = render_data(task, sim, latents)
    partner = {"iid": None, "choices": torch.as_tensor(choice_mask(space)),
               "paired": torch.ones(space.psi_dim, dtype=torch.bool)}[kind]
    return estimate(task, model, space, data, latents, val, partner=partner,
                    hessian=data.subset(slice(0, 8)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--ref-k", type=int, default=512)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1, help="the draws' seed (theta's stays 0)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="autosim-sampling-"))
    with LocalServers("clevr", 1, threads=args.threads) as endpoints, \
            RemoteSimulator(endpoints) as sim:
        space = fix_parameters(sim.space, resolve_fix(None, sim.defaults))
        task = SegmentationTask(len(sim.classes))
        render_dataset(sim, space.preset("validation"), 48, 10_000, SIZE, work / "val")
        val = task.to_data(load_image_set(work / "val"), "cpu")
        judge = Judge.from_protocol(sim.defaults.judge_protocol(), task=task, space=space,
                                    test=val, render=lambda lat: sim.render(lat, SIZE, SIZE),
                                    device=torch.device("cpu"))
        latents = space.sample(judge.train_n, np.random.default_rng(5))
        data = render_data(task, sim, latents)
        model, _ = train_fresh(task, data, device="cpu", generator=torch.Generator().manual_seed(0),
                               lr=judge.lr_theta, epochs=judge.epochs,
                               batch_size=judge.batch_size)
        rng = np.random.default_rng(args.seed)
        halves = [sampled(task, model, space, sim, "iid", space.sample(args.ref_k // 2, rng),
                           val) for _ in range(2)]
        ref = (halves[0] + halves[1]) / 2
        free = space.free_mask
        groups = {"normals": free & ~choice_mask(space), "choices": free & choice_mask(space)}
        print(f"reference: {args.ref_k} iid samples; its two halves agree at cosine "
              + ", ".join(f"{g} {cosine(halves[0][m], halves[1][m]):.2f}"
                          for g, m in groups.items()))
        est = {kind: np.array([sampled(task, model, space, sim, kind,
                                        draw(space, kind, args.k, rng), val)
                               for _ in range(args.draws)]) for kind in SAMPLINGS}
        base_var = {g: est["iid"][:, m].var(0).sum() for g, m in groups.items()}
        print(f"K = {args.k}, {args.draws} draws each: cosine with the reference (mean ± std), "
              f"variance across draws relative to iid's")
        for kind, e in est.items():
            cells = []
            for g, m in groups.items():
                cos = [cosine(d[m], ref[m]) for d in e]
                cells.append(f"{g} {statistics.fmean(cos):+.2f} ± {statistics.stdev(cos):.2f}, "
                             f"variance {e[:, m].var(0).sum() / base_var[g]:.2f}")
            print(f"  {kind:7s} " + "; ".join(cells))


if __name__ == "__main__":
    main()
