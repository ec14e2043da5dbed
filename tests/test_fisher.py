"""The closed-form Fisher (protocol.fisher) against E[score score^T] by exact quadrature, and the
natural-gradient psi step (optimizer.psi_optim) that uses it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from optimizer.psi_optim import NaturalStep, make_psi_optimizer
from protocol.fisher import fisher_norm2, natural_direction
from protocol.space import BernoulliParam, CategoricalParam, NormalParam, ParameterSpace
from tests.test_autosimulate import _algo

SPACE = ParameterSpace([
    NormalParam("light", mean=[3.0], log_std=[-0.5], low=[0.0], high=[10.0]),
    NormalParam("loc", mean=[0.5, -1.0], log_std=[0.0, -1.0]),
    CategoricalParam("material", choices=["rubber", "metal", "glass"], logits=[0.0, 0.5, -1.0]),
    BernoulliParam("shadows", logit=0.3),
])


def quadrature(space: ParameterSpace) -> tuple[np.ndarray, np.ndarray]:
    """Latents and weights whose weighted sums are exact expectations under q_psi of any
    polynomial of degree <= 9 in the normals (Gauss-Hermite) times any function of the
    discrete ones (enumerated)."""
    nodes, w = np.polynomial.hermite_e.hermegauss(5)
    w = w / w.sum()
    axes = []  # per latent column: (values, weights)
    for p in space.params:
        if isinstance(p, NormalParam):
            for m, ls in zip(p.mean, p.log_std):
                axes.append((m + np.exp(ls) * nodes, w))
        elif isinstance(p, CategoricalParam):
            e = np.exp(np.asarray(p.logits) - max(p.logits))
            axes.append((np.arange(len(p.choices), dtype=float), e / e.sum()))
        else:
            q = 1.0 / (1.0 + np.exp(-p.logit))
            axes.append((np.array([0.0, 1.0]), np.array([1.0 - q, q])))
    rows, weights = [], []
    for combo in itertools.product(*[range(len(v)) for v, _ in axes]):
        rows.append([axes[c][0][i] for c, i in enumerate(combo)])
        weights.append(np.prod([axes[c][1][i] for c, i in enumerate(combo)]))
    return np.array(rows), np.array(weights)


def dense_fisher(space: ParameterSpace) -> np.ndarray:
    x, w = quadrature(space)
    s = space.score(x)
    return (w[:, None] * s).T @ s


def test_the_quadrature_is_exact_for_the_scores_mean():
    x, w = quadrature(SPACE)
    assert w.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(w @ SPACE.score(x), 0.0, atol=1e-12)


def test_fisher_norm_matches_the_dense_fisher():
    f = dense_fisher(SPACE)
    rng = np.random.default_rng(0)
    for _ in range(5):
        d = rng.normal(size=SPACE.psi_dim)
        assert fisher_norm2(SPACE, d) == pytest.approx(d @ f @ d, rel=1e-9)


def test_natural_direction_is_the_pseudo_inverse_of_the_dense_fisher():
    f = dense_fisher(SPACE)
    rng = np.random.default_rng(1)
    for _ in range(5):
        g = f @ rng.normal(size=SPACE.psi_dim)  # a gradient of log q is always in F's range
        nat = natural_direction(SPACE, g)
        np.testing.assert_allclose(f @ nat, g, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(nat, np.linalg.pinv(f, rcond=1e-10) @ g, rtol=1e-7,
                                   atol=1e-9)


def test_half_the_fisher_norm_is_the_kl_of_a_small_step():
    x, w = quadrature(SPACE)
    rng = np.random.default_rng(2)
    d = 1e-3 * rng.normal(size=SPACE.psi_dim)
    kl = w @ (SPACE.log_prob(x) - SPACE.log_prob(x, SPACE.psi + d))
    assert kl == pytest.approx(0.5 * fisher_norm2(SPACE, d), rel=1e-2)


def test_a_natural_step_never_exceeds_its_kl_and_reaches_it_when_gradients_agree():
    free = SPACE.free_mask
    psi = SPACE.psi
    rng = np.random.default_rng(3)
    noisy = NaturalStep(kl=0.05, momentum=0.9)
    for _ in range(20):
        step = noisy.direction(SPACE, psi, rng.normal(size=SPACE.psi_dim), free)
        assert NaturalStep.kl_of(SPACE, psi, step) <= 0.05 * (1 + 1e-9)
    noise_kl = NaturalStep.kl_of(SPACE, psi, step)
    steady = NaturalStep(kl=0.05, momentum=0.9)
    g = rng.normal(size=SPACE.psi_dim)
    for _ in range(3):
        step = steady.direction(SPACE, psi, g, free)
        assert NaturalStep.kl_of(SPACE, psi, step) == pytest.approx(0.05, rel=1e-9)
    assert noise_kl < 0.5 * 0.05  # gradients that cancel out make small steps
    assert float(step @ g) < 0  # a descent direction


def test_a_natural_step_leaves_fixed_entries_and_resumes_exactly():
    space = SPACE.with_fixed("loc", True)
    free, psi = space.free_mask, space.psi
    rng = np.random.default_rng(4)
    a = NaturalStep(kl=0.1, momentum=0.8)
    for _ in range(3):
        step = a.direction(space, psi, rng.normal(size=space.psi_dim), free)
        assert np.all(step[~free] == 0.0) and np.any(step[free] != 0.0)
    b = NaturalStep(kl=0.1, momentum=0.8)
    b.load_state_dict(a.state_dict())
    g = rng.normal(size=space.psi_dim)
    np.testing.assert_array_equal(a.direction(space, psi, g, free),
                                  b.direction(space, psi, g, free))


def test_a_non_finite_gradient_makes_no_step_and_leaves_the_averages_alone():
    free, psi = SPACE.free_mask, SPACE.psi
    step = NaturalStep(kl=0.05)
    g = np.random.default_rng(5).normal(size=SPACE.psi_dim)
    step.direction(SPACE, psi, g, free)
    before = step.state_dict()
    bad = g.copy()
    bad[0] = np.inf
    assert np.all(step.direction(SPACE, psi, bad, free) == 0.0)
    after = step.state_dict()
    np.testing.assert_array_equal(after["m"], before["m"])
    assert (after["s"], after["t"]) == (before["s"], before["t"])


def test_bad_psi_optimizer_settings_are_errors():
    with pytest.raises(ValueError, match="kl_step"):
        NaturalStep(kl=0.0)
    with pytest.raises(ValueError, match="psi_momentum"):
        NaturalStep(kl=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="unknown psi optimizer 'sgd'"):
        make_psi_optimizer("sgd", None, lr=0.1, kl=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="unknown psi optimizer"):
        _algo(psi_optimizer="lbfgs")


def test_autosimulate_with_natural_steps_learns_the_toy_within_its_kl():
    algo, _ = _algo(psi_optimizer="natural", kl_step=0.05)
    first = algo.step()["val_metric"]
    records = [algo.step() for _ in range(40)]
    assert all(0 < r["psi_kl"] <= 0.05 * 1.01 for r in records)  # second order, psi clamped
    last = np.mean([r["val_metric"] for r in records[-5:]])
    assert first < 0.8 and last > first + 0.15, (first, last)
