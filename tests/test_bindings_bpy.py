"""Bindings against a real .blend: a scene built from scratch, bound, stored, saved, reopened.

Each parameter is varied alone and the bound targets plus some unbound ones are read back from
bpy: exactly the expected ones change, and applying the base latent again restores them.
"""

import math

import numpy as np
import pytest

# BLENDER_USER_RESOURCES: conftest.py has pointed it away from $HOME before this import
bpy = pytest.importorskip("bpy")

from blender_addon import render  # noqa: E402
from blender_addon.bindings import CLASS_PROPERTY, TEXT_NAME, BlendScene, read, resolve, store  # noqa: E402,E501
from protocol.bindings import Binding, SceneError  # noqa: E402
from protocol.scene import SceneDescription  # noqa: E402
from protocol.space import BernoulliParam, CategoricalParam, NormalParam, ParameterSpace  # noqa: E402,E501

pytestmark = pytest.mark.blender

CLASSES = ["background", "cube", "sphere", "prop"]
SOCKET = 'node_tree.nodes["{}"].inputs["{}"].default_value'
ROUGH, BASE = SOCKET.format("Principled BSDF", "Roughness"), SOCKET.format("Principled BSDF",
                                                                           "Base Color")
STRENGTH = SOCKET.format("Background", "Strength")


def _n(name, mean, **kw):
    return NormalParam(name, mean, [-1.0] * len(mean) if isinstance(mean, list) else -1.0, **kw)


def _c(name, choices):
    return CategoricalParam(name, choices, [0.0] * len(choices))


PARAMS = [
    _n("key_energy", 3.0), _n("key_color", [1.0, 0.9, 0.8]), _n("world_strength", 0.5),
    _n("floor_rough", 0.5), _n("floor_color", [0.3, 0.3, 0.3]), _n("lens", 35.0),
    _c("samples", ["1", "2"]), _n("bounces", 2.0), _c("display", ["SOLID", "WIRE"]),
    BernoulliParam("extra_hidden", 0.0), _n("extra_xy", [1.5, -0.5]),
    _c("layout", ["A", "B"]), _c("hero_site", ["SiteL", "SiteR"]), _n("hero_jitter", [0.0, 0.0]),
    _c("hero_material", ["Red", "Blue"]), _c("hero_mesh", ["CubeMesh", "SphereMesh"]),
    _c("slots", ["1", "2", "3"]), _c("slots_row", ["front", "back"]),
]
BINDINGS = [
    Binding("key_energy", data="lights", id="Key", path="energy", low=0.0, high=10.0),
    Binding("key_color", data="lights", id="Key", path="color", type="color"),
    Binding("world_strength", data="worlds", id="World", path=STRENGTH),
    Binding("floor_rough", data="materials", id="Floor", path=ROUGH),
    Binding("floor_color", data="materials", id="Floor", path=BASE, components=[0, 1, 2]),
    Binding("lens", data="cameras", id="Camera", path="lens", low=20.0, high=80.0),
    Binding("samples", data="scenes", id="Scene", path="cycles.samples", type="int"),
    Binding("bounces", data="scenes", id="Scene", path="cycles.max_bounces", low=0, high=8),
    Binding("display", data="objects", id="Floor", path="display_type"),
    Binding("extra_hidden", data="objects", id="Extra", path="hide_render"),
    Binding("extra_xy", data="objects", id="Extra", path="location", components=[0, 1]),
    Binding("layout", "one_of", alternatives=["LayoutA", "LayoutB"]),
    Binding("hero_site", "site", id="Hero", jitter="hero_jitter", radius=0.25),
    Binding("hero_material", "material", id="Hero", slot=0),
    Binding("hero_mesh", "mesh", id="Hero"),
    Binding("slots", "count", id="Slots"),
    Binding("slots_row", "site", data="collections", id="Slots",
            alternatives=["RowFront", "RowBack"]),
]
DESCRIPTION = SceneDescription(ParameterSpace(PARAMS, "from_scratch"), BINDINGS, CLASSES,
                               labels={"Hero": "cube", "Extra": "cube", "PropB": "background"})
