"""CLEVR-like scene (AutoSimulate sec. 5.1): spheres, cubes and cylinders on a grey ground,
three sun lamps (key, fill, back) and an ambient world, camera looking down at ~35 degrees.

Labels: class ids follow scenes.classes("clevr") = background, sphere, cube, cylinder;
object slot i (0-based) renders with pass_index i + 1.

All objects share one material that reads colour and rubber/metal from the object's colour
(Object Info). A latent then changes object properties only: reassigning material slots made
Cycles re-sync geometry and leaked ~11 KB of memory per render in a long-running server.
"""

from __future__ import annotations

import math

import bpy

from .. import render as R
from . import SceneHandle, classes

N_SLOTS = 5
GROUND_HALF = 3.0  # objects live in [-3, 3]^2
SHAPES = ("sphere", "cube", "cylinder")
# CLEVR palette (sRGB 0-255), converted to linear for the shader.
COLORS = {
    "gray": (87, 87, 87), "red": (173, 35, 35), "blue": (42, 75, 215),
    "green": (29, 105, 20), "brown": (129, 74, 25), "purple": (129, 38, 192),
    "cyan": (41, 208, 208), "yellow": (255, 238, 51),
}
COLOR_NAMES = tuple(COLORS)
# Object colour alpha selects the material: 1 = metal (metallic 1, roughness 0.25), 0.5 = rubber
# (metallic 0, roughness 0.75); 0.5 rather than 0 keeps rubber visible in 'Object' viewport colour.
_ALPHA = {"metal": 1.0, "rubber": 0.5}
_CLASS_ID = {name: i for i, name in enumerate(classes("clevr"))}
_Z = {"sphere": 0.6, "cube": 0.5, "cylinder": 0.5}  # rest on the ground
_DEFAULTS = {"world_light": 0.5, "key_light": 3.0, "fill_light": 1.0, "back_light": 1.0,
             "samples": "4", "bounces": 2.0, "num_objects": "3", "material": "rubber",
             "color": "gray"}


def _lin(c: float) -> float:
    c = c / 255.0
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _object_material():
    """Principled BSDF with base colour = object colour, metallic = 2 * alpha - 1,
    roughness = 0.75 - 0.5 * metallic (exact for alpha 0.5 and 1)."""
    mat = R.principled("clevr_object", (0.8, 0.8, 0.8))
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = nodes["Principled BSDF"]
    info = nodes.new("ShaderNodeObjectInfo")
    metallic = nodes.new("ShaderNodeMath")
    metallic.operation = "MULTIPLY_ADD"
    metallic.inputs[1].default_value, metallic.inputs[2].default_value = 2.0, -1.0
    rough = nodes.new("ShaderNodeMath")
    rough.operation = "MULTIPLY_ADD"
    rough.inputs[1].default_value, rough.inputs[2].default_value = -0.5, 0.75
    links.new(info.outputs["Color"], bsdf.inputs["Base Color"])
    links.new(info.outputs["Alpha"], metallic.inputs[0])
    links.new(metallic.outputs[0], bsdf.inputs["Metallic"])
    links.new(metallic.outputs[0], rough.inputs[0])
    links.new(rough.outputs[0], bsdf.inputs["Roughness"])
    return mat


def _sun(name: str, elevation: float, azimuth: float, angle: float = 0.15):
    light = bpy.data.lights.new(name, "SUN")
    light.angle = angle
    # A sun shines along its local -Z; tilt it to come from (azimuth, elevation).
    rot = (math.pi / 2 - elevation, 0.0, azimuth + math.pi / 2)
    return R.new_object(name, light, rotation=rot)


