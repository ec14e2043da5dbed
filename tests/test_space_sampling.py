"""Stratified (Latin hypercube) sampling and active_if conditions of a ParameterSpace.

Both exist to cut the variance of AutoSimulate's score-function estimate without biasing it,
so the tests check the two properties that make that true: every stratified row is an exact
draw from q_psi, and dropping the score of an unused parameter leaves the expectation alone.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from protocol.space import ParameterSpace, SpaceError


def space(**extra) -> ParameterSpace:
    return ParameterSpace.from_dict({"format": "autosim.space", "version": 1, "name": "s",
                                     "params": [
        {"name": "count", "kind": "categorical", "choices": ["1", "2", "3"],
         "logits": [0.3, -0.2, 0.5]},
        {"name": "on", "kind": "bernoulli", "logit": 0.4},
        {"name": "a", "kind": "normal", "mean": [1.0, -2.0], "log_std": [-0.3, 0.2]},
        {"name": "b", "kind": "normal", "mean": [0.5], "log_std": [0.1],
         "active_if": {"count": ["2", "3"]}},
        {"name": "c", "kind": "categorical", "choices": ["x", "y"], "logits": [0.0, 1.0],
         "active_if": {"count": ["3"], "on": [True]}},
    ], **extra})


def test_stratified_rows_fill_every_stratum_once_per_column() -> None:
    s = space()
    n = 50
    x = s.sample(n, np.random.default_rng(0), stratified=True)
    sl = s.latent_slices
    # normals: the n standard-normal CDF values land one in each of n equal strata
    from statistics import NormalDist
    for name in ("a", "b"):
        p = s.params[s.names.index(name)]
        for j in range(p.dim):
            z = (x[:, sl[name]][:, j] - p.mean[j]) / np.exp(p.log_std[j])
            u = np.array([NormalDist().cdf(v) for v in z])
            assert sorted(np.floor(u * n).astype(int)) == list(range(n))
    # categoricals and bernoullis: counts within one of n * p
    probs = np.exp([0.3, -0.2, 0.5]) / np.exp([0.3, -0.2, 0.5]).sum()
    counts = np.bincount(x[:, sl["count"]][:, 0].astype(int), minlength=3)
    assert np.all(np.abs(counts - n * probs) <= 1.0), (counts, n * probs)
    p_on = 1 / (1 + np.exp(-0.4))
    assert abs(x[:, sl["on"]].sum() - n * p_on) <= 1.0
    s.validate_latents(x)  # inside the support


def test_stratified_rows_are_exact_draws_and_reproducible() -> None:
    s = space()
    rng = np.random.default_rng(1)
    # many small stratified batches: the pooled rows follow q_psi (means and variances)
    x = np.concatenate([s.sample(4, rng, stratified=True) for _ in range(5000)])
    a = x[:, s.latent_slices["a"]]
    np.testing.assert_allclose(a.mean(0), [1.0, -2.0], atol=0.03)
    np.testing.assert_allclose(a.std(0), np.exp([-0.3, 0.2]), rtol=0.03)
    probs = np.exp([0.3, -0.2, 0.5]) / np.exp([0.3, -0.2, 0.5]).sum()
    freq = np.bincount(x[:, s.latent_slices["count"]][:, 0].astype(int), minlength=3) / len(x)
    np.testing.assert_allclose(freq, probs, atol=0.01)
    np.testing.assert_array_equal(s.sample(7, np.random.default_rng(3), stratified=True),
                                  s.sample(7, np.random.default_rng(3), stratified=True))
    assert s.sample(0, rng, stratified=True).shape == (0, s.latent_dim)


def test_iid_sampling_streams_are_unchanged_by_the_quantile_refactor() -> None:
    """Categoricals and bernoullis now sample through their quantile function; the draws
    must be the same numbers as the direct formulas from the same generator."""
    s = space()
    x = s.sample(6, np.random.default_rng(5))
    rng = np.random.default_rng(5)
    u_count = rng.random(6)
    cdf = np.cumsum(np.exp([0.3, -0.2, 0.5]) / np.exp([0.3, -0.2, 0.5]).sum())
    np.testing.assert_array_equal(x[:, 0], np.searchsorted(cdf, u_count, side="right"))
    u_on = rng.random(6)
    np.testing.assert_array_equal(x[:, 1], (u_on < 1 / (1 + np.exp(-0.4))).astype(float))


def test_active_mask_follows_the_conditions() -> None:
    s = space()
    rows = np.array([[0, 1, 0, 0, 0, 0],    # count 1: b, c inactive
                     [1, 0, 0, 0, 0, 1],    # count 2: b active; c needs count 3
                     [2, 0, 0, 0, 0, 1],    # count 3 but on false: c inactive
                     [2, 1, 0, 0, 0, 0]], dtype=float)
    act = s.active(rows)
    assert act.tolist() == [[True, True, True, False, False],
                            [True, True, True, True, False],
                            [True, True, True, True, False],
                            [True, True, True, True, True]]
    score = s.score(rows, active_only=True)
    full = s.score(rows)
    for i, name in enumerate(s.names):
        sl = s.psi_slices[name]
        np.testing.assert_array_equal(score[act[:, i], sl], full[act[:, i], sl])
        assert np.all(score[~act[:, i], sl] == 0.0)


def test_dropping_inactive_scores_keeps_the_expectation() -> None:
    """E[f(s) score(s)] with f blind to inactive parameters: the same with and without them
    (to Monte-Carlo error), and with a smaller spread per sample."""
    s = space()
    x = s.sample(200_000, np.random.default_rng(2))
    sl = s.latent_slices
    count = x[:, sl["count"]][:, 0]
    f = x[:, sl["a"]][:, 0] + np.where(count >= 1, x[:, sl["b"]][:, 0], 0.0)
    full, dropped = s.score(x), s.score(x, active_only=True)
    g_full, g_drop = (f[:, None] * full).mean(0), (f[:, None] * dropped).mean(0)
    se = (f[:, None] * full).std(0) / np.sqrt(len(x))
    assert np.all(np.abs(g_full - g_drop) < 5 * se + 1e-12)
    b = s.psi_slices["b"]
    assert np.all((f[:, None] * dropped)[:, b].var(0) < (f[:, None] * full)[:, b].var(0))
    assert abs(g_drop[b][0]) > 10 * se[b][0]  # the signal is there, not zero


def test_conditions_round_trip_and_bad_conditions_are_named() -> None:
    s = space()
    assert ParameterSpace.from_json(s.to_json()) == s
    assert json.loads(s.to_json())["params"][3]["active_if"] == {"count": ["2", "3"]}
    base = space().to_dict()

    def with_cond(cond, name="b") -> dict:
        d = json.loads(json.dumps(base))
        next(p for p in d["params"] if p["name"] == name)["active_if"] = cond
        return d

    for cond, msg in [({"nope": ["1"]}, "unknown parameter"),
                      ({"count": ["7"]}, "unknown choice '7'"),
                      ({"on": ["yes"]}, "expected true/false"),
                      ({"a": [1.0]}, "must be a categorical or bernoulli"),
                      ({"c": ["x"]}, "itself conditional"),
                      ({"b": ["x"]}, "other parameters"),
                      ({"count": []}, "non-empty list"),
                      ([], "non-empty object")]:
        with pytest.raises(SpaceError, match=msg):
            ParameterSpace.from_dict(with_cond(cond))


def test_antithetic_pairs_mirror_free_normals_share_the_rest_and_are_exact_draws() -> None:
    s = ParameterSpace.from_dict({"format": "autosim.space", "version": 1, "params": [
        {"name": "count", "kind": "categorical", "choices": ["1", "2", "3"],
         "logits": [0.3, -0.2, 0.5]},
        {"name": "on", "kind": "bernoulli", "logit": 0.4},
        {"name": "a", "kind": "normal", "mean": [1.0, -2.0], "log_std": [-0.3, 0.2]},
        {"name": "held", "kind": "normal", "mean": [5.0], "log_std": [0.0], "fixed": True}]})
    sl = s.latent_slices
    x = s.sample(2000, np.random.default_rng(0), antithetic=True)
    first, second = x[0::2], x[1::2]
    np.testing.assert_allclose(first[:, sl["a"]] + second[:, sl["a"]],
                               np.broadcast_to([2.0, -4.0], (1000, 2)), atol=1e-9)
    for name in ("count", "on", "held"):  # shared within a pair
        np.testing.assert_array_equal(first[:, sl[name]], second[:, sl[name]])
    assert np.std(first[:, sl["held"]]) > 0.5   # a fixed normal is still drawn, not mirrored
    # every row an exact draw: marginal moments and choice frequencies
    a = x[:, sl["a"]]
    np.testing.assert_allclose(a.std(0), np.exp([-0.3, 0.2]), rtol=0.06)
    probs = np.exp([0.3, -0.2, 0.5]) / np.exp([0.3, -0.2, 0.5]).sum()
    freq = np.bincount(x[:, sl["count"]][:, 0].astype(int), minlength=3) / len(x)
    np.testing.assert_allclose(freq, probs, atol=0.035)
    s.validate_latents(x)
    np.testing.assert_array_equal(s.sample(6, np.random.default_rng(3), antithetic=True),
                                  s.sample(6, np.random.default_rng(3), antithetic=True))
    with pytest.raises(SpaceError, match="odd n = 5"):
        s.sample(5, np.random.default_rng(0), antithetic=True)


def test_paired_rows_share_the_fixed_columns_draw_the_free_ones_and_are_exact_draws() -> None:
    s = ParameterSpace.from_dict({"format": "autosim.space", "version": 1, "params": [
        {"name": "count", "kind": "categorical", "choices": ["1", "2", "3"],
         "logits": [0.3, -0.2, 0.5]},
        {"name": "on", "kind": "bernoulli", "logit": 0.4},
        {"name": "shape", "kind": "categorical", "choices": ["a", "b"], "logits": [0.0, 1.0],
         "fixed": True},
        {"name": "place", "kind": "normal", "mean": [0.0], "log_std": [0.0], "fixed": True},
        {"name": "a", "kind": "normal", "mean": [1.0, -2.0], "log_std": [-0.3, 0.2]}]})
    sl = s.latent_slices
    x = s.sample(4000, np.random.default_rng(0), paired=True)
    first, second = x[0::2], x[1::2]
    for name in ("shape", "place"):  # the fixed ones: shared within a pair, still drawn
        np.testing.assert_array_equal(first[:, sl[name]], second[:, sl[name]])
    assert np.std(first[:, sl["place"]]) > 0.8
    probs = np.exp([0.3, -0.2, 0.5]) / np.exp([0.3, -0.2, 0.5]).sum()
    c1, c2 = first[:, sl["count"]][:, 0].astype(int), second[:, sl["count"]][:, 0].astype(int)
    # the free draws of a pair are independent exact draws: joint frequencies p_i p_j
    joint = np.zeros((3, 3))
    np.add.at(joint, (c1, c2), 1.0 / len(c1))
    np.testing.assert_allclose(joint, np.outer(probs, probs), atol=0.03)
    a1, a2 = first[:, sl["a"]], second[:, sl["a"]]
    np.testing.assert_allclose(x[:, sl["a"]].std(0), np.exp([-0.3, 0.2]), rtol=0.06)
    assert abs(np.corrcoef(a1[:, 0], a2[:, 0])[0, 1]) < 0.06
    on = x[:, sl["on"]][:, 0]
    assert abs(on.mean() - 1 / (1 + np.exp(-0.4))) < 0.03
    s.validate_latents(x)
    np.testing.assert_array_equal(s.sample(6, np.random.default_rng(3), paired=True),
                                  s.sample(6, np.random.default_rng(3), paired=True))
    with pytest.raises(SpaceError, match="paired sampling draws pairs, got an odd n = 5"):
        s.sample(5, np.random.default_rng(0), paired=True)
    with pytest.raises(SpaceError, match="choose one"):
        s.sample(6, np.random.default_rng(0), paired=True, antithetic=True)
