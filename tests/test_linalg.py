"""CG against a dense solve, HVPs against the explicit Hessian."""

import pytest
import torch

from optimizer.linalg import conjugate_gradient, flatten, hvp_operator, unflatten

pytestmark = pytest.mark.usefixtures("float64")


def _spd(n, seed, cond=50.0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g))
    eig = torch.logspace(0, torch.log10(torch.tensor(cond)), n)
    return q @ torch.diag(eig) @ q.T, torch.randn(n, generator=g)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("damping", [0.0, 0.5])
def test_cg_matches_dense_solve(seed, damping):
    a, b = _spd(12, seed)
    res = conjugate_gradient(lambda v: a @ v, b, damping=damping, max_iter=50, rtol=1e-10)
    exact = torch.linalg.solve(a + damping * torch.eye(12), b)
    assert res.converged
    torch.testing.assert_close(res.x, exact, rtol=1e-7, atol=1e-9)
    assert res.iterations <= 13


def test_cg_warm_start_and_iteration_cap():
    a, b = _spd(30, 0, cond=1e4)
    exact = torch.linalg.solve(a, b)
    capped = conjugate_gradient(lambda v: a @ v, b, max_iter=3)
    assert capped.iterations == 3 and not capped.converged
    warm = conjugate_gradient(lambda v: a @ v, b, x0=exact + 1e-9, max_iter=5, rtol=1e-4)
    assert warm.iterations == 0 and warm.converged
    cold_err = (capped.x - exact).norm()
    again = conjugate_gradient(lambda v: a @ v, b, x0=capped.x, max_iter=3)
    assert (again.x - exact).norm() < cold_err


def test_cg_stops_on_negative_curvature():
    a = torch.diag(torch.tensor([1.0, -1.0]))
    res = conjugate_gradient(lambda v: a @ v, torch.tensor([1.0, 1.0]), max_iter=10)
    assert torch.isfinite(res.x).all() and not res.converged


def test_cg_negative_curvature_on_the_first_direction_falls_back_to_b():
    a = torch.diag(torch.tensor([-1.0, 2.0]))
    cold = conjugate_gradient(lambda v: a @ v, torch.tensor([1.0, 0.0]), max_iter=10)
    assert cold.negative_curvature and not cold.converged and cold.iterations == 0
    torch.testing.assert_close(cold.x, torch.tensor([1.0, 0.0]))  # not 0: Table 1's linear
    warm = conjugate_gradient(lambda v: a @ v, torch.tensor([1.0, 0.0]),
                              x0=torch.tensor([0.5, 0.5]), max_iter=10)
    # a stale warm start meeting negative curvature at once is not returned unchanged: the
    # solve restarts cold, which here falls back to b as above
    assert warm.negative_curvature
    torch.testing.assert_close(warm.x, torch.tensor([1.0, 0.0]))
    zero = conjugate_gradient(lambda v: a @ v, torch.tensor([1.0, 0.0]), x0=torch.zeros(2))
    torch.testing.assert_close(zero.x, torch.tensor([1.0, 0.0]))  # a zero start is a cold one
    ok = conjugate_gradient(lambda v: a @ v, torch.tensor([0.0, 1.0]), max_iter=10)
    assert not ok.negative_curvature and ok.converged
    torch.testing.assert_close(ok.x, torch.tensor([0.0, 0.5]))


def test_cg_warm_start_that_goes_on_well_keeps_its_iterate():
    a = torch.diag(torch.tensor([1.0, 2.0]))
    res = conjugate_gradient(lambda v: a @ v, torch.tensor([1.0, 1.0]),
                             x0=torch.tensor([1.0, 0.5]), max_iter=10)
    assert res.converged and res.iterations == 0  # the warm start was already the solution
    torch.testing.assert_close(res.x, torch.tensor([1.0, 0.5]))


def test_cg_singular_without_damping_stays_bounded():
    """H = diag(1, 1e-17, 1e-17) with damping 0: the exact solve is ~1e17 along the flat
    directions; CG stops there instead of stepping to them (the solution stays O(|b|))."""
    a = torch.diag(torch.tensor([1.0, 1e-17, 1e-17], dtype=torch.float64))
    b = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    res = conjugate_gradient(lambda v: a @ v, b, damping=0.0, max_iter=10, rtol=1e-12)
    assert res.negative_curvature and torch.isfinite(res.x).all()
    assert float(res.x.norm()) < 10.0
    # the same solve along a well-conditioned Hessian is untouched by the flatness rule
    good = torch.diag(torch.tensor([1.0, 1e-3, 4.0], dtype=torch.float64))
    ok = conjugate_gradient(lambda v: good @ v, b, damping=0.0, max_iter=10, rtol=1e-12)
    assert ok.converged
    torch.testing.assert_close(ok.x, torch.linalg.solve(good, b))


def test_cg_zero_rhs():
    res = conjugate_gradient(lambda v: v, torch.zeros(3))
    assert res.converged and res.x.abs().sum() == 0


def test_hvp_matches_explicit_hessian():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    x, y = torch.randn(10, 3), torch.randint(0, 2, (10,))
    params = list(net.parameters())

    def loss_of(flat):
        ws = unflatten(flat, params)
        h = torch.tanh(x @ ws[0].T + ws[1])
        return torch.nn.functional.cross_entropy(h @ ws[2].T + ws[3], y)

    theta = flatten(params).detach()
    hess = torch.autograd.functional.hessian(loss_of, theta)
    loss = torch.nn.functional.cross_entropy(net(x), y)
    matvec = hvp_operator(loss, params)
    for seed in range(3):
        v = torch.randn(theta.numel(), generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(matvec(v), hess @ v, rtol=1e-8, atol=1e-10)