def build() -> SceneHandle:
    """Empty the current file and build the CLEVR scene in it."""
    R.reset_data()
    scene = bpy.context.scene
    world = bpy.data.worlds.new("clevr_world")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.8, 0.8, 0.85, 1.0)
    scene.world = world

    ground_mat = R.principled("ground", (0.25, 0.25, 0.25), roughness=0.9)
    ground_mesh = R.mesh_primitive("ground", "plane", smooth=False, size=40.0)
    ground_mesh.materials.append(ground_mat)
    R.new_object("ground", ground_mesh)

    cam_data = bpy.data.cameras.new("camera")
    cam_data.lens = 35.0
    dist, elev, azim = 8.0, math.radians(35.0), math.radians(-60.0)
    cam_loc = (dist * math.cos(elev) * math.cos(azim), dist * math.cos(elev) * math.sin(azim),
               dist * math.sin(elev))
    cam = R.new_object("camera", cam_data, location=cam_loc,
                       rotation=(math.pi / 2 - elev, 0.0, azim + math.pi / 2))
    scene.camera = cam

    lights = {
        "key_light": _sun("key_light", math.radians(50), math.radians(-30)),
        "fill_light": _sun("fill_light", math.radians(30), math.radians(-140), angle=0.4),
        "back_light": _sun("back_light", math.radians(40), math.radians(110), angle=0.3),
    }

    meshes = {
        "sphere": R.mesh_primitive("sphere", "sphere", radius=_Z["sphere"]),
        "cube": R.mesh_primitive("cube", "cube", size=2 * _Z["cube"]),
        "cylinder": R.mesh_primitive("cylinder", "cylinder", radius=0.5, depth=2 * _Z["cylinder"]),
    }
    material = _object_material()
    for mesh in meshes.values():
        mesh.materials.append(material)

    slots = []
    for i in range(N_SLOTS):
        obj = R.new_object(f"obj{i}", meshes["sphere"], pass_index=i + 1,
                           rotation=(0.0, 0.0, math.radians(17.0 + 37.0 * i)))
        slots.append(obj)

    handle = SceneHandle("clevr", scene, objects={"slots": slots, **lights},
                         data={"meshes": meshes, "material": material, "world": world})
    apply(handle, {})
    return handle


_LINEAR = {name: tuple(_lin(c) for c in rgb) for name, rgb in COLORS.items()}


def _num(latent: dict, key: str, low: float, high: float) -> float:
    v = latent.get(key, _DEFAULTS.get(key, 0.0))
    try:
        v = float(v)
    except (TypeError, ValueError):
        v = float(_DEFAULTS[key])
    if not math.isfinite(v):
        v = float(_DEFAULTS[key])
    return min(max(v, low), high)


def _choice(latent: dict, key: str, choices, default: str) -> str:
    v = str(latent.get(key, default))
    return v if v in choices else default


def _xy(latent: dict, i: int) -> tuple[float, float]:
    v = latent.get(f"obj{i}_xy")
    try:
        x, y = (float(a) for a in v)
    except (TypeError, ValueError):
        x, y = (2.0 * math.cos(1.3 * i), 2.0 * math.sin(1.3 * i))  # a fixed spread
    x = x if math.isfinite(x) else 0.0
    y = y if math.isfinite(y) else 0.0
    return (min(max(x, -GROUND_HALF), GROUND_HALF), min(max(y, -GROUND_HALF), GROUND_HALF))


def apply(handle: SceneHandle, latent: dict) -> list[tuple[int, int]]:
    """Set the scene to `latent` (missing keys take defaults; values are clipped/rounded
    here). Returns (pass_index, class_id) of the visible objects."""
    scene = handle.scene
    world = handle.data["world"]
    bg = world.node_tree.nodes["Background"]
    R.assign(bg.inputs["Strength"], "default_value", _num(latent, "world_light", 0.0, 10.0))
    for key in ("key_light", "fill_light", "back_light"):
        R.assign(handle.objects[key].data, "energy", _num(latent, key, 0.0, 20.0))
    samples = int(_choice(latent, "samples", ("1", "2", "4", "8", "16", "32", "64"), "4"))
    R.set_quality(scene, samples, _num(latent, "bounces", 0.0, 8.0))

    count = int(_choice(latent, "num_objects", ("1", "2", "3", "4", "5"), "3"))
    material = _choice(latent, "material", ("rubber", "metal"), "rubber")
    base = COLOR_NAMES.index(_choice(latent, "color", COLOR_NAMES, "gray"))
    meshes = handle.data["meshes"]
    placed = []
    for i, obj in enumerate(handle.objects["slots"]):
        visible = i < count
        R.assign(obj, "hide_render", not visible)
        R.assign(obj, "hide_viewport", not visible)  # an unused slot is not in the viewport
        if not visible:
            continue
        shape = _choice(latent, f"obj{i}_shape", SHAPES, SHAPES[i % 3])
        R.assign(obj, "data", meshes[shape])
        rgb = _LINEAR[COLOR_NAMES[(base + 3 * i) % len(COLOR_NAMES)]]
        R.assign(obj, "color", (*rgb, _ALPHA[material]))
        x, y = _xy(latent, i)
        R.assign(obj, "location", (x, y, _Z[shape]))
        placed.append((obj.pass_index, _CLASS_ID[shape]))
    return placed
