"""bpy helpers the example builders share: empty the file, new objects, a Principled material,
primitive meshes made with bmesh (no operators, so they run headless in any Blender)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import bpy  # bmesh is only importable once bpy is loaded

# isort: split
import bmesh

__all__ = ["mesh_primitive", "new_object", "principled", "reset_data"]
Seq = Sequence[float]


def reset_data() -> None:
    """Empty the current file of objects, meshes, curves, materials, lights, cameras, worlds
    and extra collections/scenes (the scene modules then build everything they need)."""
    keep = bpy.context.scene
    for sc in list(bpy.data.scenes):
        if sc != keep:
            bpy.data.scenes.remove(sc)
    for coll_name in ("objects", "meshes", "curves", "materials", "lights", "cameras",
                      "worlds", "collections", "grease_pencils", "node_groups", "textures"):
        coll = getattr(bpy.data, coll_name, None)
        if coll is None:
            continue
        for block in list(coll):
            coll.remove(block)


def new_object(name: str, data: Any, location: Seq = (0.0, 0.0, 0.0),
               rotation: Seq = (0.0, 0.0, 0.0), scale: Seq = (1.0, 1.0, 1.0),
               pass_index: int = 0, collection: Any = None, parent: Any = None) -> Any:
    """A new object linked into `collection` (default: the scene's own)."""
    obj = bpy.data.objects.new(name, data)
    obj.location, obj.rotation_euler, obj.scale = location, rotation, scale
    obj.pass_index = pass_index
    obj.parent = parent
    (collection or bpy.context.scene.collection).objects.link(obj)
    return obj


def principled(name: str, color: Seq, roughness: float = 0.5, metallic: float = 0.0) -> Any:
    """A Principled BSDF material (color: linear RGB)."""
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*color[:3], 1.0)
    bsdf.inputs["Roughness"].default_value = roughness
    bsdf.inputs["Metallic"].default_value = metallic
    mat.diffuse_color = (*color[:3], 1.0)
    return mat


def _torus(bm: Any, major: float, minor: float, seg_major: int = 32, seg_minor: int = 12) -> None:
    verts = []
    for i in range(seg_major):
        u = 2 * math.pi * i / seg_major
        for j in range(seg_minor):
            v = 2 * math.pi * j / seg_minor  # around the tube
            r = major + minor * math.cos(v)
            verts.append(bm.verts.new((r * math.cos(u), r * math.sin(u), minor * math.sin(v))))
    for i in range(seg_major):
        for j in range(seg_minor):
            a = verts[i * seg_minor + j]
            b = verts[((i + 1) % seg_major) * seg_minor + j]
            c = verts[((i + 1) % seg_major) * seg_minor + (j + 1) % seg_minor]
            d = verts[i * seg_minor + (j + 1) % seg_minor]
            bm.faces.new((a, b, c, d))


def mesh_primitive(name: str, kind: str, smooth: bool = True, **kw: Any) -> Any:
    """A mesh datablock of a built-in primitive, centred on its bounding box, unit-ish size.

    kind: cube (size), sphere (radius), icosphere (radius, subdivisions), cylinder / cone
    (radius, depth), torus (major, minor), monkey, plane (size)."""
    bm = bmesh.new()
    ops = bmesh.ops
    if kind == "cube":
        ops.create_cube(bm, size=kw.get("size", 1.0))
    elif kind == "sphere":
        ops.create_uvsphere(bm, u_segments=32, v_segments=16, radius=kw.get("radius", 0.5))
    elif kind == "icosphere":
        ops.create_icosphere(bm, subdivisions=kw.get("subdivisions", 1),
                             radius=kw.get("radius", 0.5))
    elif kind in ("cylinder", "cone"):
        r = kw.get("radius", 0.5)
        ops.create_cone(bm, cap_ends=True, segments=32, radius1=r,
                        radius2=r if kind == "cylinder" else 0.0, depth=kw.get("depth", 1.0))
    elif kind == "torus":
        _torus(bm, kw.get("major", 0.35), kw.get("minor", 0.15))
    elif kind == "monkey":
        ops.create_monkey(bm)
    elif kind == "plane":
        ops.create_grid(bm, x_segments=1, y_segments=1, size=kw.get("size", 1.0))
    else:
        raise ValueError(f"unknown primitive {kind!r}")
    mesh = bpy.data.meshes.new(name)
    bm.to_mesh(mesh)
    bm.free()
    if smooth:
        mesh.polygons.foreach_set("use_smooth", [True] * len(mesh.polygons))
        if hasattr(mesh, "set_sharp_from_angle"):  # Blender 4.1+
            mesh.set_sharp_from_angle(angle=math.radians(40))
        else:  # older Blender (e.g. Debian's 3.4 `blender -b`)
            mesh.use_auto_smooth, mesh.auto_smooth_angle = True, math.radians(40)
    return mesh
