"""Tests for protocol.space: the distribution maths, psi handling and latents. Serialisation and
validation of specs: test_space_json.py."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from protocol.space import (
    BernoulliParam,
    CategoricalParam,
    NormalParam,
    ParameterSpace,
    SpaceError,
)
from tests.space_helpers import clevr_dict


@pytest.fixture
def space() -> ParameterSpace:
    return ParameterSpace.from_dict(clevr_dict())


def random_psi(space: ParameterSpace, rng: np.random.Generator) -> np.ndarray:
    """A psi well inside the valid range: log_std entries in [-1, 1]."""
    psi = rng.normal(0.0, 1.5, space.psi_dim)
    for i, label in enumerate(space.psi_labels):
        if ".log_std" in label:
            psi[i] = rng.uniform(-1.0, 1.0)
    return psi


def single(param) -> ParameterSpace:
    return ParameterSpace([param])


SINGLE_SPACES = {
    "normal1": single(NormalParam("a", mean=[0.3], log_std=[0.2])),
    "normal2": single(NormalParam("loc", mean=[1.0, -2.0], log_std=[-0.5, 0.4])),
    "categorical": single(CategoricalParam("m", choices=["a", "b", "c", "d"],
                                           logits=[0.1, -0.3, 1.0, 0.0])),
    "bernoulli": single(BernoulliParam("s", logit=-0.7)),
}
ALL_SPACES = {**SINGLE_SPACES, "mixed": ParameterSpace.from_dict(clevr_dict())}


# ---- maths ----------------------------------------------------------------------------------
def reference_log_prob(space: ParameterSpace, x: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """The density written out independently of the module (scipy for the Gaussian)."""
    from scipy import stats

    out = np.zeros(len(x))
    for p in space.params:
        th, xs = psi[space.psi_slices[p.name]], x[:, space.latent_slices[p.name]]
        if isinstance(p, NormalParam):
            d = p.dim
            out += stats.norm.logpdf(xs, loc=th[:d], scale=np.exp(th[d:])).sum(axis=1)
        elif isinstance(p, CategoricalParam):
            probs = np.exp(th) / np.exp(th).sum()
            out += np.log(probs[xs[:, 0].astype(int)])
        else:
            prob = 1.0 / (1.0 + math.exp(-th[0]))
            out += np.where(xs[:, 0] == 1.0, math.log(prob), math.log(1.0 - prob))
    return out


@pytest.mark.parametrize("key", ALL_SPACES)
def test_log_prob_matches_reference(key: str) -> None:
    space, rng = ALL_SPACES[key], np.random.default_rng(1)
    for _ in range(3):
        psi = random_psi(space, rng)
        x = space.with_psi(psi).sample(50, rng)
        np.testing.assert_allclose(space.log_prob(x, psi), reference_log_prob(space, x, psi),
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(space.with_psi(psi).log_prob(x), space.log_prob(x, psi))


@pytest.mark.parametrize("key", ALL_SPACES)
def test_score_matches_finite_differences(key: str) -> None:
    space, rng, h = ALL_SPACES[key], np.random.default_rng(2), 1e-5
    for _ in range(4):
        psi = random_psi(space, rng)
        x = space.with_psi(psi).sample(7, rng)
        fd = np.empty((len(x), space.psi_dim))
        for j in range(space.psi_dim):
            e = np.zeros(space.psi_dim)
            e[j] = h
            fd[:, j] = (space.log_prob(x, psi + e) - space.log_prob(x, psi - e)) / (2 * h)
        np.testing.assert_allclose(space.score(x, psi), fd, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("key", ALL_SPACES)
def test_expected_score_is_zero(key: str) -> None:
    space, n = ALL_SPACES[key], 20000
    s = space.score(space.sample(n, np.random.default_rng(3)))
    se = s.std(axis=0) / math.sqrt(n)
    assert np.all(np.abs(s.mean(axis=0)) < 5 * se + 1e-12), (s.mean(axis=0), se)


def test_sample_statistics_match_psi() -> None:
    space = ParameterSpace.from_dict(clevr_dict())
    n = 20000
    x = space.sample(n, np.random.default_rng(4))
    assert x.shape == (n, space.latent_dim) and x.dtype == np.float64
    for p in space.params:
        xs = x[:, space.latent_slices[p.name]]
        if isinstance(p, NormalParam):
            mu, sd = np.array(p.mean), np.exp(p.log_std)
            assert np.all(np.abs(xs.mean(0) - mu) < 5 * sd / math.sqrt(n))
            assert np.all(np.abs(xs.std(0) - sd) < 5 * sd / math.sqrt(2 * n))
        elif isinstance(p, CategoricalParam):
            probs = np.exp(p.logits) / np.exp(p.logits).sum()
            freq = np.bincount(xs[:, 0].astype(int), minlength=len(p.choices)) / n
            assert np.all(np.abs(freq - probs) < 5 * np.sqrt(probs * (1 - probs) / n))
            assert list(p.summary()["probs"].values()) == pytest.approx(list(probs))
        else:
            prob = 1 / (1 + math.exp(-p.logit))
            assert abs(xs.mean() - prob) < 5 * math.sqrt(prob * (1 - prob) / n)
            assert p.summary()["p"] == pytest.approx(prob)


def test_extreme_logits_are_stable() -> None:
    space = ParameterSpace([CategoricalParam("c", ["a", "b", "c"], [800.0, 0.0, -800.0]),
                            BernoulliParam("on", 800.0), BernoulliParam("off", -800.0)])
    x = space.sample(100, np.random.default_rng(5))
    assert np.all(x == [0.0, 1.0, 0.0])
    np.testing.assert_allclose(space.log_prob(x), 0.0, atol=1e-300)
    assert np.all(np.isfinite(space.score(x)))
    rare = np.array([[2.0, 0.0, 1.0]])
    np.testing.assert_allclose(space.log_prob(rare), [-1600.0 - 800.0 - 800.0])
    np.testing.assert_allclose(space.score(rare), [[-1, 0, 1, -1, 1]], atol=1e-300)


def test_sampling_is_reproducible_and_independent_of_global_state(space) -> None:
    np.random.seed(0)
    a = space.sample(20, np.random.default_rng(42))
    np.random.seed(1)
    b = space.sample(20, np.random.default_rng(42))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, space.sample(20, np.random.default_rng(43)))
    assert space.sample(0, np.random.default_rng(0)).shape == (0, space.latent_dim)
    with pytest.raises(TypeError):
        space.sample(3, None)  # type: ignore[arg-type]
    with pytest.raises(SpaceError, match="n:"):
        space.sample(-1, np.random.default_rng(0))


# ---- psi handling -----------------------------------------------------------------------------
def test_layout_labels_and_mask(space) -> None:
    assert space.names == ["key_light", "location", "material", "shadows"]
    assert space.psi_dim == 2 + 4 + 3 + 1 and space.latent_dim == 1 + 2 + 1 + 1
    assert space.psi_labels == [
        "key_light.mean", "key_light.log_std", "location.mean[0]", "location.mean[1]",
        "location.log_std[0]", "location.log_std[1]", "material.logit[rubber]",
        "material.logit[metal]", "material.logit[glass]", "shadows.logit"]
    assert space.psi_slices["material"] == slice(6, 9)
    assert space.latent_slices["location"] == slice(1, 3)
    np.testing.assert_array_equal(space.free_mask, [True] * 9 + [False])
    np.testing.assert_array_equal(space.psi, [3, -0.5, 0.5, -1, 0, -1, 0, 0.5, -1, 0.3])
    freed = space.with_fixed("shadows", False).with_fixed("location", True)
    np.testing.assert_array_equal(freed.free_mask, [1, 1, 0, 0, 0, 0, 1, 1, 1, 1])
    with pytest.raises(SpaceError, match="unknown parameter 'nope'.*key_light"):
        space.with_fixed("nope", True)
    space.psi[0] = 99.0  # a copy: the space is unchanged
    assert space.psi[0] == 3.0


def test_with_psi_and_errors(space) -> None:
    psi = space.psi + 0.25
    moved = space.with_psi(psi)
    np.testing.assert_array_equal(moved.psi, psi)
    assert moved.params[2].logits == (0.25, 0.75, -0.75)
    assert moved.presets == space.presets and space.psi[0] == 3.0
    with pytest.raises(SpaceError, match="expected shape"):
        space.with_psi(psi[:-1])
    bad = psi.copy()
    bad[3] = np.nan
    with pytest.raises(SpaceError, match=r"psi\[3\] \(location.mean\[1\]\): must be finite"):
        space.with_psi(bad)
    bad = psi.copy()
    bad[4] = 6.0
    with pytest.raises(SpaceError, match=r"location.log_std\[0\]\): must be within"):
        space.with_psi(bad)


def test_pack_unpack_psi(space) -> None:
    named = space.unpack_psi()
    assert named == {"key_light": {"mean": [3.0], "log_std": [-0.5]},
                     "location": {"mean": [0.5, -1.0], "log_std": [0.0, -1.0]},
                     "material": {"logits": [0.0, 0.5, -1.0]}, "shadows": {"logit": 0.3}}
    np.testing.assert_array_equal(space.pack_psi(named), space.psi)
    psi = random_psi(space, np.random.default_rng(6))
    np.testing.assert_array_equal(space.pack_psi(space.unpack_psi(psi)), psi)
    json.dumps(space.unpack_psi(psi))  # plain floats and lists
    partial = space.pack_psi({"material": {"logits": [1, 2, 3]}, "key_light": {"mean": 4.0}})
    np.testing.assert_array_equal(partial, [4, -0.5, 0.5, -1, 0, -1, 1, 2, 3, 0.3])
    np.testing.assert_array_equal(space.pack_psi({}, base=psi), psi)
    with pytest.raises(SpaceError, match="named.lamp: unknown parameter"):
        space.pack_psi({"lamp": {"mean": [1.0]}})
    with pytest.raises(SpaceError, match="named.key_light.std: unknown key"):
        space.pack_psi({"key_light": {"std": [1.0]}})
    with pytest.raises(SpaceError, match=r"named.material.logits: expected 3 values"):
        space.pack_psi({"material": {"logits": [1.0]}})


def test_presets(space) -> None:
    val = space.preset("validation")
    assert val.unpack_psi()["key_light"] == {"mean": [5.0], "log_std": [-0.5]}
    assert val.unpack_psi()["shadows"] == {"logit": -2.0}
    assert val.unpack_psi()["location"] == space.unpack_psi()["location"]
    with pytest.raises(SpaceError, match=r"unknown preset 'test' \(known: validation\)"):
        space.preset("test")


# ---- latents ----------------------------------------------------------------------------------
def test_pack_unpack_latent_and_clip(space) -> None:
    row = space.sample(1, np.random.default_rng(7))[0]
    named = space.unpack_latent(row)
    assert isinstance(named["key_light"], float) and len(named["location"]) == 2
    assert named["material"] in ("rubber", "metal", "glass")
    assert isinstance(named["shadows"], bool)
    np.testing.assert_array_equal(space.pack_latent(named), row)
    by_index = space.pack_latent({"key_light": 1.0, "location": [0.0, 2.0], "material": 1,
                                  "shadows": 1})
    np.testing.assert_array_equal(by_index, [1.0, 0.0, 2.0, 1.0, 1.0])
    assert space.unpack_latent(by_index)["material"] == "metal"
    clipped = space.clip_latent({"key_light": -3.0, "location": [9.0, -9.0], "shadows": True})
    assert clipped == {"key_light": 0.0, "location": [9.0, -9.0], "shadows": True}
    assert space.clip_latent({"key_light": 12.0})["key_light"] == 10.0
    with pytest.raises(SpaceError, match="missing"):
        space.pack_latent({"key_light": 1.0})
    with pytest.raises(SpaceError, match="latent.material: unknown choice 'wood'"):
        space.pack_latent({**named, "material": "wood"})
    with pytest.raises(SpaceError, match="latent.location: expected 2 values"):
        space.pack_latent({**named, "location": 1.0})
    with pytest.raises(SpaceError, match="unknown parameter 'fog'"):
        space.clip_latent({"fog": 1.0})


@pytest.mark.parametrize(("latents", "match"), [
    (np.zeros(4), r"expected shape \(5,\) or \(n, 5\), got \(4,\)"),
    (np.zeros((2, 6)), r"got \(2, 6\)"),
    (np.zeros((1, 1, 5)), r"got \(1, 1, 5\)"),
    ([[1.0, 0.0, 0.0, 1.5, 0.0]], r"latents\[0\] \('material'\): category index must be an "
                                  r"integer in 0..2, got 1.5"),
    ([[1.0, 0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 3.0, 0.0]], r"latents\[1\] \('material'\)"),
    ([[1.0, 0.0, 0.0, -1.0, 0.0]], r"'material'.*got -1.0"),
    ([[1.0, 0.0, 0.0, 0.0, 0.5]], r"latents\[0\] \('shadows'\): must be 0 or 1"),
    ([[1.0, np.inf, 0.0, 0.0, 0.0]], r"latents\[0, 1\] \('location'\): must be finite"),
    ([[np.nan, 0.0, 0.0, 0.0, 0.0]], r"'key_light'\): must be finite"),
    ([["a", 0.0, 0.0, 0.0, 0.0]], r"latents: expected an array of numbers"),
])
def test_validate_latents_rejects(space, latents, match) -> None:
    with pytest.raises(SpaceError, match=match):
        space.validate_latents(latents)
    with pytest.raises(SpaceError):
        space.log_prob(latents)


def test_validate_latents_accepts(space) -> None:
    one = [2.0, 0.0, 1.0, 2.0, 1.0]
    assert space.validate_latents(one).shape == (1, 5)
    assert space.validate_latents([one, one]).shape == (2, 5)
    assert space.validate_latents(np.zeros((0, 5))).shape == (0, 5)


def test_summary(space) -> None:
    assert space.params[0].summary() == {"mean": [3.0], "std": [math.exp(-0.5)]}
    assert set(space.params[2].summary()["probs"]) == {"rubber", "metal", "glass"}
    assert space.params[3].summary()["p"] == pytest.approx(1 / (1 + math.exp(-0.3)))