BASE_LATENT = {
    "key_energy": 3.0, "key_color": [1.0, 0.9, 0.8], "world_strength": 0.5, "floor_rough": 0.5,
    "floor_color": [0.3, 0.3, 0.3], "lens": 35.0, "samples": "1", "bounces": 2.0,
    "display": "SOLID", "extra_hidden": False, "extra_xy": [1.5, -0.5], "layout": "A",
    "hero_site": "SiteL", "hero_jitter": [0.0, 0.0], "hero_material": "Red",
    "hero_mesh": "CubeMesh", "slots": "3", "slots_row": "front",
}
VARIANT = {
    "key_energy": 5.0, "key_color": [0.5, 0.6, 0.7], "world_strength": 1.5, "floor_rough": 0.9,
    "floor_color": [0.6, 0.1, 0.2], "lens": 50.0, "samples": "2", "bounces": 4.4,
    "display": "WIRE", "extra_hidden": True, "extra_xy": [1.0, 0.5], "layout": "B",
    "hero_site": "SiteR", "hero_jitter": [1.0, -0.5], "hero_material": "Blue",
    "hero_mesh": "SphereMesh", "slots": "1", "slots_row": "back",
}
SLOT = ['objects["Slot{}"].hide_render', 'objects["Slot{}"].hide_viewport']
SLOT_LOC = [f'objects["Slot{i}"].location' for i in range(3)]
LAYOUT = [f'collections["Layout{c}"].{a}' for c in "AB" for a in ("hide_render", "hide_viewport")]
CHANGES = {  # parameter -> the targets its variant changes
    "key_energy": ['lights["Key"].energy'], "key_color": ['lights["Key"].color'],
    "world_strength": [f'worlds["World"].{STRENGTH}'],
    "floor_rough": [f'materials["Floor"].{ROUGH}'], "floor_color": [f'materials["Floor"].{BASE}'],
    "lens": ['cameras["Camera"].lens'], "samples": ['scenes["Scene"].cycles.samples'],
    "bounces": ['scenes["Scene"].cycles.max_bounces'], "display": ['objects["Floor"].display_type'],
    "extra_hidden": ['objects["Extra"].hide_render'], "extra_xy": ['objects["Extra"].location'],
    "layout": LAYOUT, "hero_site": ['objects["Hero"].location'],
    "hero_jitter": ['objects["Hero"].location'],
    "hero_material": ['objects["Hero"].material_slots[0].material'],
    "hero_mesh": ['objects["Hero"].data'],
    "slots": [s.format(i) for i in (1, 2) for s in SLOT],
    "slots_row": ['collections["Slots"].instance_offset'] + SLOT_LOC,
}
UNBOUND = [
    'objects["Floor"].location', 'objects["Camera"].location', 'objects["KeyLight"].rotation_euler',
    'lights["Key"].type', 'objects["Hero"].rotation_euler', 'objects["Hero"].scale',
    'scenes["Scene"].cycles.diffuse_bounces', 'materials["Red"].diffuse_color',
    'objects["Floor"].hide_render', 'objects["Slot0"].hide_render',
    'meshes["CubeMesh"].materials[0]',
    'objects["Hero"].material_slots[0].link', 'objects["PropA"].location',
    'objects["Extra"].hide_viewport',
] + [f'objects["{n}"].pass_index' for n in ("Hero", "Extra", "Floor", "PropA", "PropB", "Slot0")]


def _read(key):
    data, rest = key.split("[", 1)
    name, path = rest.split("].", 1)
    v = getattr(bpy.data, data)[name.strip('"')].path_resolve(path)
    if isinstance(v, bpy.types.ID) or v is None:
        return getattr(v, "name", None)
    return v if isinstance(v, str | bool | int | float) else tuple(round(x, 5) for x in v)


