"""CLEVR-like example (AutoSimulate sec. 5.1), a builder script: spheres, cubes and cylinders on
a grey ground, three sun lamps (key, fill, back) and an ambient world, camera looking down at
~35 degrees. It makes the objects with bpy and binds every parameter of clevr.json through the
public bindings API; nothing here runs per render.

    python blender_addon/scenes/clevr.py --out clevr.blend
    blender -b --factory-startup -P blender_addon/scenes/clevr.py -- --out clevr.blend

How each rule of the scene is held by the file itself, not by code:
  - object i's colour is the `color` choice plus 3 i along COLOR_NAMES: the objects share one
    material that picks the colour from a palette ramp at (choice + 3 slot) / 8, wrapped, with
    the choice a Value node `color` writes and the slot each object's static `clevr_slot`
    custom property (an Attribute node reads it);
  - rubber / metal: `material` writes the shared material's Metallic and Roughness inputs;
  - z from the shape: the three meshes have their origin at their base, so objects stand on
    the ground at z = 0 whatever the shape, and `obj{i}_xy` writes location x, y only;
  - the class follows the shape: each mesh carries its class (autosim_class on the mesh);
  - `bounces` drives all six Cycles bounce limits (one parameter, six bindings).
Object slot i (0-based) renders with pass_index i + 1 (labelled objects in name order).
"""

from __future__ import annotations

import math
import os
import sys

if __name__ == "__main__" and not __package__:  # a script: `python .../clevr.py --out x`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))))
    from blender_addon.scenes import run_as_script

    run_as_script(__file__)

import bpy  # noqa: E402
from mathutils import Matrix  # noqa: E402

from protocol.bindings import Binding  # noqa: E402
from protocol.scene import SceneDescription  # noqa: E402

from ..object_classes import CLASS_PROPERTY  # noqa: E402
from . import describe, main, primitives  # noqa: E402
from .primitives import mesh_primitive, new_object, principled  # noqa: E402

SCENE = "clevr"
N_SLOTS = 5
SHAPES = ("sphere", "cube", "cylinder")
# CLEVR palette (sRGB 0-255), converted to linear for the shader.
COLORS = {
    "gray": (87, 87, 87), "red": (173, 35, 35), "blue": (42, 75, 215),
    "green": (29, 105, 20), "brown": (129, 74, 25), "purple": (129, 38, 192),
    "cyan": (41, 208, 208), "yellow": (255, 238, 51),
}
COLOR_NAMES = tuple(COLORS)
FINISH = {"rubber": (0.0, 0.75), "metal": (1.0, 0.25)}  # metallic, roughness
_BASE = {"sphere": 0.6, "cube": 0.5, "cylinder": 0.5}  # centre to base: each mesh's lift
STRENGTH = 'node_tree.nodes["Background"].inputs["Strength"].default_value'
PALETTE = 'node_tree.nodes["palette_base"].outputs[0].default_value'
BSDF = 'node_tree.nodes["Principled BSDF"].inputs["{}"].default_value'
SLOT_PROPERTY = "clevr_slot"
BOUNCES = ("max_bounces", "diffuse_bounces", "glossy_bounces", "transmission_bounces",
           "volume_bounces", "transparent_max_bounces")
# What the file shows when opened: scenes.realise() applies it after build().
REST = {"world_light": [0.5], "key_light": [3.0], "fill_light": [1.0], "back_light": [1.0],
        "samples": "4", "bounces": [2.0], "num_objects": "3", "material": "rubber",
        "color": "gray",
        **{f"obj{i}_xy": [2.0 * math.cos(1.3 * i), 2.0 * math.sin(1.3 * i)]
           for i in range(N_SLOTS)},
        **{f"obj{i}_shape": SHAPES[i % 3] for i in range(N_SLOTS)}}


def _lin(c: float) -> float:
    c = c / 255.0
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _object_material() -> bpy.types.Material:
    """The one material every object slot shares. Base colour: a constant Color Ramp over the
    palette at fract(base + 3/8 slot), `base` a Value node the `color` parameter writes and
    `slot` each object's static `clevr_slot` custom property (Attribute node, Object), so a
    colour change touches no object and every slot keeps one shader (Cycles drops and
    recompiles a material whose objects all leave the render: ~4 KB leaked each time).
    Metallic and roughness: the BSDF's own inputs, which the `material` parameter writes."""
    n = len(COLOR_NAMES)
    mat = principled("clevr_object", (0.8, 0.8, 0.8), roughness=FINISH["rubber"][1])
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    slot = nodes.new("ShaderNodeAttribute")
    slot.attribute_type, slot.attribute_name = "OBJECT", SLOT_PROPERTY
    base = nodes.new("ShaderNodeValue")
    base.name = base.label = "palette_base"
    base.outputs[0].default_value = palette_position(0)
    at = nodes.new("ShaderNodeMath")
    at.operation = "MULTIPLY_ADD"  # slot * 3/n + base
    at.inputs[1].default_value = 3.0 / n
    wrap = nodes.new("ShaderNodeMath")
    wrap.operation = "FRACT"
    ramp = nodes.new("ShaderNodeValToRGB")
    ramp.name = ramp.label = "palette"
    cr = ramp.color_ramp
    cr.interpolation = "CONSTANT"
    cr.elements[0].position, cr.elements[1].position = 0.0, 1.0 / n
    for k in range(2, n):
        cr.elements.new(k / n)
    for el, name in zip(cr.elements, COLOR_NAMES):
        el.color = (*(_lin(c) for c in COLORS[name]), 1.0)
    links.new(slot.outputs["Fac"], at.inputs[0])
    links.new(base.outputs[0], at.inputs[2])
    links.new(at.outputs[0], wrap.inputs[0])
    links.new(wrap.outputs[0], ramp.inputs["Fac"])
    links.new(ramp.outputs["Color"], nodes["Principled BSDF"].inputs["Base Color"])
    for k, node in enumerate((slot, base, at, wrap, ramp)):
        node.location = (-1000.0 + 200.0 * k, 200.0 - 100.0 * (k == 1))
    return mat


