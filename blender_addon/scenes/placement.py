"""Object placement scene (AutoSimulate sec. 5.2 with Blender primitives).

3 layouts x 9 object locations x 2 render qualities = the 54 choices of the categorical
`config` ("L{layout}_P{location}_{quality}", layout-major). A latent puts a small cluster of
objects (which ones: `object_set`) on a ring (`cluster_spread` radius, turned by
`cluster_rotation`) around the chosen location of the chosen layout.

Labels: 8 classes (scenes.classes("placement")); the object of class c renders with
pass_index c (one object per class).

Every mesh shares one material that takes its colour and roughness from the object's colour
(RGB, alpha); showing and hiding objects then never changes which shaders Cycles uses (with one
material per object that leaked ~10 KB of memory per render in a long-running server).
"""

from __future__ import annotations

import math

import bpy
from mathutils import Vector

from .. import render as R
from . import SceneHandle, classes

CLASS_NAMES = tuple(classes("placement")[1:])
OBJ_SCALE = 1.6  # all class objects, relative to the sizes in _class_meshes
QUALITIES = {"low": (4, 1), "high": (16, 6)}  # samples, bounces
OBJECT_SETS = {
    "A": ("cube", "sphere", "cone"),
    "B": ("cylinder", "torus", "icosphere", "monkey"),
    "C": ("cube", "cone", "torus", "monkey", "slab"),
    "D": ("sphere", "cylinder", "icosphere", "slab"),
}


def _grid(xs, ys, z):
    return [(x, y, z) for y in ys for x in xs]


# Per layout: camera (location, look-at), the 9 locations (x, y, surface z).
LAYOUTS = (
    {   # L0: objects on a wooden floor in front of a pale wall, sunlit
        "camera": ((0.0, -2.9, 2.4), (0.0, 0.3, 0.0)),
        "locations": _grid((-1.0, 0.0, 1.0), (-0.5, 0.3, 1.1), 0.0),
    },
    {   # L1: objects on a table top in a dim room under an area lamp
        "camera": ((0.5, -2.5, 2.5), (0.0, 0.1, 0.75)),
        "locations": _grid((-0.85, 0.0, 0.85), (-0.45, 0.15, 0.75), 0.78),
    },
    {   # L2: a three-step shelf (front row on the floor), lit by a warm spot
        "camera": ((-1.0, -2.9, 2.3), (0.0, 0.4, 0.3)),
        "locations": [(x, y, z) for (y, z) in ((-0.4, 0.0), (0.35, 0.35), (1.1, 0.7))
                      for x in (-0.95, 0.0, 0.95)],
    },
)
CONFIGS = tuple(f"L{li}_P{pi}_{q}" for li in range(len(LAYOUTS)) for pi in range(9)
                for q in QUALITIES)


_MATERIAL = "placement_object"


def _object_material():
    """Principled BSDF with base colour = object colour (RGB) and roughness = its alpha."""
    mat = R.principled(_MATERIAL, (0.8, 0.8, 0.8))
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    info = nodes.new("ShaderNodeObjectInfo")
    links.new(info.outputs["Color"], nodes["Principled BSDF"].inputs["Base Color"])
    links.new(info.outputs["Alpha"], nodes["Principled BSDF"].inputs["Roughness"])
    return mat


def _surface(color, roughness: float) -> tuple[float, float, float, float]:
    """A surface (linear RGB, roughness) as the object colour _object_material() reads."""
    return (*color, roughness)


def _box(name, size, loc, surface):
    mesh = R.mesh_primitive(name, "cube", smooth=False, size=1.0)
    mesh.materials.append(bpy.data.materials[_MATERIAL])
    obj = R.new_object(name, mesh, location=loc, scale=size)
    obj.color = surface
    return obj


