"""The hypergradient against finite differences of L_val(theta*(psi)) on bilevel problems whose
inner optimum is closed form (ridge regression where psi shapes the training distribution)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optimizer.hypergrad import (
    CGSettings,
    directional_derivatives,
    estimate_variance,
    hypergradient,
    score_terms,
    score_weighted,
)
from optimizer.linalg import flat_grad
from protocol.space import ParameterSpace

pytestmark = pytest.mark.usefixtures("float64")
LAM = 0.3


def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _check(estimate, reference, cos_min=0.99, rel_max=0.10):
    estimate, reference = np.asarray(estimate), np.asarray(reference)
    assert _cos(estimate, reference) > cos_min, (estimate, reference)
    assert np.linalg.norm(estimate - reference) / np.linalg.norm(reference) < rel_max


# ------------------------------------------------------------------ exact: categorical over items
class ItemsProblem:
    """psi = logits of a categorical over n training items (x_i, y_i)."""

    def __init__(self, seed=0, n=7, d=3):
        rng = np.random.default_rng(seed)
        self.x = rng.normal(size=(n, d))
        self.y = self.x @ rng.normal(size=d) + rng.normal(size=n)
        self.xv = rng.normal(size=(40, d)) + 0.5
        self.yv = self.xv @ rng.normal(size=d)
        self.space = ParameterSpace.from_dict({"format": "autosim.space", "version": 1, "params": [
            {"name": "item", "kind": "categorical", "choices": [f"i{i}" for i in range(n)],
             "logits": rng.normal(size=n).tolist()}]})

    def probs(self, psi):
        e = np.exp(psi - psi.max())
        return e / e.sum()

    def theta_star(self, psi):
        p = self.probs(psi)
        a = self.x.T @ (p[:, None] * self.x) + LAM * np.eye(self.x.shape[1])
        return np.linalg.solve(a, self.x.T @ (p * self.y))

    def val_loss(self, theta):
        return 0.5 * np.mean((self.xv @ theta - self.yv) ** 2)

    def fd(self, psi, h=1e-5):
        g = np.zeros_like(psi)
        for i in range(len(psi)):
            e = np.zeros_like(psi)
            e[i] = h
            g[i] = (self.val_loss(self.theta_star(psi + e))
                    - self.val_loss(self.theta_star(psi - e))) / (2 * h)
        return g

    def hypergrad(self, psi, approx="quadratic", cg=None):
        theta = torch.tensor(self.theta_star(psi), requires_grad=True)
        x, y = torch.tensor(self.x), torch.tensor(self.y)
        xv, yv = torch.tensor(self.xv), torch.tensor(self.yv)
        latents = np.arange(len(self.y), dtype=float)[:, None]
        return hypergradient(
            approx=approx, params=[theta],
            per_sample_loss=lambda: 0.5 * (x @ theta - y) ** 2,
            val_loss=lambda: 0.5 * ((xv @ theta - yv) ** 2).mean(),
            score=torch.tensor(self.space.score(latents, psi)),
            weights=torch.tensor(self.probs(psi)),
            cg=cg or CGSettings(damping=LAM, max_iter=100, rtol=1e-12))


@pytest.mark.parametrize("seed", range(3))
def test_quadratic_hypergradient_is_the_exact_gradient(seed):
    prob = ItemsProblem(seed)
    psi = prob.space.psi
    res = prob.hypergrad(psi)
    _check(res.grad.numpy(), prob.fd(psi), cos_min=0.9999, rel_max=1e-4)
    assert res.cg_iterations >= 1


def test_hypergradient_sign_descends_the_validation_loss():
    prob = ItemsProblem(1)
    psi = prob.space.psi
    for _ in range(20):
        psi = psi - 0.5 * prob.hypergrad(psi).grad.numpy()
    assert prob.val_loss(prob.theta_star(psi)) < prob.val_loss(prob.theta_star(prob.space.psi))


def test_approximations_follow_table_1():
    """approx_quadratic uses H g_val, linear g_val, no_val the training loss itself."""
    prob = ItemsProblem(2)
    psi = prob.space.psi
    p = prob.probs(psi)
    theta = prob.theta_star(psi)
    g_val = prob.xv.T @ (prob.xv @ theta - prob.yv) / len(prob.yv)
    h = prob.x.T @ (p[:, None] * prob.x)
    grads = (prob.x @ theta - prob.y)[:, None] * prob.x          # grad l_i, (n, d)
    score = prob.space.score(np.arange(len(p), dtype=float)[:, None], psi)
    losses = 0.5 * (prob.x @ theta - prob.y) ** 2
    expected = {
        "approx_quadratic": -(p[:, None] * score * (grads @ (h @ g_val))[:, None]).sum(0),
        "linear": -(p[:, None] * score * (grads @ g_val)[:, None]).sum(0),
        "no_val": (p[:, None] * score * losses[:, None]).sum(0),
    }
    for approx, want in expected.items():
        np.testing.assert_allclose(prob.hypergrad(psi, approx).grad.numpy(), want, rtol=1e-9,
                                   atol=1e-12)


def test_truncated_cg_with_warm_start_improves():
    """One CG step from the previous v is closer (in the A-norm CG minimises) than from zero."""
    prob = ItemsProblem(0)
    psi = prob.space.psi
    p = prob.probs(psi)
    a = prob.x.T @ (p[:, None] * prob.x) + LAM * np.eye(3)
    theta = prob.theta_star(psi)
    v_star = np.linalg.solve(a, prob.xv.T @ (prob.xv @ theta - prob.yv) / len(prob.yv))

    def a_err(v):
        e = v.numpy() - v_star
        return float(e @ a @ e)

    one = prob.hypergrad(psi, cg=CGSettings(damping=LAM, max_iter=1, rtol=0))
    t = torch.tensor(theta, requires_grad=True)
    x, y = torch.tensor(prob.x), torch.tensor(prob.y)
    xv, yv = torch.tensor(prob.xv), torch.tensor(prob.yv)
    warm = hypergradient(
        approx="quadratic", params=[t], per_sample_loss=lambda: 0.5 * (x @ t - y) ** 2,
        val_loss=lambda: 0.5 * ((xv @ t - yv) ** 2).mean(),
        score=torch.tensor(prob.space.score(np.arange(7.0)[:, None], psi)),
        weights=torch.tensor(p), v0=one.v, cg=CGSettings(damping=LAM, max_iter=1, rtol=0))
    assert a_err(warm.v) < 0.9 * a_err(one.v)


# ------------------------------------------------------- Monte Carlo: a Gaussian over the inputs
GH_X, GH_W = np.polynomial.hermite_e.hermegauss(80)
GH_W = GH_W / GH_W.sum()


def _features(x):
    return np.stack([np.ones_like(x), x, x ** 2], -1)


def _target(x):
    return np.sin(2 * x)


def _theta_star(mu, log_std):
    x = mu + np.exp(log_std) * GH_X
    f = _features(x)
    a = f.T @ (GH_W[:, None] * f) + LAM * np.eye(3)
    return np.linalg.solve(a, f.T @ (GH_W * _target(x)))


XV = np.linspace(0.5, 1.5, 50)


def _val(theta):
    return 0.5 * np.mean((_features(XV) @ theta - _target(XV)) ** 2)


def test_monte_carlo_hypergradient_matches_finite_differences():
    space = ParameterSpace.from_dict({"format": "autosim.space", "version": 1, "params": [
        {"name": "x", "kind": "normal", "mean": [0.2], "log_std": [-0.3]}]})
    psi = space.psi
    h = 1e-5
    fd = np.array([(_val(_theta_star(*(psi + e))) - _val(_theta_star(*(psi - e)))) / (2 * h)
                   for e in np.eye(2) * h])
    latents = space.sample(40000, np.random.default_rng(0))
    x = latents[:, 0]
    theta = torch.tensor(_theta_star(*psi), requires_grad=True)
    f, y = torch.tensor(_features(x)), torch.tensor(_target(x))
    fv, yv = torch.tensor(_features(XV)), torch.tensor(_target(XV))
    res = hypergradient(
        approx="quadratic", params=[theta], per_sample_loss=lambda: 0.5 * (f @ theta - y) ** 2,
        val_loss=lambda: 0.5 * ((fv @ theta - yv) ** 2).mean(),
        score=torch.tensor(space.score(latents)),
        cg=CGSettings(damping=LAM, max_iter=50, rtol=1e-10))
    _check(res.grad.numpy(), fd)


def test_directional_derivatives_equal_per_sample_gradients():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    x, y = torch.randn(6, 3), torch.randint(0, 2, (6,))
    params = list(net.parameters())
    v = torch.randn(sum(p.numel() for p in params))
    losses = torch.nn.functional.cross_entropy(net(x), y, reduction="none")
    got = directional_derivatives(losses, params, v)
    want = torch.stack([flat_grad(losses[k], params, retain_graph=True) @ v for k in range(6)])
    torch.testing.assert_close(got, want)


def test_leave_one_out_baseline_is_unbiased_and_reduces_variance():
    rng = np.random.default_rng(0)
    space = ParameterSpace.from_dict({"format": "autosim.space", "version": 1, "params": [
        {"name": "x", "kind": "normal", "mean": [0.0], "log_std": [0.0]}]})
    plain, loo = [], []
    for _ in range(400):
        lat = space.sample(16, rng)
        score = torch.tensor(space.score(lat))
        values = torch.tensor(5.0 + lat[:, 0])  # E[score * values] = (1, 0)
        plain.append(score_weighted(score, values, None, "none").numpy())
        loo.append(score_weighted(score, values, None, "loo").numpy())
    plain, loo = np.array(plain), np.array(loo)
    np.testing.assert_allclose(loo.mean(0), [1.0, 0.0], atol=5 * loo.std(0).max() / 20)
    assert loo.var(0).sum() < 0.5 * plain.var(0).sum()
    with pytest.raises(ValueError, match="baseline"):
        score_weighted(score, values, None, "ema")


def test_leave_one_out_baseline_by_hand():
    """K = 3, values (1, 2, 4): the baselines are the means of the OTHER two, (3, 2.5, 1.5),
    not the mean of all three (7/3), which would shrink the estimate by (K - 1) / K."""
    score = torch.tensor([[1.0, 2.0], [0.0, -1.0], [-1.0, 3.0]])
    values = torch.tensor([1.0, 2.0, 4.0])
    # centred values (1 - 3, 2 - 2.5, 4 - 1.5) = (-2, -0.5, 2.5); weights 1/3:
    # column 0: (1 * -2 + 0 * -0.5 + -1 * 2.5) / 3 = -1.5
    # column 1: (2 * -2 + -1 * -0.5 + 3 * 2.5) / 3 = 4 / 3
    got = score_weighted(score, values, None, "loo")
    np.testing.assert_allclose(got.numpy(), [-1.5, 4.0 / 3.0], rtol=1e-12)
    # no baseline: column 0 (1 - 4) / 3, column 1 (2 - 2 + 12) / 3
    np.testing.assert_allclose(score_weighted(score, values, None, "none").numpy(),
                               [-1.0, 4.0], rtol=1e-12)


def test_pair_baseline_by_hand():
    """K = 4 in pairs (1, 2), (4, 8): each pair's baseline is the mean of the OTHER pair,
    6 and 1.5 (a leave-one-out mean would include the sample's own mirror image)."""
    score = torch.tensor([[1.0], [-1.0], [2.0], [0.0]])
    values = torch.tensor([1.0, 2.0, 4.0, 8.0])
    # centred (1 - 6, 2 - 6, 4 - 1.5, 8 - 1.5) = (-5, -4, 2.5, 6.5): (-5 + 4 + 5 + 0) / 4
    got = score_weighted(score, values, None, "loo", pairs=True)
    np.testing.assert_allclose(got.numpy(), [1.0], rtol=1e-12)
    with pytest.raises(ValueError, match="even K >= 4"):
        score_weighted(score[:3], values[:3], None, "loo", pairs=True)


def test_antithetic_pairs_are_unbiased_and_cut_the_variance_of_a_smooth_effect():
    """E[(x - 1)^2 + 2 [c = 1]] with x ~ N(0.5, 1), c ~ softmax(0, 0.5): d/dmean = -1,
    d/dlog_std = 2 sigma^2 = 2, d/dlogits = 2 p1 (1 - p1) * (-1, 1). Pairs with the pair
    baseline hit all four; the mean's entry has far less variance than i.i.d. draws."""
    rng = np.random.default_rng(0)
    space = ParameterSpace.from_dict({"format": "autosim.space", "version": 1, "params": [
        {"name": "x", "kind": "normal", "mean": [0.5], "log_std": [0.0]},
        {"name": "c", "kind": "categorical", "choices": ["a", "b"], "logits": [0.0, 0.5]}]})
    p1 = 1 / (1 + np.exp(-0.5))
    exact = [-1.0, 2.0, -2 * p1 * (1 - p1), 2 * p1 * (1 - p1)]
    est = {"iid": [], "pairs": []}
    for _ in range(3000):
        for kind in est:
            lat = space.sample(16, rng, antithetic=kind == "pairs")
            score = torch.tensor(space.score(lat))
            values = torch.tensor((lat[:, 0] - 1.0) ** 2 + 2.0 * lat[:, 1])
            est[kind].append(score_weighted(score, values, None, "loo",
                                            pairs=kind == "pairs").numpy())
    iid, pairs = np.array(est["iid"]), np.array(est["pairs"])
    np.testing.assert_allclose(pairs.mean(0), exact, atol=4 * pairs.std(0).max() / 3000 ** .5)
    np.testing.assert_allclose(iid.mean(0), exact, atol=4 * iid.std(0).max() / 3000 ** .5)
    assert pairs[:, 0].var() < 0.5 * iid[:, 0].var(), (pairs[:, 0].var(), iid[:, 0].var())


def test_partner_baseline_by_hand():
    """Pairs (1, 2), (4, 8); entry 0 takes the partner as its baseline (1 - 2, 2 - 1, 4 - 8,
    8 - 4), entry 1 leaves the pair out (-5, -4, 2.5, 6.5), as without a partner."""
    score = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [2.0, 2.0], [0.0, 0.0]])
    values = torch.tensor([1.0, 2.0, 4.0, 8.0])
    got = score_weighted(score, values, None, "loo", pairs=True,
                         partner=torch.tensor([True, False]))
    np.testing.assert_allclose(got.numpy(), [(-1.0 - 1.0 - 8.0 + 0.0) / 4, 1.0], rtol=1e-12)
    for bad in ({"pairs": False}, {"baseline": "mean"}, {"weights": torch.full((4,), 0.25)}):
        kw = {"weights": None, "baseline": "loo", "pairs": True, **bad}
        with pytest.raises(ValueError, match="partner baseline needs"):
            score_weighted(score, values, kw["weights"], kw["baseline"], kw["pairs"],
                           partner=torch.tensor([True, False]))


