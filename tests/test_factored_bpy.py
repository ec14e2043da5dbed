"""Two binding features the shipped examples are built on, in a scene made from scratch:
repeated alternatives (one categorical over a product drives each factor's targets) and a
class carried by a mesh (an object whose mesh a binding swaps renders as that mesh's class)."""

import pytest

bpy = pytest.importorskip("bpy")

from blender_addon import render  # noqa: E402
from blender_addon.bindings import CLASS_PROPERTY, resolve  # noqa: E402
from protocol.bindings import Binding, SceneError  # noqa: E402
from protocol.scene import SceneDescription  # noqa: E402
from protocol.space import CategoricalParam, ParameterSpace  # noqa: E402

pytestmark = pytest.mark.blender

CONFIGS = ["A_low", "A_high", "B_low", "B_high"]
CLASSES = ["background", "ball", "box"]


def _scene():
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.name = "Scene"
    meshes = {}
    for name, kind, cls in (("Ball", "sphere", "ball"), ("Box", "cube", "box"),
                            ("Blob", "sphere", None)):
        meshes[name] = render.mesh_primitive(name, kind)
        if cls:
            meshes[name][CLASS_PROPERTY] = cls
    for c in "AB":
        coll = bpy.data.collections.new(f"Layout{c}")
        scene.collection.children.link(coll)
        site = bpy.data.objects.new(f"Site{c}", None)
        site.location = (1.0, 0.0, 0.0) if c == "A" else (-1.0, 2.0, 0.0)
        scene.collection.objects.link(site)
    slot = bpy.data.objects.new("Slot", meshes["Ball"])
    scene.collection.objects.link(slot)
    fixed = bpy.data.objects.new("Fixed", meshes["Box"])  # class from its (unswapped) mesh
    bpy.data.collections["LayoutB"].objects.link(fixed)
    space = ParameterSpace([CategoricalParam("config", CONFIGS, [0] * 4),
                            CategoricalParam("shape", ["Ball", "Box", "Blob"], [0] * 3)])
    return SceneDescription(space, [
        Binding("config", "one_of", alternatives=["LayoutA", "LayoutA", "LayoutB", "LayoutB"]),
        Binding("config", "site", id="Slot", alternatives=["SiteA", "SiteA", "SiteB", "SiteB"]),
        Binding("config", data="scenes", id="Scene", path="cycles.samples",
                alternatives=["4", "16", "4", "16"]),
        Binding("shape", "mesh", id="Slot")], CLASSES)


def test_repeated_alternatives_drive_each_factor():
    bound = resolve(_scene(), bpy.data)
    a, b = bpy.data.collections["LayoutA"], bpy.data.collections["LayoutB"]
    for config, shown, samples, x in (("A_high", a, 16, 1.0), ("B_low", b, 4, -1.0),
                                      ("A_low", a, 4, 1.0)):
        bound.apply({"config": config, "shape": "Ball"})
        assert [c.hide_render for c in (a, b)] == [c is not shown for c in (a, b)]
        assert [c.hide_viewport for c in (a, b)] == [c is not shown for c in (a, b)]
        assert bpy.context.scene.cycles.samples == samples
        assert bpy.data.objects["Slot"].location.x == x


def test_a_swapped_mesh_carries_its_class():
    bound = resolve(_scene(), bpy.data)
    pi = {name: p for name, (p, _) in bound.labels.items()}
    assert sorted(pi) == ["Fixed", "Slot"] and bpy.data.objects["Slot"].pass_index == pi["Slot"]
    ball, box = CLASSES.index("ball"), CLASSES.index("box")
    assert bound.apply({"config": "A_low", "shape": "Ball"}) == [(pi["Slot"], ball)]
    assert bound.apply({"config": "B_low", "shape": "Box"}) == [(pi["Fixed"], box),
                                                                 (pi["Slot"], box)]
    # a mesh without a class: the object is unlabelled while it shows that mesh
    assert bound.apply({"config": "A_low", "shape": "Blob"}) == []
    assert bound.labels["Slot"] == (pi["Slot"], 0)


def test_a_mesh_with_an_unknown_class_is_named():
    desc = _scene()
    bpy.data.meshes["Blob"][CLASS_PROPERTY] = "dog"
    with pytest.raises(SceneError, match=r'meshes\["Blob"\]\[\'autosim_class\'\]: unknown '
                                         r"class 'dog'"):
        resolve(desc, bpy.data)