def _snapshot():
    return {k: _read(k) for k in sorted({*UNBOUND, *(t for ts in CHANGES.values() for t in ts)})}


def _mesh(name, kind, **kw):
    mesh = render.mesh_primitive(name, kind, smooth=False, **kw)
    mesh.materials.append(bpy.data.materials["Floor"])
    return mesh


def _object(name, data, location, coll=None):
    obj = bpy.data.objects.new(name, data)
    obj.location = location
    (coll or bpy.context.scene.collection).objects.link(obj)
    return obj


def _build():
    """The scene, from an empty file: nothing here comes from autosim's shipped scenes."""
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.name = "Scene"
    world = bpy.data.worlds.new("World")
    world.use_nodes = True
    scene.world = world
    for name, rgb in (("Floor", (0.3, 0.3, 0.3)), ("Red", (0.8, 0.05, 0.05)),
                      ("Blue", (0.05, 0.1, 0.8))):
        render.principled(name, rgb)
    cam = _object("Camera", bpy.data.cameras.new("Camera"), (0.0, -7.0, 6.0))
    cam.rotation_euler = (math.radians(50), 0.0, 0.0)
    scene.camera = cam
    key = _object("KeyLight", bpy.data.lights.new("Key", "SUN"), (0.0, 0.0, 5.0))
    key.rotation_euler = (math.radians(30), 0.0, math.radians(20))
    _object("Floor", _mesh("FloorMesh", "plane", size=12.0), (0.0, 0.0, 0.0))
    _mesh("SphereMesh", "sphere", radius=0.6)
    hero = _object("Hero", _mesh("CubeMesh", "cube", size=1.2), (0.0, 0.0, 0.6))
    hero.material_slots[0].link = "OBJECT"
    hero.material_slots[0].material = bpy.data.materials["Red"]
    _object("Extra", _mesh("ExtraMesh", "cube", size=0.8), (1.5, -0.5, 0.4))
    for name, loc in (("SiteL", (-1.6, 0.3, 0.6)), ("SiteR", (-0.2, 0.6, 0.6)),
                      ("RowFront", (0.0, 1.5, 0.0)), ("RowBack", (0.0, 2.5, 0.0))):
        _object(name, None, loc)
    slots = bpy.data.collections.new("Slots")
    scene.collection.children.link(slots)
    slots[CLASS_PROPERTY] = "sphere"
    slots.instance_offset = (0.0, 1.5, 0.0)
    for i in range(3):
        _object(f"Slot{i}", _mesh(f"SlotMesh{i}", "sphere", radius=0.45),
                (-1.8 + 1.8 * i, 1.5, 0.45), slots)
    for c in "AB":
        layout = bpy.data.collections.new(f"Layout{c}")
        scene.collection.children.link(layout)
        prop = _object(f"Prop{c}", _mesh(f"PropMesh{c}", "cube", size=0.7), (-0.8, -2.0, 0.35),
                       layout)
        prop[CLASS_PROPERTY] = "prop"  # PropB: the description's "background" wins


@pytest.fixture(scope="module")
def blend(tmp_path_factory):
    _build()
    store(DESCRIPTION, bpy.data)
    path = str(tmp_path_factory.mktemp("bindings") / "scratch.blend")
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.read_homefile(use_empty=True)  # forget it, then reopen it
    yield path
    bpy.ops.wm.read_homefile(use_empty=True)


@pytest.fixture
def bound(blend):
    """The saved file, freshly reopened and resolved for each test."""
    bpy.ops.wm.open_mainfile(filepath=blend)
    return resolve(read(bpy.data), bpy.data)


def test_description_survives_save_and_reopen(bound):
    assert read(bpy.data) == DESCRIPTION
    assert bpy.data.texts[TEXT_NAME].use_fake_user
    # alternatives nothing used at save time survive it (store() gave them a fake user)
    assert {"Blue", "Red"} <= set(bpy.data.materials.keys())
    assert "SphereMesh" in bpy.data.meshes


