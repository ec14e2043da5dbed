"""Object placement example (AutoSimulate sec. 5.2 with Blender primitives), a builder script.

3 layouts x 9 object locations x 2 render qualities = the 54 choices of the categorical
`config` ("L{layout}_P{location}_{quality}", layout-major). A latent puts a small cluster of
objects (which ones: `object_set`) on a ring (`cluster_spread` radius, turned by
`cluster_rotation`) around the chosen location of the chosen layout.

    python blender_addon/scenes/placement.py --out placement.blend
    blender -b --factory-startup -P blender_addon/scenes/placement.py -- --out placement.blend

How each rule of the scene is held by the file itself, not by code:
  - `config` is bound once per factor, with repeated alternatives: a `one_of` shows the
    layout's collection (its boxes and lamp), two Mix Shader factors pick the layout's world
    background, `site` bindings move the camera and its look-at empty (the camera looks at it
    through a Track To constraint) and the `cluster` empty to one of 27 location empties, and
    the quality sets `cycles.samples` and the six bounce limits;
  - `object_set` shows one of four collections, each with its own copies of the cluster
    objects (sharing the class meshes, which carry the classes) on their own ring arms;
  - the ring: each copy hangs from an arm empty turned by 2 pi j / n about the `cluster` empty,
    whose z rotation is `cluster_rotation`; the copy sits `cluster_spread` along its arm (one
    parameter bound to every copy's local x) at its resting height, turned 0.6 j on itself.
Labels: 8 classes (scenes.classes("placement")); the copies are numbered 1..16 in name order,
which within a set is class order.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable

if __name__ == "__main__" and not __package__:  # a script: `python .../placement.py --out x`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))))
    from blender_addon.scenes import run_as_script

    run_as_script(__file__)

import bpy  # noqa: E402
from mathutils import Vector  # noqa: E402

from protocol.bindings import Binding  # noqa: E402
from protocol.scene import SceneDescription  # noqa: E402

from ..object_classes import CLASS_PROPERTY  # noqa: E402
from . import classes, describe, main, primitives  # noqa: E402
from .primitives import mesh_primitive, new_object, principled  # noqa: E402

SCENE = "placement"
Vec3 = tuple[float, float, float]


def _grid(xs: tuple[float, ...], ys: tuple[float, ...], z: float) -> list[Vec3]:
    return [(x, y, z) for y in ys for x in xs]


# Per layout: camera (location, look-at), the 9 locations (x, y, surface z), the world
# background (linear RGB, strength).
LAYOUTS = (
    {   # L0: objects on a wooden floor in front of a pale wall, sunlit
        "camera": ((0.0, -2.9, 2.4), (0.0, 0.3, 0.0)),
        "locations": _grid((-1.0, 0.0, 1.0), (-0.5, 0.3, 1.1), 0.0),
        "world": ((0.55, 0.65, 0.8), 0.5),
    },
    {   # L1: objects on a table top in a dim room under an area lamp
        "camera": ((0.5, -2.5, 2.5), (0.0, 0.1, 0.75)),
        "locations": _grid((-0.85, 0.0, 0.85), (-0.45, 0.15, 0.75), 0.78),
        "world": ((1.0, 0.85, 0.7), 0.25),
    },
    {   # L2: a three-step shelf (front row on the floor), lit by a warm spot
        "camera": ((-1.0, -2.9, 2.3), (0.0, 0.4, 0.3)),
        "locations": [(x, y, z) for (y, z) in ((-0.4, 0.0), (0.35, 0.35), (1.1, 0.7))
                      for x in (-0.95, 0.0, 0.95)],
        "world": ((0.7, 0.75, 0.9), 0.35),
    },
)
CLASS_NAMES = tuple(classes(SCENE)[1:])
OBJ_SCALE = 1.6  # all class objects, relative to the sizes in _class_meshes
QUALITIES = {"low": (4, 1), "high": (16, 6)}  # samples, bounces
OBJECT_SETS = {
    "A": ("cube", "sphere", "cone"),
    "B": ("cylinder", "torus", "icosphere", "monkey"),
    "C": ("cube", "cone", "torus", "monkey", "slab"),
    "D": ("sphere", "cylinder", "icosphere", "slab"),
}
CONFIGS = tuple(f"L{li}_P{pi}_{q}" for li in range(len(LAYOUTS)) for pi in range(9)
                for q in QUALITIES)
BOUNCES = ("max_bounces", "diffuse_bounces", "glossy_bounces", "transmission_bounces",
           "volume_bounces", "transparent_max_bounces")
REST = {"config": "L0_P4_low", "object_set": "A", "cluster_rotation": [0.0],
        "cluster_spread": [0.4]}
_MATERIAL = "placement_object"
_SPECS = {  # primitive, size, colour (linear RGB), smooth shading
    "cube": ("cube", {"size": 0.3}, (0.8, 0.1, 0.08), False),
    "sphere": ("sphere", {"radius": 0.17}, (0.1, 0.3, 0.85), True),
    "cylinder": ("cylinder", {"radius": 0.13, "depth": 0.36}, (0.9, 0.75, 0.1), True),
    "cone": ("cone", {"radius": 0.17, "depth": 0.36}, (0.1, 0.6, 0.15), True),
    "torus": ("torus", {"major": 0.15, "minor": 0.055}, (0.8, 0.35, 0.7), True),
    "icosphere": ("icosphere", {"radius": 0.18, "subdivisions": 1}, (0.1, 0.7, 0.7), False),
    "monkey": ("monkey", {}, (0.85, 0.5, 0.15), True),
    "slab": ("cube", {"size": 1.0}, (0.55, 0.55, 0.55), False),
}
_SCALES = {"monkey": (0.15, 0.15, 0.15), "slab": (0.42, 0.26, 0.08)}


def parse_config(config: str) -> tuple[int, int, str]:
    """'L1_P3_high' -> (1, 3, 'high')."""
    lay, loc, quality = config.split("_")
    return int(lay[1:]), int(loc[1:]), quality


def _object_material() -> bpy.types.Material:
    """Principled BSDF with base colour = object colour (RGB) and roughness = its alpha."""
    mat = principled(_MATERIAL, (0.8, 0.8, 0.8))
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    info = nodes.new("ShaderNodeObjectInfo")
    links.new(info.outputs["Color"], nodes["Principled BSDF"].inputs["Base Color"])
    links.new(info.outputs["Alpha"], nodes["Principled BSDF"].inputs["Roughness"])
    return mat


def _class_meshes(material: bpy.types.Material) -> dict[str, tuple]:
    """Class name -> (mesh carrying the class, object scale, resting height, surface)."""
    out = {}
    for name, (kind, kw, color, smooth) in _SPECS.items():
        mesh = mesh_primitive(f"cls_{name}", kind, smooth=smooth, **kw)
        mesh.materials.append(material)
        mesh[CLASS_PROPERTY] = name
        scale = tuple(OBJ_SCALE * a for a in _SCALES.get(name, (1.0, 1.0, 1.0)))
        rest = -min(v.co.z for v in mesh.vertices) * scale[2]  # lift to sit on z = 0
        out[name] = (mesh, scale, rest, (*color, 0.45))
    return out


def _copy_name(set_name: str, cls: str) -> str:
    return f"{set_name}{CLASS_NAMES.index(cls) + 1}_{cls}"


def _object_sets(scene: bpy.types.Scene, cluster: bpy.types.Object,
                 material: bpy.types.Material) -> None:
    meshes = _class_meshes(material)
    for set_name, members in OBJECT_SETS.items():
        coll = bpy.data.collections.new(f"set_{set_name}")
        scene.collection.children.link(coll)
        for j, cls in enumerate(members):
            mesh, scale, rest, surface = meshes[cls]
            angle = 2.0 * math.pi * j / len(members)
            arm = new_object(f"{set_name}_arm{j}", None, rotation=(0.0, 0.0, angle),
                             collection=coll, parent=cluster)
            arm.empty_display_size = 0.1
            obj = new_object(_copy_name(set_name, cls), mesh, collection=coll, parent=arm,
                             location=(REST["cluster_spread"][0], 0.0, rest),
                             rotation=(0.0, 0.0, 0.6 * j), scale=scale)
            obj.color = surface


def _rig(scene: bpy.types.Scene) -> bpy.types.Object:
    """Camera with a Track To look-at empty, the cluster empty and the empties they move to."""
    rig = bpy.data.collections.new("rig")
    scene.collection.children.link(rig)
    for li, layout in enumerate(LAYOUTS):
        (cam_loc, target) = layout["camera"]
        new_object(f"camera_L{li}", None, location=cam_loc, collection=rig)
        new_object(f"target_L{li}", None, location=target, collection=rig)
        for pi, loc in enumerate(layout["locations"]):
            new_object(f"site_L{li}_P{pi}", None, location=loc, collection=rig)
    cam_data = bpy.data.cameras.new("camera")
    cam_data.lens = 35.0
    cam = new_object("camera", cam_data, collection=rig)
    look = new_object("camera_target", None, collection=rig)
    track = cam.constraints.new("TRACK_TO")
    track.target, track.track_axis, track.up_axis = look, "TRACK_NEGATIVE_Z", "UP_Y"
    scene.camera = cam
    return new_object("cluster", None, collection=rig)


def _box(name: str, size: Vec3, loc: Vec3, color: Vec3, roughness: float,
         coll: bpy.types.Collection) -> bpy.types.Object:
    mesh = mesh_primitive(name, "cube", smooth=False, size=1.0)
    mesh.materials.append(bpy.data.materials[_MATERIAL])
    obj = new_object(name, mesh, location=loc, scale=size, collection=coll)
    obj.color = (*color, roughness)  # what the shared material reads
    return obj


def _layout0(coll: bpy.types.Collection) -> None:
    _box("L0_floor", (12, 12, 0.1), (0, 0, -0.05), (0.45, 0.28, 0.14), 0.6, coll)
    _box("L0_wall", (12, 0.1, 6), (0, 2.6, 3.0), (0.6, 0.62, 0.68), 0.9, coll)
    sun = bpy.data.lights.new("L0_sun", "SUN")
    sun.energy, sun.angle = 2.5, 0.1
    new_object("L0_sun", sun, rotation=(math.radians(40), 0, math.radians(30)),
               collection=coll)


def _layout1(coll: bpy.types.Collection) -> None:
    _box("L1_top", (2.6, 1.8, 0.06), (0, 0.1, 0.75), (0.2, 0.09, 0.035), 0.35, coll)
    _box("L1_floor", (12, 12, 0.1), (0, 0, -0.05), (0.12, 0.12, 0.12), 0.8, coll)
    _box("L1_wall", (12, 0.1, 6), (0, 1.8, 3.0), (0.55, 0.5, 0.38), 0.9, coll)
    for i, (x, y) in enumerate(((-1.2, -0.7), (1.2, -0.7), (-1.2, 0.9), (1.2, 0.9))):
        _box(f"L1_leg{i}", (0.08, 0.08, 0.72), (x, y, 0.36), (0.05, 0.05, 0.05), 0.5, coll)
    lamp = bpy.data.lights.new("L1_lamp", "AREA")
    lamp.energy, lamp.size = 110.0, 1.5
    new_object("L1_lamp", lamp, location=(0.3, -0.4, 2.6), collection=coll)


def _layout2(coll: bpy.types.Collection) -> None:
    step, wall = ((0.35, 0.36, 0.38), 0.7), ((0.15, 0.25, 0.35), 0.9)
    _box("L2_floor", (12, 12, 0.1), (0, 0, -0.05), (0.3, 0.33, 0.4), 0.8, coll)
    _box("L2_step1", (3.6, 1.8, 0.35), (0, 0.75, 0.175), *step, coll)
    _box("L2_step2", (3.6, 0.9, 0.35), (0, 1.2, 0.525), *step, coll)
    _box("L2_wall", (12, 0.1, 6), (0, 1.7, 3.0), *wall, coll)
    _box("L2_side", (0.1, 4.0, 3.0), (2.1, 0.5, 1.5), *wall, coll)
    spot = bpy.data.lights.new("L2_spot", "SPOT")
    spot.energy, spot.spot_size, spot.shadow_soft_size = 500.0, math.radians(70), 0.3
    spot.color = (1.0, 0.8, 0.6)
    direction = Vector((0.0, 0.4, 0.4)) - Vector((-2.0, -2.0, 3.5))
    new_object("L2_spot", spot, location=(-2.0, -2.0, 3.5),
               rotation=direction.to_track_quat("-Z", "Y").to_euler(), collection=coll)


def _world(world: bpy.types.World) -> None:
    """One Background node per layout behind two Mix Shaders whose factors `config` sets
    (0/1: Cycles folds the unused branches away)."""
    world.use_nodes = True
    nodes, links = world.node_tree.nodes, world.node_tree.links
    for n in list(nodes):
        nodes.remove(n)
    out = nodes.new("ShaderNodeOutputWorld")
    prev = None
    for li, layout in enumerate(LAYOUTS):
        color, strength = layout["world"]
        bg = nodes.new("ShaderNodeBackground")
        bg.name = bg.label = f"background_L{li}"
        bg.inputs["Color"].default_value = (*color, 1.0)
        bg.inputs["Strength"].default_value = strength
        bg.location = (-600.0 + 200.0 * li, 300.0 - 150.0 * li)
        if prev is None:
            prev = bg.outputs[0]
            continue
        mix = nodes.new("ShaderNodeMixShader")
        mix.name = mix.label = f"mix_L{li}"
        mix.inputs["Fac"].default_value = 0.0
        mix.location = (-400.0 + 200.0 * li, 0.0)
        links.new(prev, mix.inputs[1])
        links.new(bg.outputs[0], mix.inputs[2])
        prev = mix.outputs[0]
    links.new(prev, out.inputs["Surface"])


def build() -> SceneDescription:
    """Empty the current file, build all three layouts and the four object sets in it and
    return its description."""
    primitives.reset_data()  # the panel's examples switch it off (examples._no_reset)
    scene = bpy.context.scene
    if scene.name == "Scene":  # an emptied file; the panel builds into "AutoSim NAME" instead
        scene.name = SCENE
    scene.world = bpy.data.worlds.new("placement_world")
    _world(scene.world)
    material = _object_material()
    for li, make in enumerate((_layout0, _layout1, _layout2)):
        coll = bpy.data.collections.new(f"layout_L{li}")
        scene.collection.children.link(coll)
        make(coll)
    _object_sets(scene, _rig(scene), material)
    return description(scene.name)


def _by_config(f: Callable[[int, int, str], str]) -> list[str]:
    """One alternative per config choice: f(layout, location, quality)."""
    return [f(*parse_config(c)) for c in CONFIGS]


def bindings(scene_name: str = SCENE) -> list[Binding]:
    """Every parameter of placement.json bound to what it drives in the built file."""
    mix = 'node_tree.nodes["{}"].inputs["Fac"].default_value'
    out = [
        Binding("config", "one_of", alternatives=_by_config(lambda li, pi, q: f"layout_L{li}")),
        Binding("config", data="worlds", id="placement_world", path=mix.format("mix_L1"),
                alternatives=_by_config(lambda li, pi, q: "1" if li >= 1 else "0")),
        Binding("config", data="worlds", id="placement_world", path=mix.format("mix_L2"),
                alternatives=_by_config(lambda li, pi, q: "1" if li == 2 else "0")),
        Binding("config", "site", id="camera",
                alternatives=_by_config(lambda li, pi, q: f"camera_L{li}")),
        Binding("config", "site", id="camera_target",
                alternatives=_by_config(lambda li, pi, q: f"target_L{li}")),
        Binding("config", "site", id="cluster",
                alternatives=_by_config(lambda li, pi, q: f"site_L{li}_P{pi}")),
        Binding("config", data="scenes", id=scene_name, path="cycles.samples", type="int",
                alternatives=_by_config(lambda li, pi, q: str(QUALITIES[q][0]))),
    ]
    out += [Binding("config", data="scenes", id=scene_name, path=f"cycles.{b}", type="int",
                    alternatives=_by_config(lambda li, pi, q: str(QUALITIES[q][1])))
            for b in BOUNCES]
    out.append(Binding("object_set", "one_of", alternatives=[f"set_{s}" for s in OBJECT_SETS]))
    out.append(Binding("cluster_rotation", data="objects", id="cluster", path="rotation_euler",
                       components=[2], low=-math.pi, high=math.pi))
    out += [Binding("cluster_spread", data="objects", id=_copy_name(s, cls), path="location",
                    components=[0], low=0.2, high=0.6)
            for s, members in OBJECT_SETS.items() for cls in members]
    return out


def description(scene_name: str = SCENE) -> SceneDescription:
    """The scene description: placement.json's space, the bindings, the classes."""
    return describe(SCENE, bindings(scene_name), scene_name)


if __name__ == "__main__":
    sys.exit(main(SCENE))
