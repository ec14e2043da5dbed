"""The bpy-free scene description: bindings, validation messages, JSON round trip, latents."""

import json
import math

import numpy as np
import pytest

from protocol.bindings import Binding, SceneError, check_latent, jitter_offset, split_path
from protocol.scene import SceneDescription, load, save
from protocol.space import BernoulliParam, CategoricalParam, NormalParam, ParameterSpace

SPACE = ParameterSpace([
    NormalParam("key_light", 3.0, -1.0, low=0.0), NormalParam("xy", [0.0, 0.0], [0.0, 0.0]),
    NormalParam("rgb", [0.5] * 3, [-2.0] * 3), CategoricalParam("samples", ["4", "8"], [0, 0]),
    CategoricalParam("layout", ["A", "B"], [0, 0]), BernoulliParam("visible", 1.0),
    CategoricalParam("count", ["0", "2", "3"], [0, 0, 0]),
    CategoricalParam("filter", ["BOX", "GAUSSIAN"], [0, 0]),
], "demo")
BINDINGS = [
    Binding("key_light", data="lights", id="Key", path="energy", low=0.0, high=10.0),
    Binding("xy", data="objects", id="Cube", path="location", components=[0, 1]),
    Binding("rgb", data="materials", id="Floor",
            path='node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value',
            components=[0, 1, 2], type="color"),
    Binding("samples", data="scenes", id="Scene", path="cycles.samples", type="int"),
    Binding("layout", "one_of", alternatives=["Layout A", "Layout B"]),
    Binding("visible", data="objects", id="Cube", path="hide_render", invert=True),
    Binding("count", "count", id="Slots", objects=["s0", "s1", "s2"]),
    Binding("filter", data="scenes", id="Scene", path="cycles.pixel_filter_type", type="enum"),
    Binding("layout", "site", id="Cube", alternatives=["Left", "Right"], jitter="xy", radius=0.3),
    Binding("layout", "material", id="Cube", slot=1, alternatives=["Red", "Blue"]),
    Binding("layout", "mesh", data="objects", id="Cube", alternatives=["cube", "sphere"]),
]


def _desc(bindings=BINDINGS, space=SPACE, **kw):
    kw.setdefault("classes", ["background", "cube"])
    kw.setdefault("labels", {"Cube": "cube"})
    return SceneDescription(space, bindings, **kw)


def _error(*extra, space=SPACE, **kw):
    with pytest.raises(SceneError) as err:
        _desc([*BINDINGS, *extra], space, **kw)
    return str(err.value)


def test_round_trip_dict_json_and_file(tmp_path):
    d = _desc(defaults={"fixed": ["samples"], "task": "detection",
                        "methods": {"autosimulate": {"k": 8}}}, scene="Scene")
    again = SceneDescription.from_dict(json.loads(json.dumps(d.to_dict())))
    assert again == d and again.to_dict() == d.to_dict()
    assert SceneDescription.from_json(d.to_json()) == d
    save(d, tmp_path / "s.json")
    assert load(tmp_path / "s.json") == d
    assert d.name == "demo" and d.class_id("cube") == 1 and d.unbound == []
    # defaults are left out of a binding's dict, so a hand-written one stays short
    assert d.to_dict()["bindings"][4] == {"param": "layout", "kind": "one_of",
                                          "alternatives": ["Layout A", "Layout B"]}
    assert "data" not in d.to_dict()["bindings"][10]


def test_alternatives_may_repeat_so_one_categorical_drives_each_factor():
    space = ParameterSpace([CategoricalParam("config", ["A_low", "A_high", "B_low"], [0, 0, 0])])
    d = SceneDescription(space, [
        Binding("config", "one_of", alternatives=["A", "A", "B"]),
        Binding("config", data="scenes", id="Scene", path="cycles.samples", type="int",
                alternatives=["4", "16", "4"])])
    assert SceneDescription.from_json(d.to_json()) == d
    assert d.bindings[0].values(space.params[0]) == ("A", "A", "B")


def test_labels_name_the_target_the_blender_way():
    assert BINDINGS[0].label == "'key_light' -> lights[\"Key\"].energy"
    assert BINDINGS[1].target == 'objects["Cube"].location[0, 1]'
    assert BINDINGS[9].target == 'objects["Cube"].material_slots[1]'
    assert Binding("a", data="objects", id='say "hi"', path="x").target == \
        'objects["say \\"hi\\""].x'


def test_split_path():
    assert split_path("energy") == ("", "energy")
    assert split_path("cycles.samples") == ("cycles", "samples")
    assert split_path('node_tree.nodes["A.b]"].inputs[0].default_value') == \
        ('node_tree.nodes["A.b]"].inputs[0]', "default_value")
    for bad in ("", "a..b", "1a", "a.", 'a["x]', "location[0]", "a b"):
        with pytest.raises(SceneError):
            split_path(bad)


