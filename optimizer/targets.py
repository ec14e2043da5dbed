"""Hidden targets: target configurations drawn at random, so no default is tuned to one.

A target is the same space at another psi: each free parameter moves away from the start with
probability 1/2 (at least two move). Means move by 10-35% of the parameter's range (its clip
bounds; six start standard deviations when it has none) and stay inside the middle 80% of it;
spreads shrink or grow a little (real data tends to be narrower than a start guess); a
categorical's logits get Gaussian noise of scale 1.5 (a mildly peaked preference); a
bernoulli's logit moves by 1-2.5. Fixed parameters never move. Draw defaults with one
`seed`, report on another.
"""

from __future__ import annotations

import numpy as np

from protocol.distributions import LOG_STD_RANGE, BernoulliParam, CategoricalParam, NormalParam
from protocol.space import ParameterSpace

MIN_MOVED = 2


def _move_normal(p: NormalParam, rng: np.random.Generator) -> dict[str, list[float]]:
    mean = np.asarray(p.mean, float)
    std = np.exp(np.asarray(p.log_std, float))
    low = mean - 3 * std if p.low is None else np.asarray(p.low, float)
    high = mean + 3 * std if p.high is None else np.asarray(p.high, float)
    width = high - low
    lo, hi = low + 0.1 * width, high - 0.1 * width
    step = rng.uniform(0.1, 0.35, p.dim) * width * rng.choice((-1.0, 1.0), p.dim)
    new = mean + step
    new = np.where((new < lo) | (new > hi), mean - step, new)  # the other way stays inside
    new = np.clip(new, lo, hi)
    log_std = np.clip(np.asarray(p.log_std, float) + rng.uniform(-1.0, 0.3, p.dim),
                      LOG_STD_RANGE[0], LOG_STD_RANGE[1])
    return {"mean": new.tolist(), "log_std": log_std.tolist()}


def draw_target(space: ParameterSpace, rng: np.random.Generator) -> ParameterSpace:
    free = [p for p in space.params if not p.fixed]
    if not free:
        raise ValueError("every parameter is fixed: there is nothing a target could move")
    moved = rng.random(len(free)) < 0.5
    if moved.sum() < min(MIN_MOVED, len(free)):
        moved[rng.choice(len(free), min(MIN_MOVED, len(free)), replace=False)] = True
    named: dict[str, dict] = {}
    for p, move in zip(free, moved):
        if not move:
            continue
        if isinstance(p, NormalParam):
            named[p.name] = _move_normal(p, rng)
        elif isinstance(p, CategoricalParam):
            logits = np.asarray(p.logits, float) + 1.5 * rng.standard_normal(len(p.choices))
            named[p.name] = {"logits": (logits - logits.mean()).tolist()}
        elif isinstance(p, BernoulliParam):
            named[p.name] = {"logit": float(p.logit + rng.choice((-1, 1)) * rng.uniform(1, 2.5))}
        else:  # a new kind must say how a target moves it
            raise TypeError(f"draw_target: no rule for parameter kind {p.kind!r}")
    return space.with_psi(space.pack_psi(named))


def draw_targets(space: ParameterSpace, n: int, seed: int) -> list[ParameterSpace]:
    """n targets around `space`'s psi; target i depends only on (seed, i)."""
    return [draw_target(space, np.random.default_rng([seed, i])) for i in range(n)]


def moved_parameters(start: ParameterSpace, target: ParameterSpace) -> list[str]:
    return [a.name for a, b in zip(start.params, target.params)
            if not np.allclose(start.psi[start.psi_slices[a.name]],
                               target.psi[target.psi_slices[b.name]])]
