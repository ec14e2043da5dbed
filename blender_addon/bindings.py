"""A scene description bound to the open .blend (bpy): resolve, apply latents, persist.

resolve(description, bpy.data) checks every binding against the file before anything is
written and raises one SceneError naming the binding (targets.py holds the per-kind checks);
two bindings writing one target, or a site reading an empty another binding moves, are errors
too. BoundScene.apply(latent) validates the whole latent and plans every write first, then
writes only the values that change (an unchanged property does not make Cycles re-sync); if a
write fails anyway, the ones already made are undone. It returns the (pass_index, class_id)
pairs of the visible labelled objects: the contract of the scene modules' apply() that
render.render_frame takes.

Class labels (object_classes.py): the description's `labels`, else an `autosim_class` custom
property on the object, its mesh (a mesh binding's swap carries the class along) or its nearest
collection. resolve() numbers the labelled objects 1..N in name order (pass_index) and sets
every other object's pass_index to 0, so the instance pass holds exactly the labelled objects
and the same file always gets the same numbers.

Persistence: store() writes the description JSON into a Text datablock (TEXT_NAME): it is saved
with the .blend, readable and editable in Blender's Text Editor, and exportable as the file it
is; a scene custom property would be a long opaque string in the Custom Properties panel and
would tie a file-wide description to one scene. read() reads it back, so reopening re-attaches.
"""

from __future__ import annotations

import os
from typing import Any

import bpy

from protocol.bindings import SceneError
from protocol.distributions import _known
from protocol.scene import SceneDescription
from protocol.space import ParameterSpace

from .handle import SceneHandle
from .object_classes import CLASS_PROPERTY, Label, object_labels
from .render import assign
from .targets import Plan, Resolved, copy_value, fail

__all__ = ["CLASS_PROPERTY", "TEXT_NAME", "BlendScene", "BoundScene", "read", "resolve",
           "store"]

TEXT_NAME = "autosim_scene.json"
_MAX_INDEX = 65535  # the instance pass is read back as uint16
_ALTERNATIVE_IDS = {"one_of": "collections", "site": "objects", "material": "materials",
                    "mesh": "meshes"}


class BoundScene:
    """A description resolved against the open file; apply() writes latents into it."""

    def __init__(self, description: SceneDescription, scene: Any, resolved: list[Resolved],
                 labelled: dict[str, Label]) -> None:
        self.description = description
        self.scene = scene
        self._resolved = sorted(resolved, key=lambda r: r.b.kind == "material")  # after mesh
        self._labelled = labelled

    @property
    def space(self) -> ParameterSpace:
        return self.description.space

    @property
    def labels(self) -> dict[str, tuple[int, int]]:
        """Labelled object name -> (pass_index, class_id), visible or not."""
        return {name: (lab.index, lab.current()) for name, lab in self._labelled.items()}

    def apply(self, latent: dict[str, Any]) -> list[tuple[int, int]]:
        """Write `latent` (named, as ParameterSpace.unpack_latent gives it) into the bound
        targets; nothing is written unless all of it is valid. Returns the visible labelled
        objects' (pass_index, class_id), sorted by pass_index."""
        values = self.description.check_latent(latent)
        plan = Plan()
        try:
            for r in self._resolved:
                r.plan(values, plan)
        except ReferenceError as e:  # e.g. the file was reopened since resolve()
            raise SceneError(f"the bound data no longer exists ({e}); resolve again") from None
        done: list[tuple[Any, str, Any]] = []
        try:
            for owner, attr, value in plan.writes.values():
                old = copy_value(getattr(owner, attr))
                if assign(owner, attr, value):
                    done.append((owner, attr, old))
        except Exception as e:
            for owner, attr, old in reversed(done):
                setattr(owner, attr, old)
            raise SceneError(f"latent: writing {owner!r}.{attr} = {value!r} failed ({e}); "
                             f"the scene was left as it was") from e
        return self.visible_labels()

    def visible_labels(self) -> list[tuple[int, int]]:
        """(pass_index, class_id) of the labelled objects that render in the scene now."""
        shown = _rendered_objects(self.scene)
        out = []
        for lab in self._labelled.values():
            obj = lab.obj
            if not obj.hide_render and obj.as_pointer() in shown:
                ci = lab.current()
                if ci:
                    out.append((lab.index, ci))
        return sorted(out)


def _rendered_objects(scene: Any) -> set[int]:
    """Pointers of the objects in the collections the render sees (not excluded from the view
    layer, not hidden for render); Object.users_collection would scan every collection."""
    layers = [vl for vl in scene.view_layers if vl.use] or list(scene.view_layers)
    out: set[int] = set()
    stack = [layers[0].layer_collection]
    while stack:
        lc = stack.pop()
        if lc.exclude or lc.collection.hide_render:
            continue
        out.update(o.as_pointer() for o in lc.collection.objects)
        stack.extend(lc.children)
    return out


def _scene(description: SceneDescription, data: Any) -> Any:
    if description.scene:
        scene = data.scenes.get(description.scene)
        if scene is None:
            raise SceneError(f"scene: no scene named {description.scene!r} in this .blend "
                             f"(scenes: {_known([s.name for s in data.scenes])})")
        return scene
    active = bpy.context.scene
    return active if active is not None and data.scenes.get(active.name) == active \
        else data.scenes[0]


