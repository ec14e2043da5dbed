"""The artist's way in: bind properties of their own scene from Blender's UI (bpy operators).

- Right-click any property > "Randomize with AutoSim" (appended to Blender's button context
  menu, UI_MT_button_context_menu, where "Add Driver" lives): a parameter whose distribution
  starts at the property's current value (authoring.start_param) and a binding to it. A
  property AutoSim already drives shows "Remove from AutoSim" there instead, which is the sign
  in the Properties editor of what AutoSim controls (Blender has no API for a driver-like
  decoration of a field, so that is the most an add-on can show in place).
- "One of These" from the selection: which of the selected collections is shown (one_of), which
  selected empty the active object moves to (site), which of the selected objects' materials or
  meshes the active object gets (material, mesh), how many objects of the active object's
  collection are shown (count).
- Remove a parameter, reload the description after editing the Text by hand.
Every change is validated (the description, and the new binding against the file) before it is
stored (source.save); a refusal reports why and changes nothing.
"""

from __future__ import annotations

from typing import Any

import bpy
from bpy.props import EnumProperty, StringProperty
from bpy.types import Operator

from protocol.bindings import SceneError

from . import authoring, picking, source
from . import properties as P
from .bindings import _scene, read
from .targets import Resolved

_ONE_OF_KINDS = [
    ("COLLECTIONS", "Collection Shown", "Show one of the selected collections (the Outliner's "
     "selection, else the collections of the selected objects), hide the others",
     "OUTLINER_COLLECTION", 0),
    ("SITES", "Site of Active", "Move the active object to one of the selected empties",
     "EMPTY_AXIS", 1),
    ("MATERIALS", "Material of Active", "Give the active object's active material slot one of "
     "the selected objects' materials", "MATERIAL", 2),
    ("MESHES", "Mesh of Active", "Give the active object one of the selected objects' meshes",
     "MESH_DATA", 3),
    ("COUNT", "How Many Shown", "Show the first n objects (by name) of the active object's "
     "collection", "OBJECT_ORIGIN", 4)]


def _stored() -> dict | None:
    desc = read(bpy.data)
    return None if desc is None else desc.to_dict()


def _check_in_file(desc: Any, index: int) -> None:
    """The new binding `index` resolves in the file and writes nothing another binding writes
    or reads (bindings that no longer resolve are flagged in the list, not checked here)."""
    scene = _scene(desc, bpy.data)
    params = {p.name: p for p in desc.space.params}
    b = desc.bindings[index]
    new = Resolved(b, index, params[b.param], bpy.data, scene)
    for i, ob in enumerate(desc.bindings):
        if i == index:
            continue
        try:
            old = Resolved(ob, i, params[ob.param], bpy.data, scene)
        except SceneError:
            continue
        for mine, theirs, verb in ((new.writes, old.writes, "writes"),
                                   (new.writes, old.reads, "reads"),
                                   (new.reads, old.writes, "writes")):
            for target, ident, comp in mine:
                for _, ident2, comp2 in theirs:
                    if ident == ident2 and (comp is None or comp2 is None or comp == comp2):
                        raise SceneError(f"{target}: parameter {ob.param!r} already {verb} it")


def bind(scene: Any, param: dict, binding: dict) -> str:
    """Add `param` with `binding` to the file's description and show it; returns its name."""
    if source.mode(scene) == "EXAMPLE":
        raise SceneError("this scene is a built-in example (its parameters are built in); "
                         "bind properties in your own scenes")
    if source.stale(scene):
        raise SceneError("the description was edited outside the panel: press Reload first")
    desc = _stored()
    taken = [p["name"] for p in (desc or authoring.empty())["space"]["params"]]
    param = dict(param, name=authoring.unique_name(param["name"], taken))
    binding = dict(binding, param=param["name"])
    new = authoring.add(desc, param, binding)
    _check_in_file(new, len(new.bindings) - 1)
    source.save(scene, new)
    scene.autosim.active_param = len(new.space.params) - 1
    return param["name"]


def randomize(context: Any, pointer: Any = None, prop: Any = None) -> str:
    """Bind the property (default: the one the context menu was opened on)."""
    pk = picking.picked(pointer, prop) if pointer is not None else picking.from_context(context)
    param = authoring.start_param(pk.stem, pk.ptype, pk.value, soft_min=pk.soft_min,
                                  soft_max=pk.soft_max, items=pk.items, doc=pk.label)
    return bind(context.scene, param, pk.binding)


