"""Where does the AutoSimulate hypergradient go wrong? A diagnosis on the toy (issue 10, sec. 3).

At the start psi of each drawn hidden target (targets.draw_targets), with theta either trained
to convergence on the start distribution ("warm", theta near theta*(psi)) or after a short
fine-tune from scratch ("cold", what the first iterations of a run see), it compares:

- g_exact: the hypergradient of eqs. 11-13 with K = 16,384 samples (the expectation, up to
  a small error), per approximation (linear: v = g_val; quadratic: CG on H + lambda I);
- g_K: the same estimator with the run's K (64), 20 independent draws;
- g_true: central finite differences of the bilevel objective itself, J(psi) = validation loss
  of theta after fine-tuning it on images from psi (common random numbers: the same base
  draws, reparameterised, and the same data order on both sides of every difference);
- the direction towards the target psi.

Cosines between them separate estimator variance (g_exact right, g_K wrong), the one-step
local model's bias (g_exact vs g_true), and a theta too far from theta*(psi) (cold vs warm).

    python bench/diagnose.py [--targets 5] [--target-seed 1] [--variants | --influence | --robust]
"""

from __future__ import annotations

import argparse
import copy
import statistics

import numpy as np
import torch

from optimizer.hypergrad import CGSettings, hypergradient, score_weighted
from optimizer.simulators.toy import ToySimulator
from optimizer.targets import draw_targets
from optimizer.tasks.classifier import ClassifierTask
from optimizer.training import fit, train_fresh


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else float("nan")


def hypergrad(task, model, space, val, approx: str, k: int, rng, damping=0.1, normalise=False,
              stratified=False, active_only=False, baseline="loo"):
    _, res = estimate(task, model, space, val, approx, k, rng, damping, normalise, stratified,
                      active_only, baseline)
    return res.grad.double().numpy()[space.free_mask]


def estimate(task, model, space, val, approx: str, k: int, rng, damping=0.1, normalise=False,
             stratified=False, active_only=False, baseline="loo"):
    """(score, HypergradResult) of K fresh toy samples at theta = model."""
    sim = ToySimulator(space)
    latents = space.sample(k, rng, stratified=stratified)
    data = task.to_data(sim.render(latents), "cpu")
    score = torch.as_tensor(space.score(latents, active_only=active_only), dtype=torch.float32)
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    res = hypergradient(approx=approx, params=params,
                        per_sample_loss=lambda: task.per_sample_loss(model, data),
                        val_loss=lambda: task.loss(model, val), score=score, baseline=baseline,
                        normalise=normalise, cg=CGSettings(damping=damping, max_iter=20, rtol=1e-4))
    return score, res


