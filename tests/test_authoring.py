"""The panel's description editing without Blender: starting distributions, add/remove,
"already bound", groups and the list's one-line summaries."""

import math

import pytest

from blender_addon import authoring as A
from protocol.bindings import SceneError
from protocol.scene import SceneDescription


def _prop(data, id_, path, **kw):
    return {"param": "", "kind": "property", "data": data, "id": id_, "path": path, **kw}


def test_start_param_is_centred_on_the_current_value():
    p = A.start_param("Light_energy", "float", 1000.0, soft_min=0.0, soft_max=1e6)
    assert p["kind"] == "normal" and p["mean"] == [1000.0]
    assert math.exp(p["log_std"][0]) == pytest.approx(100.0)  # 10% of the value
    assert (p["low"], p["high"]) == ([0.0], [1e6])             # the soft range clips samples
    loc = A.start_param("Cube_location", "vector", [0.0, 1.0, 2.0], soft_min=-3.4e38,
                        soft_max=3.4e38)
    assert loc["mean"] == [0.0, 1.0, 2.0] and "low" not in loc and "high" not in loc
    assert [round(math.exp(v), 6) for v in loc["log_std"]] == [0.1, 0.1, 0.2]
    col = A.start_param("c", "color", [0.8, 0.0, 0.2], soft_min=0.0, soft_max=1.0)
    assert math.exp(col["log_std"][1]) == pytest.approx(0.05)  # 5% of the range at 0
    n = A.start_param("samples", "int", 4, soft_min=1, soft_max=16777216)
    assert math.exp(n["log_std"][0]) == pytest.approx(0.5)  # an int moves by whole steps


def test_start_param_enum_and_bool_favour_the_current_state():
    p = A.start_param("Light_type", "enum", "SPOT", items=["POINT", "SUN", "SPOT", "AREA"])
    assert p["kind"] == "categorical" and p["choices"] == ["POINT", "SUN", "SPOT", "AREA"]
    assert max(range(4), key=lambda i: p["logits"][i]) == 2
    b = A.start_param("Cube_hide_render", "bool", False)
    assert b == {"name": "Cube_hide_render", "kind": "bernoulli", "logit": -A.FAVOUR_BOOL}
    for bad, kw in ((("e", "enum", "A"), {"items": ["A"]}),   # a one-item (dynamic) enum
                    (("e", "enum", "Z"), {"items": ["A", "B"]}),
                    (("s", "string", "x"), {}), (("f", "float", math.nan), {})):
        with pytest.raises(SceneError):
            A.start_param(*bad, **kw)


def test_add_refuses_a_bound_target_and_remove_cleans_up():
    energy = A.start_param("Light_energy", "float", 10.0, soft_min=0.0, soft_max=100.0)
    d = A.add(None, energy, dict(_prop("lights", "Light", "energy"), param="Light_energy"))
    assert isinstance(d, SceneDescription) and d.space.names == ["Light_energy"]
    with pytest.raises(SceneError, match="already bound: parameter 'Light_energy'"):
        A.add(d.to_dict(), dict(energy, name="other"),
              dict(_prop("lights", "Light", "energy"), param="other"))
    loc = A.start_param("xy", "vector", [0.0, 0.0], soft_min=-1, soft_max=1)
    d = A.add(d.to_dict(), loc, dict(_prop("objects", "Cube", "location", components=[0, 1]),
                                     param="xy"))
    z = A.start_param("z", "float", 0.0, soft_min=-1, soft_max=1)
    d = A.add(d.to_dict(), z, dict(_prop("objects", "Cube", "location", components=[2]),
                                   param="z"))  # another component of the same vector: fine
    assert A.bound_by(d.to_dict(), _prop("objects", "Cube", "location")) == "xy"
    site = {"name": "site", "kind": "categorical", "choices": ["A", "B"], "logits": [0, 0]}
    jit = {"name": "jit", "kind": "normal", "mean": [0, 0], "log_std": [0, 0],
           "active_if": {"site": ["A"]}}
    base = d.to_dict()
    d = SceneDescription.from_dict(dict(
        base, space=dict(base["space"], params=[*base["space"]["params"], site, jit]),
        bindings=[*base["bindings"], {"param": "site", "kind": "site", "id": "Cube",
                                      "jitter": "jit", "radius": 0.5}]))
    with pytest.raises(SceneError, match="already bound: parameter 'site'"):
        A.add(d.to_dict(), dict(site, name="s2"), {"param": "s2", "kind": "site", "id": "Cube"})
    gone = A.remove(d.to_dict(), "jit")  # the site keeps working without its jitter
    assert gone.space.names == ["Light_energy", "xy", "z", "site"]
    assert gone.bindings[-1].param == "site"
    assert gone.bindings[-1].jitter == "" and gone.bindings[-1].radius == 0.0
    gone = A.remove(d.to_dict(), "site")  # jit's active_if on it goes too
    assert gone.space.params[-1].active_if is None
    with pytest.raises(SceneError, match="no parameter named 'nope'"):
        A.remove(d.to_dict(), "nope")


