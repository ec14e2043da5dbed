"""From what the artist points at in Blender to a binding (bpy): a right-clicked property, the
selection, and whether a stored binding's target still exists.

picked(pointer, prop) reads the button context Blender gives a context-menu operator
(context.button_pointer: the struct that owns the property; context.button_prop: its RNA
definition) and returns the binding address (an ID collection of bpy.data, the ID's name, an
RNA data path from the ID) plus what authoring.start_param() needs: the property's type,
current value, soft range and enum items. Node sockets are addressed by name
(inputs["Roughness"], not inputs[9]: socket order changes between Blender versions) and a node
tree embedded in a material, world or light is reached through its owner (node_tree.nodes[..]).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import bpy

from protocol.bindings import SceneError, id_ref, split_path

from .bindings import CLASS_PROPERTY
from .targets import _prop_type

_NODE_OWNERS = ("materials", "worlds", "lights", "scenes", "textures", "linestyles")
_OWN = ("autosim",)  # AutoSim's own settings (scene.autosim...) are never bound


@dataclass
class Picked:
    """A bindable property: its address and what its starting distribution needs."""

    data: str
    id: str
    path: str
    ptype: str
    value: Any
    soft_min: float = float("-inf")
    soft_max: float = float("inf")
    items: list[str] = field(default_factory=list)
    label: str = ""  # e.g. "Power of Light", for the parameter's doc
    stem: str = ""   # e.g. "Light_energy", for the parameter's name

    @property
    def binding(self) -> dict[str, Any]:
        return {"param": "", "kind": "property", "data": self.data, "id": self.id,
                "path": self.path, "type": self.ptype}


def data_collection(idb: Any) -> str:
    """The bpy.data collection that holds ID `idb` ('lights' for a Light), or ''."""
    for prop in bpy.data.bl_rna.properties:
        if prop.type != "COLLECTION":
            continue
        coll = getattr(bpy.data, prop.identifier, None)
        if isinstance(coll, bpy.types.bpy_prop_collection):
            try:
                if coll.get(idb.name) == idb:
                    return prop.identifier
            except (TypeError, KeyError):
                continue
    return ""


def _owner_of_embedded(tree: Any) -> tuple[Any, str] | None:
    """(ID, 'node_tree') for a node tree embedded in a material, world, light, scene..."""
    for coll in _NODE_OWNERS:
        for idb in getattr(bpy.data, coll, ()):
            if getattr(idb, "node_tree", None) == tree:
                return idb, "node_tree"
    return None


def _named_sockets(pointer: Any, path: str) -> str:
    """inputs[9] -> inputs["Roughness"] when `pointer` is a socket with a unique name."""
    if not isinstance(pointer, bpy.types.NodeSocket):
        return path
    node = pointer.node
    coll = "inputs" if pointer.is_output is False else "outputs"
    names = [s.name for s in getattr(node, coll)]
    if names.count(pointer.name) != 1:
        return path
    quoted = pointer.name.replace("\\", "\\\\").replace('"', '\\"')
    return re.sub(rf"\.{coll}\[\d+\]", f'.{coll}["{quoted}"]', path)


def picked(pointer: Any, prop: Any) -> Picked:
    """The binding address and facts of `pointer.<prop>`; SceneError saying why not bindable."""
    if pointer is None or prop is None or not hasattr(prop, "identifier"):
        raise SceneError("no property here (right-click a property field)")
    name = prop.identifier
    idb = getattr(pointer, "id_data", None)
    if not isinstance(idb, bpy.types.ID):
        raise SceneError(f"{prop.name!r} does not belong to a datablock of the file (it is a "
                         f"setting of Blender itself), so it cannot be saved with the scene")
    try:
        path = pointer.path_from_id(name)
    except ValueError:
        raise SceneError(f"Blender gives no data path for {prop.name!r}") from None
    path = _named_sockets(pointer, path)
    if getattr(idb, "is_embedded_data", False):
        owner = _owner_of_embedded(idb)
        if owner is None:
            raise SceneError(f"{prop.name!r} lives in embedded data AutoSim cannot address")
        idb, prefix = owner
        path = f"{prefix}.{path}"
    if idb.library is not None:
        raise SceneError(f"{idb.name!r} is linked from a library (make it local first)")
    data = data_collection(idb)
    if not data or data in ("screens", "window_managers", "workspaces", "texts", "libraries"):
        raise SceneError(f"{prop.name!r} belongs to {idb.name!r}, not to the scene's data")
    if path.split(".")[0].split("[")[0] in _OWN:
        raise SceneError("this is one of AutoSim's own settings")
    try:
        split_path(path)
    except SceneError:
        raise SceneError(f"{path!r} is not a path AutoSim can bind (custom properties and "
                         f"array items are not; bind the whole property)") from None
    ptype, _ = _prop_type(prop)
    if not ptype:
        raise SceneError(f"{prop.name!r} is a {prop.type.lower()} property; AutoSim randomises "
                         f"numbers, vectors, colours, enums and booleans")
    if prop.is_readonly:
        raise SceneError(f"{prop.name!r} is read-only")
    value = getattr(pointer, name)
    if ptype in ("vector", "color"):
        value = list(value)
    items = [it.identifier for it in prop.enum_items] if ptype == "enum" else []
    soft = (prop.soft_min, prop.soft_max) if ptype in ("float", "int", "vector", "color") \
        else (float("-inf"), float("inf"))
    what = pointer.name if isinstance(pointer, bpy.types.NodeSocket) else prop.name
    stem = pointer.name if isinstance(pointer, bpy.types.NodeSocket) else name
    return Picked(data, idb.name, path, ptype, value, float(soft[0]), float(soft[1]),
                  items, f"{what} of {idb.name}", f"{idb.name}_{stem}")


def at_path(data: str, name: str, path: str) -> tuple[Any, Any]:
    """(pointer, prop) for bpy.data.<data>[name].<path>, as a context menu would give them."""
    ids = getattr(bpy.data, data, None)
    if not isinstance(ids, bpy.types.bpy_prop_collection) or ids.get(name) is None:
        raise SceneError(f"{id_ref(data, name)} does not exist in this .blend")
    owner_path, attr = split_path(path)
    try:
        pointer = ids[name].path_resolve(owner_path) if owner_path else ids[name]
    except ValueError:
        raise SceneError(f"{owner_path!r} does not resolve from {id_ref(data, name)}") from None
    prop = pointer.bl_rna.properties.get(attr)
    if prop is None:
        raise SceneError(f"{pointer.bl_rna.identifier} has no property {attr!r}")
    return pointer, prop


def from_context(context: Any) -> Picked:
    """picked() for the property the context menu was opened on."""
    return picked(getattr(context, "button_pointer", None), getattr(context, "button_prop", None))


# ------------------------------------------------------------------------------ the selection


def selected_objects(context: Any) -> list[Any]:
    return list(getattr(context, "selected_objects", None) or [])


def selected_collections(context: Any) -> list[Any]:
    """Collections selected in the Outliner when there are some (context.selected_ids), else
    the collections that hold the selected objects (the scene's master collection excluded)."""
    ids = [i for i in (getattr(context, "selected_ids", None) or [])
           if isinstance(i, bpy.types.Collection)]
    if ids:
        return ids
    out: list[Any] = []
    for obj in selected_objects(context):
        for coll in obj.users_collection:
            if coll not in out and data_collection(coll) == "collections":
                out.append(coll)
    return sorted(out, key=lambda c: c.name)


def file_classes(data: Any) -> list[str]:
    """Every class name the file's objects and collections carry (autosim_class), sorted."""
    found = {idb.get(CLASS_PROPERTY) for coll in (data.objects, data.collections)
             for idb in coll}
    return sorted(c for c in found if isinstance(c, str) and c)


# ------------------------------------------------------------------------------ broken targets


def _exists(data: Any, coll: str, name: str) -> bool:
    ids = getattr(data, coll, None)
    return isinstance(ids, bpy.types.bpy_prop_collection) and ids.get(name) is not None


def missing(binding: dict[str, Any], choices: list[str], data: Any = None) -> str:
    """Why `binding`'s target no longer exists in the file, or '' when it does (cheap: for the
    list's red flag at every redraw; the full checks run when the scene is resolved)."""
    data = data or bpy.data
    kind = binding.get("kind", "property")
    coll = binding.get("data") or {"one_of": "collections", "count": "collections"}.get(
        kind, "objects")
    name = binding.get("id", "")
    if kind != "one_of" and not _exists(data, coll, name):
        return f"{id_ref(coll, name)} is gone"
    if kind == "property":
        try:
            getattr(data, coll)[name].path_resolve(binding["path"])
        except ValueError:
            return f"{binding['path']} no longer resolves on {name!r}"
        return ""
    alt_coll = {"one_of": "collections", "site": "objects", "material": "materials",
                "mesh": "meshes"}.get(kind)
    if alt_coll:
        for alt in binding.get("alternatives") or choices:
            if not _exists(data, alt_coll, alt):
                return f"{id_ref(alt_coll, alt)} is gone"
    return ""


def binding_dicts(settings_bindings: Any, param: str) -> list[dict[str, Any]]:
    """The stored bindings (AutosimBinding items) of parameter `param`, as dicts."""
    return [json.loads(b.json) for b in settings_bindings if b.param == param and b.json]