def test_the_example_message():
    bad = Binding("layout", data="lights", id="Key", path="energy", type="float")
    assert _error(bad) == (
        "bindings[11] ('layout' -> lights[\"Key\"].energy): parameter is categorical but the "
        "target is a float property: choice 'A' selects 'A', not a number (a categorical drives "
        "a number only through numeric choices)")


@pytest.mark.parametrize("binding, message", [
    (Binding("nope", data="lights", id="Key", path="energy"), "unknown parameter 'nope'"),
    (Binding("layout", "site", id="Cube"), None),  # fine: the choices name the empties
    (Binding("key_light", "site", id="Cube"), "parameter is normal but the target is a 'site'"),
    (Binding("visible", "count", id="Slots"), "parameter is bernoulli but the target is a"),
    (Binding("key_light", data="o", id="C", path="p", type="enum"),
     "parameter is normal but the target is an enum property"),
    (Binding("visible", data="o", id="C", path="p", type="float"),
     "parameter is bernoulli but the target is a float property"),
    (Binding("layout", data="o", id="C", path="p", type="bool"),
     "parameter is categorical but the target is a bool property"),
    (Binding("xy", data="o", id="C", path="p", type="float"),
     "parameter has dimension 2 but the target is a scalar float property"),
    (Binding("xy", data="o", id="C", path="p", components=[0, 1, 2]),
     "components: 3 components for a parameter of dimension 2"),
    (Binding("xy", data="o", id="C", path="p", low=[0.0, 1.0, 2.0]), "low: expected 1 or 2"),
    (Binding("xy", data="o", id="C", path="p", low=1.0, high=[2.0, 1.0]),
     "low[1]: must be < high[1]"),
    (Binding("layout", data="o", id="C", path="p", low=1.0), "need a normal parameter"),
    (Binding("key_light", data="o", id="C", path="p", invert=True), "needs a bernoulli"),
    (Binding("layout", "one_of", alternatives=["a", "b", "c"]), "3 alternatives for 2 choices"),
    (Binding("key_light", data="o", id="C", path="p", alternatives=["a"]),
     "alternatives: needs a categorical parameter"),
    (Binding("layout", "count", id="Slots"), "parameter is categorical but the target is a count"),
    (Binding("count", "count", id="Slots", objects=["a", "b"]),
     "choice '3' shows 3 objects; the count must be in 0..2"),
    (Binding("samples", data="o", id="C", path="p", type="int",
             alternatives=["1", "2.5"]), "selects '2.5', not an integer"),
    (Binding("layout", "site", id="Cube", jitter="rgb", radius=1.0), None),
    (Binding("layout", "site", id="Cube", jitter="key_light", radius=1.0),
     "jitter: expected another normal parameter of dimension 2 (x, y) or 3"),
    (Binding("layout", "site", id="Cube", jitter="ghost", radius=1.0), "'ghost' (unknown)"),
    (Binding("key_light", data="lights", id="Key", path="energy"),
     "bindings[0] already writes this target"),
    (Binding("xy", data="objects", id="Cube", path="location", components=[1, 2]),
     "bindings[1] already writes this target"),
    (Binding("rgb", data="objects", id="Cube", path="location"),
     "bindings[1] already writes this target"),
])
def test_checks_against_the_space(binding, message):
    if message is None:
        _desc([*BINDINGS, binding])
    else:
        text = _error(binding)
        assert text.startswith(f"bindings[11] ({binding.label})") and message in text, text


@pytest.mark.parametrize("d, message", [
    ({"param": "a", "kind": "rotate"}, "kind: unknown binding kind 'rotate'"),
    ({"param": "a", "kind": "property", "data": "lights", "id": "Key"},
     "path: expected a non-empty string"),
    ({"param": "a", "data": "lights", "id": "Key", "path": "energy", "slot": 2},
     "slot: not a field of a 'property' binding"),
    ({"param": "a", "kind": "site", "id": "Cube", "data": "lights"},
     "data: a 'site' binding targets objects or collections"),
    ({"param": "a", "kind": "one_of", "id": "x"}, "id: not a field of a 'one_of' binding"),
    ({"param": "a", "data": "Lights!", "id": "K", "path": "energy"}, "data: expected a bpy.data"),
    ({"param": "a", "data": "lights", "id": "K", "path": "energy[0]"}, "must end in a property"),
    ({"param": "a", "data": "lights", "id": "K", "path": "energy", "type": "quaternion"},
     "type: unknown property type 'quaternion'"),
    ({"param": "a", "data": "o", "id": "K", "path": "p", "components": [0, 0]},
     "components: expected distinct array indices"),
    ({"param": "a", "kind": "count", "id": "C", "objects": ["x", "x"]}, "objects[1]: duplicate"),
    ({"param": "a", "kind": "site", "id": "C", "radius": 0.5}, "jitter needs both"),
    ({"param": "a", "kind": "material", "id": "C", "slot": -1}, "slot: expected a material slot"),
    ({"param": "a", "kind": "mesh", "id": "C", "colour": 1}, "colour: unknown key"),
    ({"kind": "mesh", "id": "C"}, "param: missing required field"),
    ({"param": "a", "data": "o", "id": 5, "path": "p"}, "id: expected a non-empty string"),
    ({"param": "a", "data": "o", "id": "C", "path": "p", "low": "x"}, "low: expected a number"),
    ({"param": "a", "kind": "site", "id": "C", "jitter": "j", "radius": math.inf},
     "radius: must be finite"),
])
def test_binding_fields(d, message):
    with pytest.raises(SceneError) as err:  # SceneError, not only its base SpaceError
        Binding.from_dict(d, "bindings[0]")
    assert str(err.value).startswith("bindings[0]") and message in str(err.value), err.value