def palette_position(k: int) -> float:
    """Where colour k (cyclic) lies on the ramp: the middle of its constant band."""
    return (k % len(COLOR_NAMES) + 0.5) / len(COLOR_NAMES)


def _sun(name: str, elevation: float, azimuth: float, angle: float = 0.15) -> bpy.types.Object:
    light = bpy.data.lights.new(name, "SUN")
    light.angle = angle
    # A sun shines along its local -Z; tilt it to come from (azimuth, elevation).
    rot = (math.pi / 2 - elevation, 0.0, azimuth + math.pi / 2)
    return new_object(name, light, rotation=rot)


def _shape_meshes(material: bpy.types.Material) -> dict[str, bpy.types.Mesh]:
    meshes = {
        "sphere": mesh_primitive("clevr_sphere", "sphere", radius=_BASE["sphere"]),
        "cube": mesh_primitive("clevr_cube", "cube", size=2 * _BASE["cube"]),
        "cylinder": mesh_primitive("clevr_cylinder", "cylinder", radius=0.5,
                                   depth=2 * _BASE["cylinder"]),
    }
    for shape, mesh in meshes.items():
        mesh.transform(Matrix.Translation((0.0, 0.0, _BASE[shape])))  # origin at the base
        mesh.materials.append(material)
        mesh[CLASS_PROPERTY] = shape
    return meshes


def build() -> SceneDescription:
    """Empty the current file, build the scene in it and return its description."""
    primitives.reset_data()  # the panel's examples switch it off (examples._no_reset)
    scene = bpy.context.scene
    if scene.name == "Scene":  # an emptied file; the panel builds into "AutoSim NAME" instead
        scene.name = SCENE
    world = bpy.data.worlds.new("clevr_world")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.8, 0.8, 0.85, 1.0)
    scene.world = world

    ground_mat = principled("ground", (0.25, 0.25, 0.25), roughness=0.9)
    ground_mesh = mesh_primitive("ground", "plane", smooth=False, size=40.0)
    ground_mesh.materials.append(ground_mat)
    new_object("ground", ground_mesh)

    cam_data = bpy.data.cameras.new("camera")
    cam_data.lens = 35.0
    dist, elev, azim = 8.0, math.radians(35.0), math.radians(-60.0)
    cam_loc = (dist * math.cos(elev) * math.cos(azim), dist * math.cos(elev) * math.sin(azim),
               dist * math.sin(elev))
    scene.camera = new_object("camera", cam_data, location=cam_loc,
                              rotation=(math.pi / 2 - elev, 0.0, azim + math.pi / 2))
    _sun("key_light", math.radians(50), math.radians(-30))
    _sun("fill_light", math.radians(30), math.radians(-140), angle=0.4)
    _sun("back_light", math.radians(40), math.radians(110), angle=0.3)

    meshes = _shape_meshes(_object_material())
    slots = bpy.data.collections.new("clevr_objects")
    scene.collection.children.link(slots)
    for i in range(N_SLOTS):
        obj = bpy.data.objects.new(f"obj{i}", meshes[SHAPES[i % 3]])
        obj.rotation_euler = (0.0, 0.0, math.radians(17.0 + 37.0 * i))
        obj[SLOT_PROPERTY] = i  # read by the material: the colour 3 i along the palette
        slots.objects.link(obj)
    return description(scene.name)


def bindings(scene_name: str = SCENE) -> list[Binding]:
    """Every parameter of clevr.json bound to what it drives in the built file."""
    scene = {"data": "scenes", "id": scene_name}
    out = [Binding("world_light", data="worlds", id="clevr_world", path=STRENGTH,
                   low=0.0, high=10.0)]
    out += [Binding(k, data="lights", id=k, path="energy", low=0.0, high=20.0)
            for k in ("key_light", "fill_light", "back_light")]
    out.append(Binding("samples", **scene, path="cycles.samples", type="int"))
    out += [Binding("bounces", **scene, path=f"cycles.{b}", type="int", low=0.0, high=8.0)
            for b in BOUNCES]
    out.append(Binding("num_objects", "count", id="clevr_objects",
                       objects=[f"obj{i}" for i in range(N_SLOTS)]))
    out += [Binding("material", data="materials", id="clevr_object", path=BSDF.format(name),
                    alternatives=[repr(FINISH[f][k]) for f in FINISH])
            for k, name in enumerate(("Metallic", "Roughness"))]
    out.append(Binding("color", data="materials", id="clevr_object", path=PALETTE,
                       alternatives=[repr(palette_position(c)) for c in range(len(COLORS))]))
    for i in range(N_SLOTS):
        out.append(Binding(f"obj{i}_xy", data="objects", id=f"obj{i}", path="location",
                           components=[0, 1], low=-3.0, high=3.0))
        out.append(Binding(f"obj{i}_shape", "mesh", id=f"obj{i}",
                           alternatives=[f"clevr_{s}" for s in SHAPES]))
    return out


def description(scene_name: str = SCENE) -> SceneDescription:
    """The scene description: clevr.json's space, the bindings, the classes."""
    return describe(SCENE, bindings(scene_name), scene_name)


if __name__ == "__main__":
    sys.exit(main(SCENE))
