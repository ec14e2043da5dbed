"""The exact-expectation hypergradient against the judge's own ranking, on clevr (issue 10, 3).

Two small cases, everything else held at the start psi:
- `material` (rubber / metal, a categorical): one set of latents per choice, weighted by the
  exact probabilities, gives the expectation of eqs. 11-13 with no sampling of the choice;
- `key_light` (a normal): Gauss-Hermite nodes with their exact weights do the same.
The judge then trains a fresh UNet only on each choice / each grid value and scores it on a
test set from the target configuration (the shipped validation values of that parameter). If
the exact hypergradient's descent direction agrees with the judge's ranking while K = 16
samples of it do not, the failure is estimator variance; if the exact one disagrees, it is the
one-step local model (or theta far from theta*).

    python bench/diagnose_clevr.py [--judge-seeds 2] [--draws 20] [--params material,key_light]
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
from optimizer.judge import Judge, mean_std
from optimizer.simulators.local_servers import LocalServers
from optimizer.simulators.remote import RemoteSimulator
from optimizer.tasks.segmentation import SegmentationTask


def only(space, name: str):
    """The space with every parameter but `name` fixed."""
    for other in space.names:
        space = space.with_fixed(other, other != name)
    return space


def hypergrad(task, model, space, sim, latents, weights, val, paired=False):
    data = task.to_data(sim.render(latents, SIZE, SIZE), "cpu")
    partner = torch.ones(space.psi_dim, dtype=torch.bool) if paired else None
    return estimate(task, model, space, data, latents, val, weights=weights,
                    partner=partner)[space.free_mask]


def case(name, space, target, sim, task, judge, model, val, args, rng):
    space = only(space, name)
    lat_sl = space.latent_slices[name]
    base = space.sample(args.per_point, rng)
    if space.params[space.names.index(name)].kind == "categorical":
        probs = np.asarray(list(space.params[space.names.index(name)].summary()["probs"]
                                .values()))
        points = list(range(len(probs)))
        point_w = probs
        labels = list(space.params[space.names.index(name)].choices)
        fixed_at = [space.with_psi(space.pack_psi({name: {"logits": [
            8.0 if j == c else -8.0 for j in points]}})) for c in points]
    else:
        p = space.params[space.names.index(name)]
        mu, std = p.mean[0], float(np.exp(p.log_std[0]))
        nodes, w = np.polynomial.hermite_e.hermegauss(args.nodes)
        points = list(mu + std * nodes)
        point_w = w / w.sum()
        labels = [f"{x:.2f}" for x in points]
        grid = [mu + std * z for z in (-1.5, 0.0, 1.5, 3.0)]
        fixed_at = [space.with_psi(space.pack_psi({name: {"mean": [g], "log_std": [-3.0]}}))
                    for g in grid]
        labels_judge = [f"{g:.2f}" for g in grid]
    latents, weights = [], []
    for point, pw in zip(points, point_w):
        lat = base.copy()
        lat[:, lat_sl] = point
        latents.append(lat)
        weights.append(np.full(len(lat), pw / len(lat)))
    exact = hypergrad(task, model, space, sim, np.concatenate(latents), np.concatenate(weights),
                      val)
    draws = [hypergrad(task, model, space, sim, space.sample(args.k, rng), None, val)
             for _ in range(args.draws)]
    cos = [cosine(d, exact) for d in draws]
    if space.params[space.names.index(name)].kind == "categorical":  # sampling 'paired'
        pdraws = [hypergrad(task, model, space, sim, space.sample(args.k, rng, paired=True),
                            None, val, paired=True) for _ in range(args.draws)]
        pcos = [cosine(d, exact) for d in pdraws]
    judged = [mean_std(judge.scores(s, range(args.judge_seeds))) for s in fixed_at]
    names = space.psi_labels
    free = [names[i] for i in np.flatnonzero(space.free_mask)]
    print(f"\n## {name}")
    print("exact-expectation hypergradient (descend: psi -= lr * g):",
          ", ".join(f"{n} {g:+.4f}" for n, g in zip(free, exact)))
    print(f"K = {args.k} samples of it: cosine with the exact one {statistics.fmean(cos):.2f} "
          f"± {statistics.stdev(cos):.2f} over {args.draws} draws; same sign on the first "
          f"component in {sum(np.sign(d[0]) == np.sign(exact[0]) for d in draws)}/{args.draws}")
    if space.params[space.names.index(name)].kind == "categorical":
        print(f"K = {args.k} in {args.k // 2} pairs sharing all but {name} (sampling "
              f"'paired'): cosine {statistics.fmean(pcos):.2f} ± {statistics.stdev(pcos):.2f}; "
              f"same sign in {sum(np.sign(d[0]) == np.sign(exact[0]) for d in pdraws)}"
              f"/{args.draws}")
    lj = labels if space.params[space.names.index(name)].kind == "categorical" else labels_judge
    print("judge, trained only on each value (test mIoU on the target's test set):",
          ", ".join(f"{lab} {m:.3f}±{s:.3f}" for lab, (m, s) in zip(lj, judged)))
    print(f"target {name}: {target.unpack_psi()[name]}, start {space.unpack_psi()[name]}")
    return {"exact": exact, "cos": cos, "judged": judged}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--judge-seeds", type=int, default=2)
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--per-point", type=int, default=12)
    ap.add_argument("--nodes", type=int, default=6)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--params", default="material,key_light",
                    help="comma-separated: the parameters to diagnose one at a time (a "
                    "categorical or a one-dimensional normal)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="autosim-diagnose-"))
    with LocalServers("clevr", 1, threads=args.threads) as endpoints, \
            RemoteSimulator(endpoints) as sim:
        start = sim.space
        shipped = start.preset("validation")
        task = SegmentationTask(len(sim.classes))
        names = [n.strip() for n in args.params.split(",") if n.strip()]
        if unknown := [n for n in names if n not in start.names]:
            raise SystemExit(f"diagnose_clevr: unknown parameter(s) {', '.join(unknown)}; "
                             f"known: {', '.join(start.names)}")
        for name in names:
            # the target: the start with only this parameter at its shipped validation value
            target = start.with_psi(start.pack_psi({name: shipped.unpack_psi()[name]}))
            sets = {}
            for kind, n, seed in (("val", 48, 10_000), ("test", 96, 20_000)):
                render_dataset(sim, target, n, seed, SIZE, work / name / kind)
                sets[kind] = task.to_data(load_image_set(work / name / kind), "cpu")
            judge = Judge.from_protocol(sim.defaults.judge_protocol(), task=task, space=start,
                                        test=sets["test"],
                                        render=lambda lat: sim.render(lat, SIZE, SIZE),
                                        device=torch.device("cpu"))
            # theta near theta*(start): the judge's own training on the start distribution
            latents = start.sample(judge.train_n, np.random.default_rng(5))
            data = render_data(task, sim, latents)
            from optimizer.training import train_fresh

            model, _ = train_fresh(task, data, device="cpu",
                                   generator=torch.Generator().manual_seed(0), lr=judge.lr_theta,
                                   epochs=judge.epochs, batch_size=judge.batch_size)
            case(name, start, target, sim, task, judge, model, sets["val"], args,
                 np.random.default_rng(1))


if __name__ == "__main__":
    main()