def objective(task, model0, space, psi, val, base_rng_seed: int, n=512, epochs=3) -> float:
    """J(psi): validation loss after fine-tuning a copy of model0 on n images from psi."""
    s = space.with_psi(psi)
    latents = s.sample(n, np.random.default_rng(base_rng_seed))  # same base draws: CRN
    data = task.to_data(ToySimulator(s).render(latents), "cpu")
    model = copy.deepcopy(model0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    fit(task, model, opt, data, epochs=epochs, batch_size=32,
        generator=torch.Generator().manual_seed(base_rng_seed))
    model.eval()
    with torch.no_grad():
        return float(task.loss(model, val))


def true_gradient(task, model0, space, val, h=0.05) -> np.ndarray:
    psi = space.psi
    grad = np.zeros(space.psi_dim)
    for i in np.flatnonzero(space.free_mask):
        e = np.zeros_like(psi)
        e[i] = h
        vals = [objective(task, model0, space, psi + sgn * e, val, 7 + r)
                for sgn in (1, -1) for r in range(3)]
        grad[i] = (np.mean(vals[:3]) - np.mean(vals[3:])) / (2 * h)
    return grad[space.free_mask]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", type=int, default=5)
    ap.add_argument("--target-seed", type=int, default=1)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--variants", action="store_true",
                    help="only cos(K, exact) for each estimator variant (sampling x active_only "
                    "x baseline), no finite differences")
    ap.add_argument("--influence", action="store_true",
                    help="only the shape of the per-sample influence grad l_k . v at warm theta "
                    "(per component: kurtosis, R^2 of a linear / quadratic fit in its latent)")
    ap.add_argument("--robust", action="store_true",
                    help="only cos(K, exact) when the influence is winsorised or ranked before "
                    "the score-function sum (biased; robust to its heavy tails)")
    args = ap.parse_args()
    if args.robust:
        return robust(args)
    if args.variants:
        return variants(args)
    if args.influence:
        return influence(args)
    torch.set_num_threads(1)
    task = ClassifierTask()
    start = ToySimulator().space
    rows = []
    for ti, target in enumerate(draw_targets(start, args.targets, args.target_seed)):
        val = task.to_data(ToySimulator(target).render(
            target.sample(500, np.random.default_rng(10_000 + ti))), "cpu")
        towards = (target.psi - start.psi)[start.free_mask]
        train = task.to_data(ToySimulator().render(start.sample(1024, np.random.default_rng(3))),
                             "cpu")
        for state, epochs in (("cold", 2), ("warm", 30)):
            model, _ = train_fresh(task, train.subset(slice(0, 64 if state == "cold" else 1024)),
                                   device="cpu", generator=torch.Generator().manual_seed(0),
                                   lr=1e-2, epochs=epochs, batch_size=32)
            g_true = true_gradient(task, model, start, val)
            for approx, norm in [(a, n) for a in ("linear", "quadratic") for n in (False, True)]:
                g_exact = hypergrad(task, model, start, val, approx, 16384,
                                    np.random.default_rng(1), normalise=norm)
                g_small = [hypergrad(task, model, start, val, approx, args.k,
                                     np.random.default_rng(100 + j), normalise=norm)
                           for j in range(20)]
                row = {"target": ti, "theta": state, "approx": approx,
                       "normalise": norm,
                       "cos(exact,true)": cosine(g_exact, g_true),
                       "cos(K,exact)": statistics.fmean(cosine(g, g_exact) for g in g_small),
                       "cos(K,true)": statistics.fmean(cosine(g, g_true) for g in g_small),
                       "cos(-exact,towards)": cosine(-g_exact, towards),
                       "cos(-true,towards)": cosine(-g_true, towards)}
                rows.append(row)
                print("  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                for k, v in row.items()), flush=True)
    print("\nmean over targets:")
    keys = [k for k in rows[0] if k.startswith("cos")]
    print("| theta | approx | normalise | " + " | ".join(keys) + " |")
    print("|---|---|---|" + "---|" * len(keys))
    for state, approx, norm in [(s, a, n) for s in ("cold", "warm")
                                for a in ("linear", "quadratic") for n in (False, True)]:
        sel = [r for r in rows
               if (r["theta"], r["approx"], r["normalise"]) == (state, approx, norm)]
        cells = [f"{statistics.fmean(r[k] for r in sel):.2f} ± "
                 f"{statistics.stdev(r[k] for r in sel) if len(sel) > 1 else 0:.2f}"
                 for k in keys]
        print(f"| {state} | {approx} | {norm} | " + " | ".join(cells) + " |")


VARIANTS = [(strat, act, base) for strat in (False, True) for act in (False, True)
            for base in ("loo", "none")]


def _models(args, task, start):
    """(target index, theta state, model, val) at the start psi of each drawn target: theta
    after a short fine-tune ("cold") or trained to convergence ("warm")."""
    train = task.to_data(ToySimulator().render(start.sample(1024, np.random.default_rng(3))),
                         "cpu")
    for ti, target in enumerate(draw_targets(start, args.targets, args.target_seed)):
        val = task.to_data(ToySimulator(target).render(
            target.sample(500, np.random.default_rng(10_000 + ti))), "cpu")
        for state, epochs in (("cold", 2), ("warm", 30)):
            model, _ = train_fresh(task, train.subset(slice(0, 64 if state == "cold" else 1024)),
                                   device="cpu", generator=torch.Generator().manual_seed(0),
                                   lr=1e-2, epochs=epochs, batch_size=32)
            yield ti, state, model, val


def variants(args) -> None:
    """Which unbiased estimator agrees best with the expectation at the same K?"""
    torch.set_num_threads(1)
    task = ClassifierTask()
    start = ToySimulator().space
    cos: dict[tuple, list[float]] = {}
    for ti, state, model, val in _models(args, task, start):
        for approx in ("linear", "quadratic"):
            g_exact = hypergrad(task, model, start, val, approx, 16384,
                                np.random.default_rng(1), active_only=True)
            for v in VARIANTS:
                c = [cosine(hypergrad(task, model, start, val, approx, args.k,
                                      np.random.default_rng(100 + j), stratified=v[0],
                                      active_only=v[1], baseline=v[2]), g_exact)
                     for j in range(20)]
                cos.setdefault((state, approx) + v, []).append(statistics.fmean(c))
        if state == "warm":
            print(f"target {ti} done", flush=True)
    print(f"\ncos(K = {args.k}, exact), mean ± std over {args.targets} targets "
          f"(target seed {args.target_seed}), 20 draws each:")
    print("| theta | approx | sampling | active_only | baseline | cos |")
    print("|---|---|---|---|---|---|")
    for key, vals in cos.items():
        state, approx, strat, act, base = key
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        print(f"| {state} | {approx} | {'stratified' if strat else 'iid'} | {act} | {base} | "
              f"{statistics.fmean(vals):.2f} ± {sd:.2f} |")


def influence(args, n: int = 8000) -> None:
    """Why K samples are noisy: how heavy-tailed and how (un)smooth f_k = grad l_k . v is."""
    torch.set_num_threads(1)
    task = ClassifierTask()
    start = ToySimulator().space
    train = task.to_data(ToySimulator().render(start.sample(1024, np.random.default_rng(3))),
                         "cpu")
    print("| target | component | kurtosis | R^2 linear | R^2 quadratic |")
    print("|---|---|---|---|---|")
    for ti, target in enumerate(draw_targets(start, args.targets, args.target_seed)):
        val = task.to_data(ToySimulator(target).render(
            target.sample(500, np.random.default_rng(10_000 + ti))), "cpu")
        model, _ = train_fresh(task, train, device="cpu", lr=1e-2, epochs=30, batch_size=32,
                               generator=torch.Generator().manual_seed(0))
        latents = start.sample(n, np.random.default_rng(5))
        data = task.to_data(ToySimulator(start).render(latents), "cpu")
        model.eval()
        res = hypergradient(approx="linear", params=[p for p in model.parameters()],
                            per_sample_loss=lambda m=model, d=data: task.per_sample_loss(m, d),
                            val_loss=lambda m=model, v=val: task.loss(m, v),
                            score=torch.zeros(n, start.psi_dim))
        f = res.directional.double().numpy()
        comp = latents[:, start.latent_slices["component"]][:, 0].astype(int)
        params = {p.name: p for p in start.params}
        for c, name in enumerate(params["component"].choices):
            y = f[comp == c]
            p = params[name]
            z = (latents[comp == c][:, start.latent_slices[name]] - np.asarray(p.mean)) \
                * np.exp(-np.asarray(p.log_std))
            lin = np.c_[np.ones(len(z)), z]
            quad = np.c_[lin, z ** 2, z[:, :1] * z[:, 1:]]

            def r2(x, y=y):
                return 1 - np.var(y - x @ np.linalg.lstsq(x, y, rcond=None)[0]) / np.var(y)
            kurt = float(((y - y.mean()) ** 4).mean() / y.var() ** 2)
            print(f"| {ti} | {name} | {kurt:.0f} | {r2(lin):.2f} | {r2(quad):.2f} |", flush=True)


def winsorised(d: torch.Tensor, c: float) -> torch.Tensor:
    """d clamped to its median +- c robust standard deviations (1.4826 MAD)."""
    med = d.median()
    mad = 1.4826 * (d - med).abs().median() + 1e-30
    return d.clamp(med - c * mad, med + c * mad)


def centred_ranks(d: torch.Tensor) -> torch.Tensor:
    """NES-style fitness shaping: the influence's ranks, in [-0.5, 0.5]."""
    return d.argsort().argsort().to(d.dtype) / (len(d) - 1) - 0.5


TRANSFORMS = {"raw": lambda d: d, "winsor 1": lambda d: winsorised(d, 1),
              "winsor 2": lambda d: winsorised(d, 2), "winsor 3": lambda d: winsorised(d, 3),
              "winsor 5": lambda d: winsorised(d, 5), "ranks": centred_ranks}


def robust(args) -> None:
    """Is the heavy tail of f_k noise to cut (clip, rank) or the signal itself?"""
    torch.set_num_threads(1)
    task = ClassifierTask()
    start = ToySimulator().space

    def parts(model, val, approx, k, seed):
        score, res = estimate(task, model, start, val, approx, k, np.random.default_rng(seed))
        return score, res.directional

    def grad(score, d, name):
        g = -score_weighted(score, TRANSFORMS[name](d), None, "loo")
        return g.double().numpy()[start.free_mask]

    cos: dict[tuple, list[float]] = {}
    for ti, state, model, val in _models(args, task, start):
        for approx in ("linear", "quadratic"):
            exact = grad(*parts(model, val, approx, 16384, 1), "raw")
            draws = [parts(model, val, approx, args.k, 100 + j) for j in range(20)]
            for name in TRANSFORMS:
                cos.setdefault((state, approx, name), []).append(statistics.fmean(
                    cosine(grad(s, d, name), exact) for s, d in draws))
        if state == "warm":
            print(f"target {ti} done", flush=True)
    print(f"\ncos(K = {args.k}, exact unclipped), mean ± std over {args.targets} targets "
          f"(target seed {args.target_seed}), 20 draws each:")
    print("| theta | approx | influence | cos |")
    print("|---|---|---|---|")
    for (state, approx, name), vals in cos.items():
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        print(f"| {state} | {approx} | {name} | {statistics.fmean(vals):.2f} ± {sd:.2f} |")


if __name__ == "__main__":
    main()
