"""A scene of your own, from scratch: a few labelled objects, a light, materials, bindings.

    python examples/tabletop.py --out tabletop.blend            (the bpy module)
    blender -b --factory-startup -P examples/tabletop.py -- --out tabletop.blend

Then serve it, render from it and optimise it like the built-in examples:

    autosim serve --blend tabletop.blend
    autosim render --blend tabletop.blend --n 64 --out my_val
    autosim optimize --blend tabletop.blend --val my_val --out runs/tabletop

Everything autosim needs is in the saved file (a Text datablock `autosim_scene.json`): the
parameter space, which property each parameter drives, and the class of each object
(`autosim_class` custom properties). docs/scenes.md explains every field.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import bpy  # noqa: E402

from blender_addon.bindings import CLASS_PROPERTY, store  # noqa: E402
from protocol.scene import SceneDescription  # noqa: E402

SOCKET = 'node_tree.nodes["{node}"].inputs["{socket}"].default_value'
CLASSES = ["background", "box", "ball"]


def material(name: str, rgb: tuple[float, float, float], roughness: float,
             metallic: float = 0.0) -> bpy.types.Material:
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*rgb, 1.0)
    bsdf.inputs["Roughness"].default_value = roughness
    bsdf.inputs["Metallic"].default_value = metallic
    return mat


def mesh_object(name: str, kind: str, location, coll, mat, cls: str | None):
    """A cube, sphere or plane mesh made with bmesh (no operators: runs headless)."""
    import bmesh

    bm = bmesh.new()
    if kind == "cube":
        bmesh.ops.create_cube(bm, size=1.0)
    elif kind == "sphere":
        bmesh.ops.create_uvsphere(bm, u_segments=16, v_segments=8, radius=0.5)
    else:
        bmesh.ops.create_grid(bm, x_segments=1, y_segments=1, size=6.0)
    mesh = bpy.data.meshes.new(f"{name}Mesh")
    bm.to_mesh(mesh)
    bm.free()
    mesh.materials.append(mat)
    obj = bpy.data.objects.new(name, mesh)
    obj.location = location
    coll.objects.link(obj)
    if cls is not None:
        obj[CLASS_PROPERTY] = cls  # the artist's way to label: a custom property
    return obj


def build() -> SceneDescription:
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.name = "Tabletop"
    scene.render.engine = "CYCLES"
    world = bpy.data.worlds.new("World")
    world.use_nodes = True
    scene.world = world

    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    cam.location = (0.0, -7.0, 5.0)
    cam.rotation_euler = (math.radians(55), 0.0, 0.0)
    scene.collection.objects.link(cam)
    scene.camera = cam
    sun = bpy.data.objects.new("KeyLight", bpy.data.lights.new("Key", "SUN"))
    sun.rotation_euler = (math.radians(40), math.radians(20), 0.0)
    scene.collection.objects.link(sun)

    ground = material("Ground", (0.4, 0.4, 0.4), 0.8)
    rubber = material("Rubber", (0.8, 0.2, 0.1), 0.9)
    material("Metal", (0.7, 0.7, 0.8), 0.2, metallic=1.0)  # an alternative for "finish"
    mesh_object("Floor", "plane", (0, 0, 0), scene.collection, ground, None)
    objects = bpy.data.collections.new("Objects")
    scene.collection.children.link(objects)
    # "how many" shows the first n objects by name: Obj1 always, then Obj2, Obj3, Obj4
    for i, (kind, cls, x) in enumerate([("cube", "box", -1.5), ("sphere", "ball", 1.5),
                                        ("cube", "box", 0.0), ("sphere", "ball", 0.0)]):
        mesh_object(f"Obj{i + 1}", kind, (x, 0.5 * i - 0.5, 0.5), objects, rubber, cls)

    rough = SOCKET.format(node="Principled BSDF", socket="Roughness")
    strength = SOCKET.format(node="Background", socket="Strength")
    params = [
        {"name": "sun", "kind": "normal", "mean": [3.0], "log_std": [-0.5], "low": [0.0],
         "high": [10.0], "doc": "Key sun strength (W/m^2)."},
        {"name": "ambient", "kind": "normal", "mean": [0.3], "log_std": [-1.0], "low": [0.0],
         "high": [3.0], "doc": "World background strength."},
        {"name": "ground_roughness", "kind": "normal", "mean": [0.8], "log_std": [-2.0],
         "low": [0.0], "high": [1.0], "doc": "Floor roughness."},
        {"name": "samples", "kind": "categorical", "choices": ["2", "4", "8"],
         "logits": [0.0, 0.0, 0.0], "doc": "Cycles samples per pixel."},
        {"name": "count", "kind": "categorical", "choices": ["1", "2", "3", "4"],
         "logits": [0.0, 0.0, 0.0, 0.0], "doc": "How many of Obj1..Obj4 are shown."},
        {"name": "finish", "kind": "categorical", "choices": ["Rubber", "Metal"],
         "logits": [0.0, 0.0], "doc": "Material of Obj1."},
    ]
    bindings = [
        {"param": "sun", "kind": "property", "data": "lights", "id": "Key", "path": "energy"},
        {"param": "ambient", "kind": "property", "data": "worlds", "id": "World",
         "path": strength},
        {"param": "ground_roughness", "kind": "property", "data": "materials", "id": "Ground",
         "path": rough},
        {"param": "samples", "kind": "property", "data": "scenes", "id": "Tabletop",
         "path": "cycles.samples", "type": "int"},
        {"param": "count", "kind": "count", "id": "Objects"},
        {"param": "finish", "kind": "material", "id": "Obj1", "slot": 0},
    ]
    for i in range(1, 5):  # each object's ground position, only used when it is shown
        params.append({"name": f"obj{i}_xy", "kind": "normal", "mean": [0.0, 0.0],
                       "log_std": [0.3, 0.3], "low": [-2.5, -2.5], "high": [2.5, 2.5],
                       "doc": f"Ground position of Obj{i}.",
                       **({"active_if": {"count": [str(n) for n in range(i, 5)]}}
                          if i > 1 else {})})
        bindings.append({"param": f"obj{i}_xy", "kind": "property", "data": "objects",
                         "id": f"Obj{i}", "path": "location", "components": [0, 1]})
    return SceneDescription.from_dict({
        "format": "autosim.scene", "version": 1, "scene": "Tabletop",
        "space": {"format": "autosim.space", "version": 1, "name": "tabletop",
                  "params": params},
        "bindings": bindings, "classes": CLASSES, "labels_for": ["masks", "boxes"]})


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="the .blend to write")
    args = ap.parse_args(argv)
    description = build()
    store(description, bpy.data)
    bpy.ops.wm.save_as_mainfile(filepath=os.path.abspath(args.out))
    print(f"wrote {args.out}: {len(description.bindings)} bindings, classes "
          f"{', '.join(description.classes[1:])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
