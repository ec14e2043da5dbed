"""Tests for protocol.space: (de)serialisation to JSON and validation of specs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.space import BernoulliParam, NormalParam, ParameterSpace, SpaceError
from tests.space_helpers import clevr_dict


@pytest.fixture
def space() -> ParameterSpace:
    return ParameterSpace.from_dict(clevr_dict())


# ---- serialisation ----------------------------------------------------------------------------
def test_json_round_trip_example(space) -> None:
    again = ParameterSpace.from_json(space.to_json())
    assert again.to_dict() == space.to_dict() and again == space
    np.testing.assert_array_equal(again.psi, space.psi)
    d = space.to_dict()
    assert d["params"][0]["mean"] == [3.0] and d["params"][0]["fixed"] is False
    bare = clevr_dict()
    bare["params"][0].update(mean=3, log_std=-0.5, low=0, high=10)
    assert ParameterSpace.from_dict(bare).to_dict() == d


finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
ident = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)


@st.composite
def param_dicts(draw, name: str) -> dict:
    kind = draw(st.sampled_from(["normal", "categorical", "bernoulli"]))
    d: dict = {"name": name, "kind": kind}
    if kind == "normal":
        dim = draw(st.integers(1, 3))
        d["mean"] = draw(st.lists(finite, min_size=dim, max_size=dim))
        d["log_std"] = draw(st.lists(st.floats(-10, 5), min_size=dim, max_size=dim))
        if draw(st.booleans()):
            d["low"] = draw(st.lists(finite, min_size=dim, max_size=dim))
            gaps = draw(st.lists(st.floats(1e-3, 1e3), min_size=dim, max_size=dim))
            d["high"] = [lo + g for lo, g in zip(d["low"], gaps)]
    elif kind == "categorical":
        d["choices"] = draw(st.lists(st.text(min_size=1, max_size=5), min_size=2, max_size=5,
                                     unique=True))
        d["logits"] = draw(st.lists(finite, min_size=len(d["choices"]),
                                    max_size=len(d["choices"])))
    else:
        d["logit"] = draw(finite)
    d["doc"] = draw(st.text(max_size=10))
    d["fixed"] = draw(st.booleans())
    return d


@st.composite
def space_dicts(draw) -> dict:
    names = draw(st.lists(ident, min_size=1, max_size=5, unique=True))
    params = [draw(param_dicts(n)) for n in names]
    d = {"format": "autosim.space", "version": 1, "name": draw(st.text(max_size=8)),
         "params": params, "presets": {}}
    if draw(st.booleans()):
        p = params[0]
        keys = {"normal": ("mean",), "categorical": ("logits",), "bernoulli": ("logit",)}
        d["presets"]["validation"] = {p["name"]: {k: p[k] for k in keys[p["kind"]]}}
    return d


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(space_dicts())
def test_json_round_trip_random(d: dict) -> None:
    space = ParameterSpace.from_dict(d)
    text = space.to_json()
    again = ParameterSpace.from_json(text)
    assert again.to_dict() == space.to_dict() == d
    np.testing.assert_array_equal(again.psi, space.psi)
    assert again.psi_labels == space.psi_labels
    np.testing.assert_array_equal(again.free_mask, space.free_mask)
    np.testing.assert_array_equal(space.pack_psi(space.unpack_psi()), space.psi)


def _mod(fn):
    def make() -> dict:
        d = clevr_dict()
        fn(d)
        return d
    return make


def _set_param(i: int, **kw):
    return _mod(lambda d: d["params"][i].update(kw))


BAD_SPECS = {
    "zero_dim": (_set_param(1, mean=[], log_std=[]), r"params\[1\] \('location'\).mean"),
    "unknown_kind": (_set_param(0, kind="gauss"), r"kind: unknown kind 'gauss'.*normal"),
    "missing_kind": (_mod(lambda d: d["params"][3].pop("kind")), r"params\[3\].*kind: missing"),
    "nan_mean": (_set_param(0, mean=[float("nan")]), r"key_light'\).mean\[0\]: must be finite"),
    "inf_logit": (_set_param(3, logit=float("inf")), r"shadows'\).logit: must be finite"),
    "log_std_len": (_set_param(1, log_std=[0.0]), r"location'\).log_std: expected 2 values"),
    "logits_len": (_set_param(2, logits=[0.0, 1.0]), r"material'\).logits: expected 3 values"),
    "low_len": (_set_param(1, low=[0.0]), r"location'\).low: expected 2"),
    "bool_mean": (_set_param(0, mean=[True]), r"mean\[0\]: expected a number, got bool"),
    "bool_logit": (_set_param(3, logit=False), r"logit: expected a number, got bool"),
    "str_logit": (_set_param(3, logit="0.5"), r"logit: expected a number, got str"),
    "dup_name": (_set_param(3, name="key_light"), r"params\[3\].name: duplicate name"),
    "bad_name": (_set_param(0, name="1light"), r"params\[0\].*name: must be an identifier"),
    "unknown_key": (_set_param(0, lowe=[0.0]), r"key_light'\).lowe: unknown key"),
    "low_ge_high": (_set_param(0, low=[10.0]), r"key_light'\).low\[0\]: must be < high\[0\]"),
    "log_std_high": (_set_param(0, log_std=[5.5]), r"log_std\[0\]: must be within \[-10, 5\]"),
    "log_std_low": (_set_param(0, log_std=-11), r"log_std\[0\]: must be within"),
    "empty_choices": (_set_param(2, choices=[], logits=[]), r"material'\).choices"),
    "string_choices": (_set_param(2, choices="abc"), r"material'\).choices"),
    "dup_choices": (_set_param(2, choices=["a", "b", "a"]), r"choices\[2\]: duplicate"),
    "empty_choice": (_set_param(2, choices=["", "b", "c"]), r"choices\[0\]: expected a non-"),
    "missing_field": (_mod(lambda d: d["params"][1].pop("log_std")), r"log_std: missing"),
    "fixed_not_bool": (_set_param(0, fixed=1), r"key_light'\).fixed: expected true/false"),
    "param_not_dict": (_mod(lambda d: d["params"].__setitem__(1, [1.0])), r"params\[1\]: exp"),
    "params_not_list": (_mod(lambda d: d.__setitem__("params", {})), r"params: expected a list"),
    "missing_params": (_mod(lambda d: d.pop("params")), r"params: missing required field"),
    "bad_format": (_mod(lambda d: d.__setitem__("format", "x")), r"format: expected"),
    "bad_version": (_mod(lambda d: d.__setitem__("version", 2)), r"version: expected 1"),
    "bool_version": (_mod(lambda d: d.__setitem__("version", True)), r"version: expected 1"),
    "top_level_typo": (_mod(lambda d: d.__setitem__("preset", {})), r"preset: unknown key"),
    "preset_unknown_param": (_mod(lambda d: d["presets"]["validation"].update(fog={})),
                             r"presets.validation.fog: unknown parameter"),
    "preset_bad_len": (_mod(lambda d: d["presets"]["validation"].update(
        location={"mean": [1.0]})), r"presets.validation.location.mean: expected 2 values"),
    "preset_log_std": (_mod(lambda d: d["presets"]["validation"].update(
        key_light={"log_std": [9.0]})), r"presets.validation\[1\] \(key_light.log_std\)"),
    "preset_not_dict": (_mod(lambda d: d["presets"].__setitem__("validation", 3)),
                        r"presets.validation: expected an object"),
}


@pytest.mark.parametrize("key", BAD_SPECS)
def test_invalid_specs_rejected(key: str) -> None:
    make, match = BAD_SPECS[key]
    with pytest.raises(SpaceError, match=match):
        ParameterSpace.from_dict(make())


@pytest.mark.parametrize(("text", "match"), [
    ('{"format": "autosim.space", "version": 1, "params": [{"name": "a", "kind": "bernoulli",'
     ' "logit": NaN}]}', "NaN is not allowed"),
    ('{"format": "autosim.space", "version": 1, "params": [{"name": "a", "kind": "normal",'
     ' "mean": [Infinity], "log_std": [0]}]}', "Infinity is not allowed"),
    ('{"format": "autosim.space", "version": 1, "params": [{"name": "a", "kind": "bernoulli",'
     ' "logit": 1e999}]}', r"params\[0\] \('a'\).logit: must be finite"),
    ('{"format": "autosim.space", ', "json: invalid JSON"),
    ("[1, 2]", "space: expected an object, got list"),
])
def test_invalid_json_rejected(text: str, match: str) -> None:
    with pytest.raises(SpaceError, match=match):
        ParameterSpace.from_json(text)


def test_direct_construction_validates() -> None:
    with pytest.raises(SpaceError, match=r"param 'x'.log_std\[0\]: must be within"):
        NormalParam("x", mean=[0.0], log_std=[7.0])
    with pytest.raises(SpaceError, match="duplicate name 'x'"):
        ParameterSpace([BernoulliParam("x", 0.0), BernoulliParam("x", 1.0)])
    with pytest.raises(SpaceError, match=r"params\[0\]: expected a parameter"):
        ParameterSpace([{"name": "x"}])  # type: ignore[list-item]
    p = NormalParam("x", mean=2.0, log_std=0.0)
    assert p.mean == (2.0,) and p.psi_size == 2 and p.latent_size == 1
    assert copy.deepcopy(p) == p


def test_unpacked_latents_are_json_native():
    """Servers and dataset writers put unpack_latent's dict straight into JSON."""
    import json

    space = ParameterSpace.from_dict({"format": "autosim.space", "version": 1, "params": [
        {"name": "a", "kind": "normal", "mean": [0.0], "log_std": [0.0]},
        {"name": "b", "kind": "normal", "mean": [0.0, 1.0], "log_std": [0.0, 0.0]},
        {"name": "c", "kind": "categorical", "choices": ["x", "y"], "logits": [0.0, 0.0]},
        {"name": "d", "kind": "bernoulli", "logit": 0.0}]})
    for row in space.sample(20, np.random.default_rng(0)):
        named = space.clip_latent(space.unpack_latent(row))
        assert [type(named[k]) for k in "abcd"] == [float, list, str, bool]
        assert all(type(v) is float for v in named["b"])
        assert json.loads(json.dumps(named)) == named