def test_labels_and_pass_indices(bound):
    names = ["Extra", "Hero", "PropA", "Slot0", "Slot1", "Slot2"]  # PropB: description wins
    assert list(bound.labels) == names
    assert [pi for pi, _ in bound.labels.values()] == [1, 2, 3, 4, 5, 6]
    assert [CLASSES[c] for _, c in bound.labels.values()] == ["cube", "cube", "prop"] + \
        ["sphere"] * 3
    assert all(o.pass_index == 0 for o in bpy.data.objects if o.name not in names)


def test_each_parameter_changes_exactly_its_targets(bound):
    bound.apply(BASE_LATENT)
    base = _snapshot()
    for name, value in VARIANT.items():
        bound.apply({**BASE_LATENT, name: value})
        now = _snapshot()
        changed = sorted(k for k in base if now[k] != base[k])
        assert changed == sorted(CHANGES[name]), name
        bound.apply(BASE_LATENT)
        assert _snapshot() == base, f"{name}: the base latent does not restore the scene"


def test_values_are_clipped_rounded_and_mapped(bound):
    bound.apply({**VARIANT, "key_energy": 99.0, "floor_rough": -3.0, "lens": 5.0,
                 "bounces": 4.6, "key_color": [2.0, -1.0, 0.5], "hero_jitter": [9.0, -9.0]})
    assert bpy.data.lights["Key"].energy == 10.0  # declared high
    assert _read(f'materials["Floor"].{ROUGH}') == 0.0  # the socket's soft range
    assert bpy.data.cameras["Camera"].lens == 20.0
    assert bpy.data.scenes["Scene"].cycles.max_bounces == 5
    assert bpy.data.scenes["Scene"].cycles.samples == 2
    assert _read('lights["Key"].color') == (1.0, 0.0, 0.5)
    assert _read(f'materials["Floor"].{BASE}')[3] == 1.0  # alpha is not a bound component
    site = bpy.data.objects["SiteR"].location
    hero = bpy.data.objects["Hero"].location
    assert hero[2] == pytest.approx(site[2])
    assert (hero[0] - site[0], hero[1] - site[1]) == pytest.approx((0.25, -0.25), abs=1e-4)
    bound.apply(BASE_LATENT)
    assert tuple(bpy.data.objects["Hero"].location) == pytest.approx((-1.6, 0.3, 0.6))


def test_returned_labels_follow_visibility(bound):
    pi = {name: p for name, (p, _) in bound.labels.items()}
    shown = {p for p, _ in bound.apply(BASE_LATENT)}
    assert shown == set(pi.values())
    shown = {p for p, _ in bound.apply({**BASE_LATENT, "slots": "1", "layout": "B",
                                        "extra_hidden": True})}
    assert shown == {pi["Hero"], pi["Slot0"]}
    assert bpy.data.objects["Slot2"].hide_viewport  # hidden slots leave the viewport too


def test_render_through_the_scene_module_interface(blend):
    module = BlendScene(blend)  # what backend.py calls: build(), then apply(handle, latent)
    handle = module.build()
    render.configure(handle.scene, 32, 32, samples=1, bounces=1, threads=2)
    placed = module.apply(handle, BASE_LATENT)
    res = render.render_frame(handle.scene, placed)
    assert res.image.shape == (32, 32, 3) and res.image.std() > 1.0
    assert set(np.unique(res.mask).tolist()) == {0, 1, 2, 3}  # every class is in view
    assert set(np.unique(res.instances).tolist()) - {0} <= {p for p, _ in placed}
    again = render.render_frame(handle.scene, module.apply(handle, BASE_LATENT))
    np.testing.assert_array_equal(res.image, again.image)
    assert module.classes() == CLASSES


def test_a_file_without_a_description(blend, tmp_path):
    with pytest.raises(SceneError, match="no such .blend file"):
        BlendScene(tmp_path / "none.blend").build()
    bpy.ops.wm.read_homefile(use_empty=True)
    with pytest.raises(SceneError, match="no autosim scene description"):
        BlendScene().build()