def _layout0():
    floor = _surface((0.45, 0.28, 0.14), 0.6)
    wall = _surface((0.6, 0.62, 0.68), 0.9)
    objs = [_box("L0_floor", (12, 12, 0.1), (0, 0, -0.05), floor),
            _box("L0_wall", (12, 0.1, 6), (0, 2.6, 3.0), wall)]
    sun = bpy.data.lights.new("L0_sun", "SUN")
    sun.energy, sun.angle = 2.5, 0.1
    objs.append(R.new_object("L0_sun", sun, rotation=(math.radians(40), 0, math.radians(30))))
    return objs, ((0.55, 0.65, 0.8), 0.5)


def _layout1():
    top = _surface((0.2, 0.09, 0.035), 0.35)
    leg = _surface((0.05, 0.05, 0.05), 0.5)
    floor = _surface((0.12, 0.12, 0.12), 0.8)
    wall = _surface((0.55, 0.5, 0.38), 0.9)
    objs = [_box("L1_top", (2.6, 1.8, 0.06), (0, 0.1, 0.75), top),
            _box("L1_floor", (12, 12, 0.1), (0, 0, -0.05), floor),
            _box("L1_wall", (12, 0.1, 6), (0, 1.8, 3.0), wall)]
    for i, (x, y) in enumerate(((-1.2, -0.7), (1.2, -0.7), (-1.2, 0.9), (1.2, 0.9))):
        objs.append(_box(f"L1_leg{i}", (0.08, 0.08, 0.72), (x, y, 0.36), leg))
    lamp = bpy.data.lights.new("L1_lamp", "AREA")
    lamp.energy, lamp.size = 110.0, 1.5
    objs.append(R.new_object("L1_lamp", lamp, location=(0.3, -0.4, 2.6)))
    return objs, ((1.0, 0.85, 0.7), 0.25)


def _layout2():
    step = _surface((0.35, 0.36, 0.38), 0.7)
    floor = _surface((0.3, 0.33, 0.4), 0.8)
    wall = _surface((0.15, 0.25, 0.35), 0.9)
    objs = [_box("L2_floor", (12, 12, 0.1), (0, 0, -0.05), floor),
            _box("L2_step1", (3.6, 1.8, 0.35), (0, 0.75, 0.175), step),
            _box("L2_step2", (3.6, 0.9, 0.35), (0, 1.2, 0.525), step),
            _box("L2_wall", (12, 0.1, 6), (0, 1.7, 3.0), wall),
            _box("L2_side", (0.1, 4.0, 3.0), (2.1, 0.5, 1.5), wall)]
    spot = bpy.data.lights.new("L2_spot", "SPOT")
    spot.energy, spot.spot_size, spot.shadow_soft_size = 500.0, math.radians(70), 0.3
    spot.color = (1.0, 0.8, 0.6)
    direction = Vector((0.0, 0.4, 0.4)) - Vector((-2.0, -2.0, 3.5))
    objs.append(R.new_object("L2_spot", spot, location=(-2.0, -2.0, 3.5),
                             rotation=direction.to_track_quat("-Z", "Y").to_euler()))
    return objs, ((0.7, 0.75, 0.9), 0.35)


def _class_meshes():
    specs = {
        "cube": ("cube", {"size": 0.3}, (0.8, 0.1, 0.08), False),
        "sphere": ("sphere", {"radius": 0.17}, (0.1, 0.3, 0.85), True),
        "cylinder": ("cylinder", {"radius": 0.13, "depth": 0.36}, (0.9, 0.75, 0.1), True),
        "cone": ("cone", {"radius": 0.17, "depth": 0.36}, (0.1, 0.6, 0.15), True),
        "torus": ("torus", {"major": 0.15, "minor": 0.055}, (0.8, 0.35, 0.7), True),
        "icosphere": ("icosphere", {"radius": 0.18, "subdivisions": 1}, (0.1, 0.7, 0.7), False),
        "monkey": ("monkey", {}, (0.85, 0.5, 0.15), True),
        "slab": ("cube", {"size": 1.0}, (0.55, 0.55, 0.55), False),
    }
    scales = {"monkey": (0.15, 0.15, 0.15), "slab": (0.42, 0.26, 0.08)}
    out = {}
    for name, (kind, kw, color, smooth) in specs.items():
        mesh = R.mesh_primitive(f"cls_{name}", kind, smooth=smooth, **kw)
        mesh.materials.append(bpy.data.materials[_MATERIAL])
        scale = tuple(OBJ_SCALE * a for a in scales.get(name, (1.0, 1.0, 1.0)))
        rest = -min(v.co.z for v in mesh.vertices) * scale[2]  # lift to sit on z = 0
        out[name] = (mesh, scale, rest, _surface(color, 0.45))
    return out