def remove_param(scene: Any, name: str) -> None:
    desc = _stored()
    if desc is None:
        raise SceneError("nothing is bound in this file")
    source.save(scene, authoring.remove(desc, name))


def _categorical(name: str, choices: list[str], current: str | None, doc: str) -> dict:
    if len(choices) < 2:
        raise SceneError(f"{doc}: select at least two to choose from (got {len(choices)})")
    return {"name": name, "kind": "categorical", "choices": choices, "doc": doc,
            "logits": [authoring.FAVOUR_LOGIT if c == current else 0.0 for c in choices]}


def one_of(context: Any, kind: str) -> str:
    """Bind a "one of these" choice made from the current selection (see _ONE_OF_KINDS)."""
    active = getattr(context, "active_object", None)
    selected = picking.selected_objects(context)
    if kind == "COLLECTIONS":
        colls = picking.selected_collections(context)
        shown = [c.name for c in colls if not c.hide_render]
        names = [c.name for c in colls]
        param = _categorical(f"show_{names[0] if names else 'collection'}", names,
                             shown[0] if len(shown) == 1 else None, "Collection shown")
        return bind(context.scene, param, {"kind": "one_of"})
    if active is None:
        raise SceneError("make the object to randomise the active one")
    others = [o for o in selected if o != active]
    if kind == "SITES":
        names = sorted(o.name for o in others if o.type == "EMPTY")
        param = _categorical(f"site_{active.name}", names, None, f"Site of {active.name}")
        return bind(context.scene, param, {"kind": "site", "id": active.name})
    if kind == "MATERIALS":
        slot = max(active.active_material_index, 0)
        if slot >= len(active.material_slots):
            raise SceneError(f"{active.name!r} has no material slot to randomise")
        current = active.material_slots[slot].material
        mats = [current] + [s.material for o in others for s in o.material_slots]
        names = list(dict.fromkeys(m.name for m in mats if m is not None))
        param = _categorical(f"material_{active.name}", names,
                             current.name if current else None, f"Material of {active.name}")
        return bind(context.scene, param, {"kind": "material", "id": active.name, "slot": slot})
    if kind == "MESHES":
        meshes = [o.data for o in [active, *others] if o.type == "MESH"]
        names = list(dict.fromkeys(m.name for m in meshes))
        param = _categorical(f"mesh_{active.name}", names,
                             active.data.name if active.type == "MESH" else None,
                             f"Mesh of {active.name}")
        return bind(context.scene, param, {"kind": "mesh", "id": active.name})
    if kind == "COUNT":
        colls = [c for c in active.users_collection if picking.data_collection(c)]
        if not colls:
            raise SceneError(f"{active.name!r} is not in a collection of its own")
        coll = colls[0]
        n = len(coll.objects)
        param = _categorical(f"count_{coll.name}", [str(k) for k in range(n + 1)], str(n),
                             f"How many of {coll.name} are shown")
        return bind(context.scene, param, {"kind": "count", "id": coll.name})
    raise SceneError(f"unknown kind {kind!r}")


# ------------------------------------------------------------------------------ operators


class _Refusing:
    """execute() runs self.run(context); an error is refused with its reason."""

    def execute(self, context):
        try:
            msg = self.run(context)
        except (ValueError, RuntimeError) as exc:  # SceneError is a ValueError
            self.report({"ERROR"}, f"AutoSim: {exc}")
            return {"CANCELLED"}
        if msg:
            self.report({"INFO"}, msg)
        _redraw(context)
        return {"FINISHED"}


def _redraw(context: Any) -> None:
    for area in getattr(context.screen, "areas", ()) if context.screen else ():
        area.tag_redraw()


class AUTOSIM_OT_randomize_property(_Refusing, Operator):
    """Let AutoSim randomise this property: a distribution that starts at its current value"""

    bl_idname = "autosim.randomize_property"
    bl_label = "Randomize with AutoSim"
    bl_options = {"REGISTER", "UNDO", "INTERNAL"}
    data: StringProperty(name="Data", description="For scripts: a bpy.data collection "
                         "(e.g. 'lights'); empty: the property the context menu was opened on")
    id_name: StringProperty(name="ID", description="For scripts: the datablock's name")
    path: StringProperty(name="Path", description="For scripts: the RNA data path from the ID")

    def run(self, context):
        pointer = prop = None
        if self.data:
            pointer, prop = picking.at_path(self.data, self.id_name, self.path)
        name = randomize(context, pointer, prop)
        return f"AutoSim now randomises it as {name!r}"