def test_paired_rows_are_unbiased_and_cancel_what_the_pair_shares():
    """f = 3 w^2 + x + [c = b]: w ~ N(0, 1) fixed (the layout, a large effect), x ~ N(0.5, 1)
    and c ~ softmax(0, 0.5) free. d/dmean = 1, d/dlog_std = 0, d/dlogits = p1 (1 - p1) *
    (-1, 1). Pairs sharing w with the partner as every entry's baseline hit all four with a
    fraction of the i.i.d. variance: the partner removes the layout's 3 w^2."""
    rng = np.random.default_rng(0)
    space = ParameterSpace.from_dict({"format": "autosim.space", "version": 1, "params": [
        {"name": "w", "kind": "normal", "mean": [0.0], "log_std": [0.0], "fixed": True},
        {"name": "x", "kind": "normal", "mean": [0.5], "log_std": [0.0]},
        {"name": "c", "kind": "categorical", "choices": ["a", "b"], "logits": [0.0, 0.5]}]})
    p1 = 1 / (1 + np.exp(-0.5))
    free = space.free_mask
    exact = np.array([1.0, 0.0, -p1 * (1 - p1), p1 * (1 - p1)])
    partner = torch.ones(space.psi_dim, dtype=torch.bool)
    est = {"iid": [], "paired": []}
    for _ in range(3000):
        for kind in est:
            lat = space.sample(16, rng, paired=kind == "paired")
            score = torch.tensor(space.score(lat))
            values = torch.tensor(3.0 * lat[:, 0] ** 2 + lat[:, 1] + lat[:, 2])
            est[kind].append(score_weighted(
                score, values, None, "loo", pairs=kind == "paired",
                partner=partner if kind == "paired" else None).numpy()[free])
    iid, paired = np.array(est["iid"]), np.array(est["paired"])
    for e in (iid, paired):
        np.testing.assert_allclose(e.mean(0), exact, atol=4 * e.std(0).max() / 3000 ** .5)
    assert (paired.var(0) < 0.5 * iid.var(0)).all(), (paired.var(0), iid.var(0))


