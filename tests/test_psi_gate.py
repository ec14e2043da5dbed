"""The evidence gate on psi steps (psi_optim.EvidenceGate): entries whose averaged
hypergradient is within its standard error of zero stop, entries with a steady signal move."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer.psi_optim import EvidenceGate


def test_first_factor_by_hand():
    """m = (1 - b) g and V = (1 - b)^2 var, so the first factor is 1 - c var / g^2."""
    gate = EvidenceGate(strength=2.0, beta=0.9)
    f = gate.factor(np.array([2.0, 1.0, -3.0]), np.array([1.0, 1.0, 0.0]))
    np.testing.assert_allclose(f, [1 - 2 * 1 / 4, 0.0, 1.0])


def test_noise_is_held_and_a_steady_signal_passes():
    """Two entries with the same per-step noise (sd 1, the estimator's own variance given):
    one pure noise, one with a mean of 0.5 (a per-step signal-to-noise of 0.5)."""
    rng = np.random.default_rng(0)
    gate = EvidenceGate(strength=1.0)
    factors = np.array([gate.factor(rng.normal([0.0, 0.5], 1.0), np.ones(2))
                        for _ in range(400)])[50:]
    assert factors[:, 0].mean() < 0.2, factors[:, 0].mean()
    assert factors[:, 1].mean() > 0.5, factors[:, 1].mean()
    assert factors[:, 1].mean() > 3 * factors[:, 0].mean()


def test_no_evidence_is_a_zero_factor_never_nan():
    gate = EvidenceGate(strength=1.0)
    f = gate.factor(np.array([0.0, 1.0, np.nan]), np.array([0.0, np.inf, 1.0]))
    np.testing.assert_array_equal(f, [0.0, 0.0, 0.0])


def test_state_round_trip_continues_the_same_averages():
    rng = np.random.default_rng(1)
    a = EvidenceGate(strength=1.0)
    for _ in range(5):
        a.factor(rng.normal(size=3), np.ones(3))
    b = EvidenceGate(strength=1.0)
    b.load_state_dict(a.state_dict())
    g = rng.normal(size=3)
    np.testing.assert_array_equal(a.factor(g, np.ones(3)), b.factor(g, np.ones(3)))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_strength_is_an_error(bad):
    with pytest.raises(ValueError, match="shrink must be a positive number"):
        EvidenceGate(strength=bad)
