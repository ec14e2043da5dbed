"""Matrix-free linear algebra for the hypergradient: Hessian-vector products and CG.

The solver only sees a `matvec` closure (torchopt's `solve_cg` style), so it never knows how H·v
is computed; `hvp_operator` builds one by double backward, reusing the gradient graph for every
product (one forward pass per solve, not per iteration).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import torch

Matvec = Callable[[torch.Tensor], torch.Tensor]


def flatten(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(flat: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    out, start = [], 0
    for t in like:
        out.append(flat[start:start + t.numel()].view_as(t))
        start += t.numel()
    return out


def flat_grad(loss: torch.Tensor, params: Sequence[torch.Tensor], *,
              create_graph: bool = False, retain_graph: bool | None = None) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, create_graph=create_graph,
                                retain_graph=retain_graph, allow_unused=True)
    return flatten([torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)])


def hvp_operator(loss: torch.Tensor, params: Sequence[torch.Tensor]) -> Matvec:
    """v -> H v for the Hessian of `loss` w.r.t. `params`, one backward per product."""
    params = list(params)
    grad = flat_grad(loss, params, create_graph=True)

    def matvec(v: torch.Tensor) -> torch.Tensor:
        if not grad.requires_grad:  # loss is linear in params: H = 0
            return torch.zeros_like(v)
        return flat_grad(grad @ v.detach(), params, retain_graph=True)

    return matvec


FLAT = 1e-10  # relative curvature below which a CG direction counts as singular


@dataclasses.dataclass
class CGResult:
    x: torch.Tensor
    iterations: int
    residual_norm: float
    converged: bool
    negative_curvature: bool = False  # the solve ended on a direction of curvature <= 0


def conjugate_gradient(matvec: Matvec, b: torch.Tensor, *, x0: torch.Tensor | None = None,
                       damping: float = 0.0, max_iter: int = 10, rtol: float = 1e-4,
                       ) -> CGResult:
    """Solve (A + damping I) x = b for symmetric A given as `matvec`.

    Stops at ||r|| <= rtol ||b|| or after max_iter products. A direction of non-positive
    curvature (A not positive definite along it, despite damping) ends the solve with the
    iterate so far rather than stepping to infinity. If that happens on the very first
    direction of a cold (or all-zero) start, the iterate so far is 0, and x = b is returned
    instead: the steepest-descent step of truncated Newton (Nocedal & Wright Alg. 7.1); for
    the hypergradient it is Table 1's linear approximation. A full-network YOLO Hessian is
    often indefinite along g_val: returning 0 there silently zeroed the hypergradient. A warm
    start whose first direction has non-positive curvature is not returned unchanged: the solve
    restarts cold. Directions flatter than FLAT times the steepest one seen (a singular
    Hessian without damping) count as non-positive, which bounds the solution.
    """
    def op(v: torch.Tensor) -> torch.Tensor:
        return matvec(v) + damping * v if damping else matvec(v)

    b = b.detach()
    x = torch.zeros_like(b) if x0 is None else x0.detach().clone()
    r = b - op(x) if x0 is not None else b.clone()
    b_norm = float(b.norm())
    if b_norm == 0.0:
        return CGResult(torch.zeros_like(b), 0, 0.0, True)
    p = r.clone()
    rs = r @ r
    iters, negative = 0, False
    top = 0.0  # the largest Rayleigh quotient p.Ap / p.p met so far: a scale for "flat"
    for iters in range(1, max_iter + 1):  # noqa: B007
        if float(rs.sqrt()) <= rtol * b_norm:
            iters -= 1
            break
        ap = op(p)
        curvature = p @ ap
        rayleigh = float(curvature / (p @ p)) if torch.isfinite(curvature) else float("nan")
        top = max(top, rayleigh) if np.isfinite(rayleigh) else top
        # A direction flatter than FLAT x the steepest one is singular for the solve: with
        # damping 0, stepping along it gave finite but ~1e18 solutions (alpha = rs / ~0).
        if not np.isfinite(rayleigh) or rayleigh <= FLAT * top:
            iters -= 1
            negative = True
            if iters == 0 and x0 is not None and bool(x.any()):
                # a stale warm start that meets negative curvature at once: start again cold
                return conjugate_gradient(matvec, b, damping=damping, max_iter=max_iter,
                                          rtol=rtol)
            if iters == 0 and not bool(x.any()):  # a cold (or all-zero) start: no iterate
                x = b.clone()
            break
        alpha = rs / curvature
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = r @ r
        p = r + (rs_new / rs) * p
        rs = rs_new
    res = float(rs.sqrt())
    return CGResult(x, iters, res, (not negative) and res <= rtol * b_norm, negative)