def _resolve_error(binding, *params):
    space = ParameterSpace([*PARAMS, *params], "errors")
    with pytest.raises(SceneError) as err:
        resolve(SceneDescription(space, [*BINDINGS, binding], CLASSES), bpy.data)
    return str(err.value)


@pytest.mark.parametrize("binding, extra, message", [
    (Binding("x", data="lights", id="Nope", path="energy"), _n("x", 1.0),
     'lights["Nope"] does not exist'),
    (Binding("x", data="materials", id="Floor", path=SOCKET.format("Nope", "Roughness")),
     _n("x", 1.0), "does not resolve"),
    (Binding("x", data="lights", id="Key", path="energyy"), _n("x", 1.0), "does not exist"),
    (Binding("x", data="objects", id="Hero", path="data"), _n("x", 1.0), "pointer property"),
    (Binding("x", data="objects", id="Hero", path="type"), _c("x", ["MESH", "EMPTY"]),
     "read-only"),
    (Binding("x", data="objects", id="Hero", path="display_type"), _n("x", 1.0),
     "parameter is normal but the target is an enum property"),
    (Binding("x", data="lights", id="Key", path="angle"), _c("x", ["low", "high"]),
     "parameter is categorical but the target is a float property"),
    (Binding("x", data="objects", id="Hero", path="location"), _n("x", [0.0, 0.0]),
     "dimension 2 but the target has 3 components"),
    (Binding("x", data="objects", id="Hero", path="display_type"), _c("x", ["SOLID", "NOPE"]),
     "'NOPE', not an item of the enum"),
    (Binding("x", "one_of", alternatives=["LayoutA", "Nope"]), _c("x", ["a", "b"]),
     'collections["Nope"] does not exist'),
    (Binding("x", "site", id="Extra"), _c("x", ["SiteL", "Nope"]), 'objects["Nope"] does not'),
    (Binding("x", "site", id="Extra"), _c("x", ["SiteL", "Hero"]), "is a mesh, not an empty"),
    (Binding("x", "material", id="Extra"), _c("x", ["Red", "Nope"]), 'materials["Nope"]'),
    (Binding("x", "mesh", id="Extra"), _c("x", ["CubeMesh", "Nope"]), 'meshes["Nope"]'),
    (Binding("x", "count", id="Slots"), _c("x", ["1", "4"]), "has only 3 objects"),
    (Binding("x", data="objects", id="Hero", path="location"), _n("x", [0.0, 0.0, 0.0]),
     'objects["Hero"].location is also written by bindings[12]'),
    (Binding("x", data="worlds", id="World",  # the same socket, spelled by index
             path='node_tree.nodes["Background"].inputs[1].default_value'), _n("x", 1.0),
     "is also written by bindings[2] ('world_strength'"),
    (Binding("x", "count", id="Slots"), _c("x", ["0", "1"]), "also written by bindings[15]"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_resolve_names_the_binding(bound, binding, extra, message):
    before = _snapshot()
    text = _resolve_error(binding, extra)
    assert text.startswith(f"bindings[{len(BINDINGS)}] ({binding.label}): ") and message in text
    assert _snapshot() == before


def test_a_site_must_not_read_a_moving_empty(bound):
    moving = Binding("x", data="objects", id="SiteR", path="location")
    with pytest.raises(SceneError) as err:
        resolve(SceneDescription(ParameterSpace([*PARAMS, _n("x", [0.0, 0.0, 0.0])]),
                                 [*BINDINGS, moving], CLASSES), bpy.data)
    assert str(err.value).startswith("bindings[12] ('hero_site' -> objects[\"Hero\"] site): "
                                     "reads objects[\"SiteR\"].location, which bindings[17]")


def test_class_precedence_object_over_collections(bound):
    group, inner = bpy.data.collections.new("Group"), bpy.data.collections.new("Inner")
    bpy.context.scene.collection.children.link(group)
    group.children.link(inner)
    group[CLASS_PROPERTY] = "cube"
    _object("Nested", None, (0.0, 0.0, 0.0), inner)  # takes the nearest collection's class
    bpy.data.objects["Slot0"][CLASS_PROPERTY] = "prop"  # the object's own beats its collection
    again = resolve(SceneDescription(ParameterSpace(PARAMS), BINDINGS, CLASSES), bpy.data)
    classes = {name: CLASSES[c] for name, (_, c) in again.labels.items()}
    assert classes["Nested"] == "cube" and classes["Slot0"] == "prop"
    assert classes["PropB"] == "prop"  # no description label now: its own property counts
    inner[CLASS_PROPERTY] = "sphere"
    group.objects.link(bpy.data.objects["Nested"])  # two collections, one level, two classes
    with pytest.raises(SceneError, match="object 'Nested': its collections give it different"):
        resolve(SceneDescription(ParameterSpace(PARAMS), BINDINGS, CLASSES), bpy.data)


def test_stale_binding_and_restore(bound, blend):
    store(DESCRIPTION, bpy.data)  # again: the same Text, rewritten
    assert [t.name for t in bpy.data.texts] == [TEXT_NAME] and read(bpy.data) == DESCRIPTION
    bpy.ops.wm.open_mainfile(filepath=blend)
    with pytest.raises(SceneError, match="no longer exists.*resolve again"):
        bound.apply(BASE_LATENT)


def test_resolve_checks_labels(bound):
    space = ParameterSpace(PARAMS, "labels")
    with pytest.raises(SceneError, match=r"labels\['Ghost'\]: no object"):
        resolve(SceneDescription(space, BINDINGS, CLASSES, labels={"Ghost": "cube"}), bpy.data)
    bpy.data.objects["Floor"][CLASS_PROPERTY] = "table"
    try:
        with pytest.raises(SceneError, match=r"objects\[\"Floor\"\]\['autosim_class'\]: "
                                             r"unknown class 'table'"):
            resolve(SceneDescription(space, BINDINGS, CLASSES), bpy.data)
    finally:
        del bpy.data.objects["Floor"][CLASS_PROPERTY]


@pytest.mark.parametrize("change, message", [
    ({"hero_material": "Green"}, "latent.hero_material: unknown choice 'Green'"),
    ({"slots": "4"}, "latent.slots: unknown choice '4'"),
    ({"extra_xy": [1.0]}, "latent.extra_xy: expected 2 values"),
    ({"lens": math.nan}, "latent.lens: must be finite"),
    ({"extra_hidden": 1.0}, "latent.extra_hidden: expected true/false"),
    ({"typo": 1.0}, "unknown parameters ['typo']"),
])
def test_a_bad_latent_changes_nothing(bound, change, message):
    bound.apply(BASE_LATENT)
    before = _snapshot()
    with pytest.raises(SceneError) as err:
        bound.apply({**VARIANT, **change})  # every other value would change something
    assert message in str(err.value)
    assert _snapshot() == before
    with pytest.raises(SceneError, match=r"missing parameters \['lens'\]"):
        bound.apply({k: v for k, v in VARIANT.items() if k != "lens"})
    assert _snapshot() == before


def test_a_failing_write_is_undone(bound):
    class Broken:  # plans a write bpy refuses, after every real binding's writes
        b = Binding("display", data="objects", id="Hero", path="display_type")

        def plan(self, latent, plan):
            plan.set(bpy.data.objects["Hero"], "display_type", "NOT_AN_ITEM")

    bound.apply(BASE_LATENT)
    before = _snapshot()
    bound._resolved.append(Broken())
    try:
        with pytest.raises(SceneError, match="the scene was left as it was"):
            bound.apply(VARIANT)
    finally:
        bound._resolved.pop()
    assert _snapshot() == before