def _check_conflicts(resolved: list[Resolved]) -> None:
    writers: dict[tuple[int, int, str], list[tuple[int | None, Resolved]]] = {}
    for r in resolved:
        for target, ident, comp in r.writes:
            for c2, other in writers.get(ident, []):
                if other is not r and (comp is None or c2 is None or comp == c2):
                    raise fail(r.b, r.i, f"{target} is also written by bindings[{other.i}] "
                                         f"({other.b.label})")
            writers.setdefault(ident, []).append((comp, r))
    for r in resolved:
        for target, ident, _ in r.reads:
            if ident in writers:
                other = writers[ident][0][1]
                raise fail(r.b, r.i, f"reads {target}, which bindings[{other.i}] "
                                     f"({other.b.label}) writes: a render would depend on the "
                                     f"previous latent")
    for r in resolved:
        if r.b.kind != "material":
            continue
        for m in resolved:
            if m.b.kind == "mesh" and m.obj == r.obj:
                for mesh in m.meshes.values():
                    if len(mesh.materials) <= r.b.slot:
                        raise fail(r.b, r.i, f"mesh {mesh.name!r} (bindings[{m.i}]) has "
                                             f"{len(mesh.materials)} material slots, no slot "
                                             f"{r.b.slot}")


def resolve(description: SceneDescription, bpy_data: Any) -> BoundScene:
    """Check the description against the open file, then number the labelled objects.

    Raises SceneError (naming the binding, label or scene) before anything is written."""
    scene = _scene(description, bpy_data)
    params = {p.name: p for p in description.space.params}
    resolved = [Resolved(b, i, params[b.param], bpy_data, scene)
                for i, b in enumerate(description.bindings)]
    _check_conflicts(resolved)
    swapped = {r.obj.as_pointer(): list(r.meshes.values()) for r in resolved
               if r.b.kind == "mesh"}
    labels = object_labels(description, bpy_data, swapped, scene)
    if len(labels) > _MAX_INDEX:
        raise SceneError(f"labels: {len(labels)} labelled objects; at most {_MAX_INDEX}")
    for name in labels:
        if bpy_data.objects[name].library is not None:
            raise SceneError(f"labels: object {name!r} is linked from a library; its "
                             f"pass_index cannot be set (make it local)")
    for obj in scene.objects:  # other scenes' objects keep their pass_index
        if obj.library is None:
            assign(obj, "pass_index", labels[obj.name].index if obj.name in labels else 0)
    return BoundScene(description, scene, resolved, labels)


def store(description: SceneDescription, bpy_data: Any) -> Any:
    """Write the description into the file's TEXT_NAME Text datablock (made if absent) and
    give the alternatives it names a fake user, so that materials, meshes, empties or
    collections no object uses yet survive the save. Returns the Text."""
    text = bpy_data.texts.get(TEXT_NAME) or bpy_data.texts.new(TEXT_NAME)
    text.clear()
    text.write(description.to_json() + "\n")
    text.use_fake_user = True
    params = {p.name: p for p in description.space.params}
    for b in description.bindings:
        if b.kind in _ALTERNATIVE_IDS:
            ids = getattr(bpy_data, _ALTERNATIVE_IDS[b.kind])
            for name in b.values(params[b.param]):  # type: ignore[arg-type]
                if ids.get(name) is not None:
                    ids[name].use_fake_user = True
    return text


def read(bpy_data: Any) -> SceneDescription | None:
    """The description stored in the file, or None if it has none (SceneError if invalid)."""
    text = bpy_data.texts.get(TEXT_NAME)
    if text is None:
        return None
    try:
        return SceneDescription.from_json(text.as_string())
    except SceneError as e:
        raise SceneError(f"Text {TEXT_NAME!r} in this .blend: {e}") from None


class BlendScene:
    """Any bound .blend behind the scene-module interface backend.py uses: build() opens the
    file (if given) and resolves its stored description (or the one given); apply(handle,
    latent) writes a latent and returns the visible labelled objects."""

    def __init__(self, blend: str | os.PathLike[str] | None = None,
                 description: SceneDescription | None = None) -> None:
        self.blend = None if blend is None else os.fspath(blend)
        self.description = description

    def build(self) -> SceneHandle:
        if self.blend is not None:
            if not os.path.isfile(self.blend):
                raise SceneError(f"{self.blend}: no such .blend file")
            bpy.ops.wm.open_mainfile(filepath=self.blend, load_ui=False)
        desc = self.description or read(bpy.data)
        if desc is None:
            where = self.blend or bpy.data.filepath or "the open file"
            raise SceneError(f"{where}: no autosim scene description (Text {TEXT_NAME!r}); "
                             f"bind some properties and store it first")
        self.description = desc
        bound = resolve(desc, bpy.data)
        name = desc.name or os.path.splitext(os.path.basename(self.blend or "scene"))[0]
        return SceneHandle(name, bound.scene, data={"bound": bound})

    @staticmethod
    def apply(handle: SceneHandle, latent: dict[str, Any]) -> list[tuple[int, int]]:
        return handle.data["bound"].apply(latent)

    def classes(self) -> list[str]:
        if self.description is None:
            raise SceneError("build() first: the description is read from the file")
        return list(self.description.classes)
