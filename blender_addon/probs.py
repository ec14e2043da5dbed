"""The artist's units of a distribution and psi's, both ways (bpy-free: plain floats).

Shown std <-> stored log_std, shown probabilities <-> stored logits; an edited probability
rescales the other choices so they keep summing to 1. properties.py uses these for the panel.
"""

import math

from protocol.space import LOG_STD_RANGE

PROB_FLOOR = 1e-9  # smallest probability an edit can give a choice: logit >= log(1e-9) ~ -20.7


def softmax(logits):
    m = max(logits)
    e = [math.exp(v - m) for v in logits]
    s = sum(e)
    return [v / s for v in e]


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def clamp_log_std(std: float) -> float:
    """log(std) within LOG_STD_RANGE (std <= 0 counts as the smallest allowed)."""
    lo, hi = LOG_STD_RANGE
    if not std > 0.0 or not math.isfinite(std):
        return lo if not std > 0.0 else hi
    return min(max(math.log(std), lo), hi)


def renormalised(probs, index: int, new_p: float) -> list:
    """Probabilities after choice `index` was set to `new_p`: the others keep their ratios and
    share 1 - new_p (evenly when they were all zero)."""
    new_p = min(max(float(new_p), 0.0), 1.0)
    k = len(probs)
    rest = sum(p for j, p in enumerate(probs) if j != index)
    out = []
    for j, p in enumerate(probs):
        if j == index:
            out.append(new_p)
        elif rest > 0.0:
            out.append(max(p, 0.0) / rest * (1.0 - new_p))
        else:
            out.append((1.0 - new_p) / (k - 1))
    return out


def logits_from_probs(probs) -> list:
    """logits = log(p) with p floored at PROB_FLOOR (softmax is shift-invariant)."""
    total = sum(max(p, 0.0) for p in probs) or 1.0
    return [math.log(max(p / total, PROB_FLOOR)) for p in probs]


def logit_from_prob(p: float) -> float:
    p = min(max(p, PROB_FLOOR), 1.0 - PROB_FLOOR)
    return math.log(p / (1.0 - p))