@pytest.mark.parametrize("kind", ["iid", "antithetic", "paired"])
def test_the_estimate_knows_its_own_sampling_variance(kind):
    """estimate_variance from one draw of K samples against the spread of the estimate over
    2,000 independent draws (the problem of the antithetic test above), entry by entry."""
    rng = np.random.default_rng(1)
    space = ParameterSpace.from_dict({"format": "autosim.space", "version": 1, "params": [
        {"name": "x", "kind": "normal", "mean": [0.5], "log_std": [0.0]},
        {"name": "c", "kind": "categorical", "choices": ["a", "b"], "logits": [0.0, 0.5]},
        {"name": "w", "kind": "normal", "mean": [0.0], "log_std": [0.0], "fixed": True}]})
    pairs = kind != "iid"
    partner = torch.ones(space.psi_dim, dtype=torch.bool) if kind == "paired" else None
    est, var = [], []
    for _ in range(2000):
        lat = space.sample(32, rng, antithetic=kind == "antithetic", paired=kind == "paired")
        f = (lat[:, 0] - 1.0) ** 2 + 2.0 * lat[:, 1] + lat[:, 2] ** 2
        terms = score_terms(torch.tensor(space.score(lat)), torch.tensor(f), None, "loo",
                            pairs=pairs, partner=partner)[:, space.free_mask]
        est.append(terms.sum(0).numpy())
        var.append(estimate_variance(terms, pairs).numpy())
    np.testing.assert_allclose(np.mean(var, 0), np.var(est, 0), rtol=0.15)
    one = torch.ones(1, 3)
    assert torch.isinf(estimate_variance(one)).all()  # one sample: unknown, never "certain"