@pytest.mark.parametrize("change, message", [
    ({"classes": ["cube", "background"]}, "classes: expected a list of class names starting"),
    ({"classes": ["background", "cube", "cube"]}, "classes[2]: expected a new non-empty name"),
    ({"labels": {"Cube": "dog"}}, "labels['Cube']: unknown class 'dog'"),
    ({"labels_for": ["masks", "depth"]}, "labels_for: expected a non-empty subset"),
    ({"labels_for": []}, "labels_for"),
    ({"defaults": {"x": 1}}, "defaults.x: unknown key"),
    ({"defaults": {"methods": {"random": {"m": math.nan}}}}, "defaults.methods.random: must be"),
    ({"defaults": {"task": "depth"}}, "defaults.task: unknown task 'depth'"),
    ({"scene": 3}, "scene: expected a scene name"),
])
def test_description_fields(change, message):
    assert message in _error(**change)


@pytest.mark.parametrize("change, message", [
    ({"format": "autosim.space"}, "format: expected 'autosim.scene'"),
    ({"version": 2}, "version: expected 1"),
    ({"colour": 1}, "colour: unknown key"),
    ({"space": {"format": "autosim.space", "version": 1, "params": [{"kind": "normal"}]}},
     "space: params[0].name"),
    ({"bindings": {}}, "bindings: expected a list"),
    ({"bindings": [{"param": "key_light", "kind": "site", "id": "C"}]},
     "bindings[0] ('key_light' -> objects[\"C\"] site): parameter is normal"),
])
def test_from_dict_names_the_field(change, message):
    d = {**_desc().to_dict(), **change}
    with pytest.raises(SceneError) as err:
        SceneDescription.from_dict(d)
    assert str(err.value).startswith(message), err.value


def test_load_names_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "autosim.scene", "version": 1, "space": NaN}')
    with pytest.raises(SceneError, match=r"bad\.json: json: NaN is not allowed"):
        load(bad)
    with pytest.raises(SceneError, match=r"missing\.json: cannot read"):
        load(tmp_path / "missing.json")


def test_check_latent():
    latent = {"key_light": 2, "xy": [1.0, 2.0], "rgb": np.array([0.1, 0.2, 0.3]),
              "samples": "8", "layout": "B", "visible": np.bool_(True), "count": "0",
              "filter": "BOX"}
    out = check_latent(SPACE.params, latent)
    assert out["key_light"] == (2.0,) and out["rgb"] == (0.1, 0.2, 0.3)
    assert out["visible"] is True and out["layout"] == "B"
    # the space's own samples unpack to an accepted latent
    row = SPACE.sample(1, np.random.default_rng(0))[0]
    assert set(check_latent(SPACE.params, SPACE.unpack_latent(row))) == set(SPACE.names)
    for change, message in (({"layout": "C"}, "latent.layout: unknown choice 'C'"),
                            ({"layout": 1}, "latent.layout: unknown choice 1"),
                            ({"xy": [1.0]}, "latent.xy: expected 2 values"),
                            ({"key_light": math.inf}, "latent.key_light: must be finite"),
                            ({"visible": 1}, "latent.visible: expected true/false"),
                            ({"extra": 1}, "latent: unknown parameters ['extra']")):
        with pytest.raises(SceneError, match=None) as err:
            check_latent(SPACE.params, {**latent, **change})
        assert message in str(err.value)
    with pytest.raises(SceneError, match=r"missing parameters \['count'\]"):
        check_latent(SPACE.params, {k: v for k, v in latent.items() if k != "count"})


def test_jitter_is_uniform_from_a_standard_normal_and_deterministic():
    z = np.random.default_rng(0).standard_normal((20000, 2))
    off = np.array([jitter_offset(row, 0.5) for row in z])
    assert np.abs(off).max() <= 0.5
    hist, _ = np.histogram(off[:, 0], bins=10, range=(-0.5, 0.5))
    assert np.abs(hist / len(off) - 0.1).max() < 0.01
    assert jitter_offset([0.3, -1.2], 0.5) == jitter_offset([0.3, -1.2], 0.5)
    assert jitter_offset([0.0, 0.0, 0.0], 2.0) == (0.0, 0.0, 0.0)