def test_one_of_overlap_counts_as_bound():
    show = {"name": "show", "kind": "categorical", "choices": ["A", "B"], "logits": [0, 0]}
    d = A.add(None, show, {"param": "show", "kind": "one_of"})
    assert A.bound_by(d.to_dict(), {"kind": "one_of", "alternatives": ["B", "C"]}) == "show"
    assert A.bound_by(d.to_dict(), {"kind": "one_of", "alternatives": ["C", "D"]}) is None


def test_names_groups_summaries_and_targets():
    assert A.safe_name("Key Light.energy") == "Key_Light_energy"
    assert A.safe_name("3D") == "p_3D"
    assert A.unique_name("a", ["a", "a_2"]) == "a_3"
    groups = {A.group_of(_prop("lights", "L", "energy")),
              A.group_of(_prop("worlds", "W", "color"))}
    assert groups == {"LIGHTS"}
    assert A.group_of(_prop("scenes", "S", "cycles.samples")) == "QUALITY"
    assert A.group_of(_prop("objects", "C", "location")) == "PLACEMENT"
    assert A.group_of({"kind": "count", "id": "C"}) == "PLACEMENT"
    assert A.group_of({"kind": "material", "id": "C"}) == "MATERIALS"
    assert A.group_of(_prop("materials", "M", "diffuse_color")) == "MATERIALS"
    assert A.group_of(_prop("cameras", "C", "lens")) == "OTHER"
    # built-in examples have no bindings: their names decide
    assert [A.group_of(None, n) for n in ("key_light", "samples", "obj0_xy", "color", "x")] \
        == ["LIGHTS", "QUALITY", "PLACEMENT", "MATERIALS", "OTHER"]
    assert A.summary("normal", [1000.0], [100.0]) == "1000±100"
    assert [A.short_number(v) for v in (0.0, 3.14159, 0.05, -12.5, 2e6, 1e-4)] == \
        ["0", "3.14", "0.05", "-12.5", "2e+06", "0.0001"]
    assert A.summary("normal", [3.0], [0.5]) == "3±0.5"
    assert A.summary("normal", [0, 0, 0], [0.1, 0.2, 0.1]) == "3D±0.2"
    assert A.summary("categorical", choices=[("WIRE", 0.62), ("SOLID", 0.38)]) == "WIRE 62%"
    assert A.summary("bernoulli", p=0.731) == "on 73%"
    sock = 'node_tree.nodes["Principled BSDF"].inputs["Roughness"].default_value'
    assert A.short_target(_prop("materials", "Floor", sock)) == "Floor > Roughness"
    assert A.short_target(_prop("objects", "O", "location", components=[0, 1])) \
        == "O.location (xy)"
    assert A.short_target({"kind": "material", "id": "O", "slot": 1}) == "O > slot 1"


def test_with_classes_appends_found_classes():
    d = A.empty()
    assert A.with_classes(d, ["box", "background", "ball", "box"])["classes"] == \
        ["background", "box", "ball"]