def test_hypergradient_reports_its_variance_only_for_equal_weight_samples():
    w = torch.tensor([0.3, -0.2], requires_grad=True)
    x = torch.tensor([[1.0, 2.0], [0.5, -1.0], [2.0, 0.0], [-1.0, 1.0]])
    score = torch.tensor([[1.0], [-0.5], [0.2], [2.0]])
    kw = dict(approx="linear", params=[w], per_sample_loss=lambda: (x @ w) ** 2,
              val_loss=lambda: (w ** 2).sum(), score=score)
    res = hypergradient(**kw)
    terms = score_terms(score, res.directional, None, "loo")
    torch.testing.assert_close(res.grad, -terms.sum(0))
    torch.testing.assert_close(res.grad_var, 4 * terms.var(0))
    assert hypergradient(**kw, weights=torch.full((4,), 0.25)).grad_var is None


def test_no_samples_is_a_clear_error_not_a_zero_division():
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="K >= 1"):
        hypergradient(approx="linear", params=[w], per_sample_loss=lambda: w.sum()[None],
                      val_loss=lambda: w.sum(), score=torch.zeros(0, 3))
    with pytest.raises(ValueError, match="K = 0"):
        score_weighted(torch.zeros(0, 3), torch.zeros(0), None, "loo")


def test_mean_baseline_with_importance_weights_by_hand():
    """'mean': subtract the weighted mean of the values (self-normalised weights)."""
    score = torch.tensor([[1.0], [-1.0], [2.0]], dtype=torch.float64)
    values = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    w = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)
    # weighted mean 0.5 + 0.5 + 1 = 2; centred (-1, 0, 2); sum w s v = -0.5 + 0 + 1 = 0.5
    got = score_weighted(score, values, w, "mean")
    np.testing.assert_allclose(got.numpy(), [0.5], rtol=1e-12)
    # given weights, 'loo' subtracts nothing: 0.5 - 0.5 + 2 = 2
    np.testing.assert_allclose(score_weighted(score, values, w, "loo").numpy(), [2.0])


