"""The AutoSimulate hypergradient (Behl et al. 2020, eqs. 11-13 and Table 1).

    dL~val/dpsi = -sum_k w_k * score_k * (grad_theta l(r(s_k), theta) . v)

with v = (H + lambda I)^-1 g_val (quadratic), H g_val (approx_quadratic), g_val (linear); w_k = 1/K
for K samples from q_psi. `no_val` ignores the validation set and descends E[l] itself:
sum_k w_k score_k l_k. The K directional derivatives grad l_k . v come from ONE extra backward
pair (the double-backward trick: d/du [(J^T u) . v] = J v), not K backward passes.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import torch

from optimizer.linalg import conjugate_gradient, flat_grad, hvp_operator

APPROXIMATIONS = ("quadratic", "approx_quadratic", "linear", "no_val")


@dataclasses.dataclass
class CGSettings:
    damping: float = 1e-2
    max_iter: int = 10
    rtol: float = 1e-3


@dataclasses.dataclass
class HypergradResult:
    grad: torch.Tensor            # (psi_dim,) d L~val / d psi, to be DESCENDED
    v: torch.Tensor | None        # the direction in theta space (warm start for the next solve)
    directional: torch.Tensor     # (K,) grad l_k . v (or l_k for no_val)
    cg_iterations: int = 0
    cg_residual: float = 0.0
    seconds: float = 0.0
    cg_negative_curvature: bool = False
    # (psi_dim,) sampling variance of grad (estimate_variance); None for weighted samples
    # (replay, exact expectations), whose terms are not i.i.d.
    grad_var: torch.Tensor | None = None


def directional_derivatives(per_sample_loss: torch.Tensor, params: Sequence[torch.Tensor],
                            v: torch.Tensor) -> torch.Tensor:
    """(K,) vector of grad_theta l_k . v from per-sample losses (K,), via two backward passes."""
    u = torch.zeros_like(per_sample_loss, requires_grad=True)
    jtu = flat_grad(per_sample_loss @ u, params, create_graph=True)  # J^T u, linear in u
    return torch.autograd.grad(jtu @ v.detach(), u)[0].detach()


BASELINES = ("none", "loo", "mean")


def per_sample_grad_norms(per_sample_loss: torch.Tensor,
                          params: Sequence[torch.Tensor]) -> torch.Tensor:
    """(K,) ||grad_theta l_k||, one backward per sample (cheap for a head-only params)."""
    return torch.stack([flat_grad(per_sample_loss[k], params, retain_graph=True).norm()
                        for k in range(per_sample_loss.shape[0])]).detach()


def score_terms(score: torch.Tensor, values: torch.Tensor, weights: torch.Tensor | None,
                baseline: str = "loo", pairs: bool = False,
                partner: torch.Tensor | None = None) -> torch.Tensor:
    """(K, psi_dim) w_k score_k (values_k - b_k), whose sum is the estimate. A baseline is a
    control variate (E[score] = 0): 'loo' (equal weights only) the leave-one-out mean keeps the
    estimate unbiased and cuts its variance a lot; 'mean' subtracts the weighted mean of the
    values: what self-normalised importance weights (summing to 1) want, and a no-op for an
    exact expectation. Given weights, 'loo' subtracts nothing (exact probabilities need no
    control variate). pairs: rows (2i, 2i + 1) are pairs (space.sample antithetic / paired);
    'loo' then leaves the pair out, as a baseline that saw a sample's partner would bias it.
    partner: (psi_dim,) bool, the entries whose parameters a pair's rows drew independently
    (space.sample paired: all free ones); their baseline is the partner's value, independent
    of the row's own draw and rendered from what the pair shares, which then cancels.
    """
    if baseline not in BASELINES:
        raise ValueError(f"unknown baseline {baseline!r}; known: {', '.join(BASELINES)}")
    k = values.shape[0]
    if k == 0:
        raise ValueError("the hypergradient needs at least one sample, got K = 0")
    if partner is not None and not (pairs and baseline == "loo" and weights is None):
        raise ValueError("a partner baseline needs pairs, baseline 'loo' and equal weights")
    values = values.to(score.dtype)
    diff = None
    if weights is None:
        weights = torch.full((k,), 1.0 / k, dtype=score.dtype, device=score.device)
        if baseline == "loo" and pairs:
            if k % 2 or k < 4:
                raise ValueError(f"sample pairs need an even K >= 4, got K = {k}")
            if partner is not None:
                diff = values - values.view(-1, 2).flip(1).reshape(-1)
            pair_sum = values.view(-1, 2).sum(1).repeat_interleave(2)
            values = values - (values.sum() - pair_sum) / (k - 2)
        elif baseline == "loo" and k > 1:
            values = values - (values.sum() - values) / (k - 1)
    weights = weights.to(score.dtype)
    if baseline == "mean":
        values = values - (weights * values).sum() / weights.sum()
    centred = values[:, None].expand_as(score)
    if diff is not None:
        centred = torch.where(partner.to(score.device), diff[:, None], centred)
    return weights[:, None] * score * centred


def score_weighted(score: torch.Tensor, values: torch.Tensor, weights: torch.Tensor | None,
                   baseline: str = "loo", pairs: bool = False,
                   partner: torch.Tensor | None = None) -> torch.Tensor:
    """sum_k w_k score_k (values_k - b_k): see score_terms."""
    return score_terms(score, values, weights, baseline, pairs, partner).sum(0)


def estimate_variance(terms: torch.Tensor, pairs: bool = False) -> torch.Tensor:
    """(psi_dim,) the sampling variance of terms.sum(0) for K i.i.d. draws (pairs: K / 2
    i.i.d. pairs): K times the terms' variance. The LOO baseline couples the terms by O(1/K),
    which this ignores; with fewer than two units it is unknown, so +inf."""
    units = terms.view(-1, 2, terms.shape[1]).sum(1) if pairs else terms
    n = units.shape[0]
    if n < 2:
        return torch.full(terms.shape[1:], float("inf"), dtype=terms.dtype, device=terms.device)
    return n * units.var(0)


def hypergradient(
    *,
    approx: str,
    params: Sequence[torch.Tensor],
    per_sample_loss: Callable[[], torch.Tensor],
    val_loss: Callable[[], torch.Tensor] | None,
    score: torch.Tensor,
    weights: torch.Tensor | None = None,
    cg: CGSettings | None = None,
    v0: torch.Tensor | None = None,
    hessian_loss: Callable[[], torch.Tensor] | None = None,
    baseline: str = "loo",
    normalise: bool = False,
    pairs: bool = False,
    partner: torch.Tensor | None = None,
) -> HypergradResult:
    """One hypergradient at the current theta.

    per_sample_loss: () -> (K,) training losses of the K rendered samples (graph to params).
    val_loss: () -> scalar validation loss (None only for no_val).
    score: (K, psi_dim) d/dpsi log q_psi(s_k), on the same device as the losses.
    weights: per-sample weights (default 1/K); pass exact probabilities for an exact expectation.
    hessian_loss: () -> scalar loss whose Hessian is used (default: weighted mean of
    per_sample_loss); a subsample here is the usual speed knob.
    normalise: use grad l_k . v / ||grad l_k|| (times the mean norm, to keep the scale)
    instead of the raw dot product, whose high-loss samples look influential for their
    gradient's size alone (a cosine, as data-selection work does; biased, off by default).
    pairs: the samples come in pairs; partner: the entries whose baseline is the partner's
    value (see score_terms).
    """
    if approx not in APPROXIMATIONS:
        raise ValueError(f"unknown approximation {approx!r}; known: {', '.join(APPROXIMATIONS)}")
    if score.ndim != 2 or score.shape[0] == 0:
        raise ValueError(f"the hypergradient needs K >= 1 samples' scores (K, psi_dim), got "
                         f"shape {tuple(score.shape)}")
    started = time.perf_counter()
    params = list(params)
    losses = per_sample_loss()
    if approx == "no_val":
        d = losses.detach()
        terms = score_terms(score, d, weights, baseline, pairs, partner)
        return HypergradResult(terms.sum(0), None, d, seconds=time.perf_counter() - started,
                               grad_var=_variance(terms, weights, pairs))
    if val_loss is None:
        raise ValueError(f"approximation {approx!r} needs a validation loss")
    g_val = flat_grad(val_loss(), params).detach()
    iters, residual, negative = 0, 0.0, False
    if approx == "linear":
        v = g_val
    else:
        if hessian_loss is not None:
            h_loss = hessian_loss()
        elif weights is not None:
            h_loss = (weights.to(losses.dtype) * losses).sum()
        else:
            h_loss = losses.mean()
        matvec = hvp_operator(h_loss, params)
        if approx == "approx_quadratic":
            v = matvec(g_val)
        else:
            cg = cg or CGSettings()
            sol = conjugate_gradient(matvec, g_val, x0=v0, damping=cg.damping,
                                     max_iter=cg.max_iter, rtol=cg.rtol)
            v, iters, residual = sol.x, sol.iterations, sol.residual_norm
            negative = sol.negative_curvature
    d = directional_derivatives(losses, params, v)
    if normalise:
        norms = per_sample_grad_norms(losses, params)
        d = d * (norms.mean() / norms.clamp_min(1e-12 * float(norms.max()) + 1e-30))
    terms = score_terms(score, d, weights, baseline, pairs, partner)
    return HypergradResult(-terms.sum(0), v.detach(), d, iters, residual,
                           time.perf_counter() - started, negative,
                           _variance(terms, weights, pairs))


def _variance(terms: torch.Tensor, weights: torch.Tensor | None,
              pairs: bool) -> torch.Tensor | None:
    return None if weights is not None else estimate_variance(terms.detach(), pairs)