class AUTOSIM_OT_unbind_property(_Refusing, Operator):
    """Stop AutoSim randomising this property (removes its parameter)"""

    bl_idname = "autosim.unbind_property"
    bl_label = "Remove from AutoSim"
    bl_options = {"REGISTER", "UNDO", "INTERNAL"}

    def run(self, context):
        pk = picking.from_context(context)
        name = authoring.bound_by(_stored(), pk.binding)
        if name is None:
            raise SceneError("AutoSim does not drive this property")
        remove_param(context.scene, name)
        return f"Removed {name!r}"


class AUTOSIM_OT_one_of(_Refusing, Operator):
    """Randomise a choice among the selected collections, empties, materials or meshes"""

    bl_idname = "autosim.one_of"
    bl_label = "One of These"
    bl_options = {"REGISTER", "UNDO"}
    kind: EnumProperty(name="Choose", items=_ONE_OF_KINDS, default="COLLECTIONS")

    def run(self, context):
        return f"AutoSim now randomises {one_of(context, self.kind)!r}"


class AUTOSIM_OT_remove_param(_Refusing, Operator):
    """Remove the selected parameter and its bindings from AutoSim"""

    bl_idname = "autosim.remove_param"
    bl_label = "Remove Binding"
    bl_options = {"REGISTER", "UNDO"}
    name: StringProperty(name="Parameter", description="Empty: the one selected in the list")

    @classmethod
    def poll(cls, context):
        return context.scene is not None and source.mode(context.scene) == "FILE"

    def run(self, context):
        s = context.scene.autosim
        name = self.name or (s.params[s.active_param].name
                             if 0 <= s.active_param < len(s.params) else "")
        remove_param(context.scene, name)
        return f"Removed {name!r}"


class AUTOSIM_OT_reload_description(_Refusing, Operator):
    """Show the file's stored description again (after editing it in the Text Editor)"""

    bl_idname = "autosim.reload_description"
    bl_label = "Reload"
    bl_options = {"REGISTER", "UNDO"}

    def run(self, context):
        source.show(context.scene)


class AUTOSIM_MT_one_of(bpy.types.Menu):
    bl_idname = "AUTOSIM_MT_one_of"
    bl_label = "One of These"

    def draw(self, _context):
        for ident, text, _, icon, _ in _ONE_OF_KINDS:
            self.layout.operator("autosim.one_of", text=text, icon=icon).kind = ident


def draw_button_menu(self: Any, context: Any) -> None:
    """The button context menu's AutoSim entry (only on properties AutoSim can bind)."""
    try:
        pk = picking.from_context(context)
    except SceneError:
        return
    try:
        name = authoring.bound_by(_stored(), pk.binding)
    except SceneError:
        name = None
    layout = self.layout
    layout.separator()
    if name is None:
        layout.operator("autosim.randomize_property", icon="RNDCURVE")
    else:
        layout.operator("autosim.unbind_property", text=f"Remove from AutoSim ({name})",
                        icon="X")


@bpy.app.handlers.persistent
def _on_load_post(*_args: Any) -> None:
    """Reopening a file re-attaches: the panel shows its stored description."""
    scene = bpy.context.scene
    if scene is not None and source.mode(scene) == "FILE":
        try:
            source.show(scene)
        except SceneError as exc:
            scene.autosim.last_error = str(exc)[:400]


classes = (AUTOSIM_OT_randomize_property, AUTOSIM_OT_unbind_property, AUTOSIM_OT_one_of,
           AUTOSIM_OT_remove_param, AUTOSIM_OT_reload_description, AUTOSIM_MT_one_of)
_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register() -> None:
    _register_classes()
    bpy.types.UI_MT_button_context_menu.append(draw_button_menu)
    if source.save_edits not in P.EDIT_HOOKS:
        P.EDIT_HOOKS.insert(0, source.save_edits)  # store first, then tell a running server
    if _on_load_post not in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.append(_on_load_post)


def unregister() -> None:
    if _on_load_post in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_on_load_post)
    if source.save_edits in P.EDIT_HOOKS:
        P.EDIT_HOOKS.remove(source.save_edits)
    bpy.types.UI_MT_button_context_menu.remove(draw_button_menu)
    _unregister_classes()