def test_normalised_directional_derivatives_by_hand():
    """l_k = x_k . w, so grad l_k = x_k; linear: v = g_val = c. Normalised, each x_k . c is
    divided by |x_k| and multiplied by the mean |x|."""
    x = torch.tensor([[3.0, 4.0], [0.0, 1.0], [6.0, 8.0]], dtype=torch.float64)
    c = torch.tensor([1.0, 2.0], dtype=torch.float64)
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    score = torch.tensor([[1.0], [0.0], [-1.0]], dtype=torch.float64)
    kwargs = dict(approx="linear", params=[w], per_sample_loss=lambda: x @ w,
                  val_loss=lambda: c @ w, score=score, baseline="none")
    raw = hypergradient(**kwargs)
    np.testing.assert_allclose(raw.directional.numpy(), [11.0, 2.0, 22.0])
    norm = hypergradient(**kwargs, normalise=True)
    mean_norm = (5.0 + 1.0 + 10.0) / 3
    want = np.array([11.0 / 5, 2.0 / 1, 22.0 / 10]) * mean_norm
    # grad = -(1/3) sum_k score_k d_k = -(d_0 - d_2) / 3
    np.testing.assert_allclose(norm.grad.numpy(), [-(want[0] - want[2]) / 3], rtol=1e-12)
    np.testing.assert_allclose(raw.grad.numpy(), [-(11.0 - 22.0) / 3], rtol=1e-12)