def build() -> SceneHandle:
    """Empty the current file and build all three layouts and the 8 class objects."""
    R.reset_data()
    scene = bpy.context.scene
    world = bpy.data.worlds.new("placement_world")
    world.use_nodes = True
    scene.world = world
    _object_material()
    cam = R.new_object("camera", bpy.data.cameras.new("camera"))
    cam.data.lens = 35.0
    scene.camera = cam
    layouts = [_layout0(), _layout1(), _layout2()]
    objects = {}
    for ci, (name, (mesh, scale, rest, surface)) in enumerate(_class_meshes().items(), start=1):
        obj = R.new_object(name, mesh, scale=scale, pass_index=ci)
        obj.color = surface
        obj["rest_z"] = rest
        objects[name] = obj
    handle = SceneHandle("placement", scene, objects=objects,
                         data={"layouts": layouts, "world": world, "camera": cam})
    apply(handle, {})
    return handle


def _num(latent, key, default, low, high):
    try:
        v = float(latent.get(key, default))
    except (TypeError, ValueError):
        v = default
    if not math.isfinite(v):
        v = default
    return min(max(v, low), high)


def parse_config(config: str) -> tuple[int, int, str]:
    """'L1_P3_high' -> (1, 3, 'high'); unknown strings -> (0, 4, 'low')."""
    if config not in CONFIGS:
        return 0, 4, "low"
    lay, loc, quality = config.split("_")
    return int(lay[1:]), int(loc[1:]), quality


def apply(handle: SceneHandle, latent: dict) -> list[tuple[int, int]]:
    """Set the scene to `latent` (missing keys take defaults; values are clipped here).
    Returns (pass_index, class_id) of the visible objects."""
    scene = handle.scene
    layout, loc_i, quality = parse_config(str(latent.get("config", "")))
    R.set_quality(scene, *QUALITIES[quality])

    for li, (objs, _) in enumerate(handle.data["layouts"]):
        for obj in objs:
            R.assign(obj, "hide_render", li != layout)
            R.assign(obj, "hide_viewport", li != layout)
    color, strength = handle.data["layouts"][layout][1]
    bg = handle.data["world"].node_tree.nodes["Background"]
    R.assign(bg.inputs["Color"], "default_value", (*color, 1.0))
    R.assign(bg.inputs["Strength"], "default_value", strength)

    cam_loc, target = LAYOUTS[layout]["camera"]
    cam = handle.data["camera"]
    R.assign(cam, "location", cam_loc)
    cam_rot = (Vector(target) - Vector(cam_loc)).to_track_quat("-Z", "Y").to_euler()
    R.assign(cam, "rotation_euler", tuple(cam_rot))

    names = OBJECT_SETS.get(str(latent.get("object_set", "A")), OBJECT_SETS["A"])
    rot = _num(latent, "cluster_rotation", 0.0, -math.pi, math.pi)
    spread = _num(latent, "cluster_spread", 0.4, 0.2, 0.6)
    cx, cy, cz = LAYOUTS[layout]["locations"][loc_i]
    placed = []
    for name, obj in handle.objects.items():
        visible = name in names
        R.assign(obj, "hide_render", not visible)
        R.assign(obj, "hide_viewport", not visible)
        if not visible:
            continue
        j = names.index(name)
        angle = rot + 2.0 * math.pi * j / len(names)
        R.assign(obj, "location", (cx + spread * math.cos(angle),
                                   cy + spread * math.sin(angle), cz + obj["rest_z"]))
        R.assign(obj, "rotation_euler", (0.0, 0.0, angle + 0.6 * j))
        placed.append((obj.pass_index, obj.pass_index))
    return placed
