"""Which class each object of a bound .blend renders as (bpy): the labels behind masks and boxes.

An object's class comes from, in order: the description's `labels` (object name -> class), an
`autosim_class` custom property on the object, one on its data (the mesh: a class that travels
with an asset), one on its nearest collection (walking up the collection tree); "background"
means unlabelled. An object whose mesh a `mesh` binding swaps takes the class of the mesh it
shows at each render (clevr's object slots: the class is the shape), so its label is read then,
not once; without an object-level class it is labelled if any of its meshes has a class.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from protocol.bindings import SceneError, id_ref
from protocol.distributions import _known
from protocol.scene import BACKGROUND, SceneDescription

CLASS_PROPERTY = "autosim_class"


@dataclass(frozen=True)
class Label:
    """One labelled object: its pass_index and class id; `by_mesh` maps the pointers of the
    meshes a mesh binding may give it to their class ids (0: unlabelled), `class_id` then being
    the fallback (its collection's class, or 0) for a mesh without one."""

    obj: Any
    index: int
    class_id: int
    by_mesh: dict[int, int] | None = None

    def current(self) -> int:
        """The class id the object renders with now (0: unlabelled)."""
        if self.by_mesh is None:
            return self.class_id
        data = self.obj.data
        return self.class_id if data is None else \
            self.by_mesh.get(data.as_pointer(), self.class_id) or self.class_id


def _class_of(idb: Any, where: str, classes: tuple[str, ...]) -> str | None:
    c = idb.get(CLASS_PROPERTY)
    if c is not None and (not isinstance(c, str) or c not in classes):
        raise SceneError(f"{where}[{CLASS_PROPERTY!r}]: unknown class {c!r} "
                         f"(classes: {_known(list(classes))})")
    return c


def _data_class(obj: Any, classes: tuple[str, ...]) -> str | None:
    data = obj.data
    if data is None or not hasattr(data, "get"):
        return None
    return _class_of(data, f"{id_ref('objects', obj.name)}.data", classes)


def _collection_class(obj: Any, parents: dict[int, list[Any]],
                      classes: tuple[str, ...]) -> str | None:
    level, seen, cls = list(obj.users_collection), set(), None
    while cls is None and level:
        found: dict[str, str] = {}
        for coll in level:
            c = _class_of(coll, id_ref("collections", coll.name), classes)
            if c is not None:
                found.setdefault(c, coll.name)
        if len(found) > 1:
            raise SceneError(f"object {obj.name!r}: its collections give it different "
                             f"classes ({', '.join(f'{n}: {c}' for c, n in found.items())})")
        cls = next(iter(found), None)
        seen |= {c.as_pointer() for c in level}
        level = [p for c in level for p in parents.get(c.as_pointer(), [])
                 if p.as_pointer() not in seen]
    return cls


def _id(description: SceneDescription, cls: str | None) -> int:
    return 0 if cls is None or cls == BACKGROUND else description.class_id(cls)


def object_labels(description: SceneDescription, data: Any,
                  swapped: dict[int, Iterable[Any]], scene: Any = None) -> dict[str, Label]:
    """Every labelled object's Label, numbered 1..N in name order (its future pass_index).

    swapped: object pointer -> the meshes a mesh binding may give it. scene: only its objects
    count (other scenes of the file, e.g. the artist's next to an example, are not labelled)."""
    classes = tuple(description.classes)
    for name in description.labels:
        if data.objects.get(name) is None:
            raise SceneError(f"labels[{name!r}]: no object named {name!r} in this .blend")
    parents: dict[int, list[Any]] = {}
    for coll in data.collections:
        for child in coll.children:
            parents.setdefault(child.as_pointer(), []).append(coll)
    found: dict[str, tuple[Any, int, dict[int, int] | None]] = {}
    for obj in (scene.objects if scene is not None else data.objects):
        cls = description.labels.get(obj.name)
        if cls is None:
            cls = _class_of(obj, id_ref("objects", obj.name), classes)
        by_mesh = None
        if cls is None and obj.as_pointer() in swapped:
            meshes = [obj.data, *swapped[obj.as_pointer()]]
            by_mesh = {m.as_pointer(): _id(description, _class_of(
                m, id_ref("meshes", m.name), classes)) for m in meshes if m is not None}
        elif cls is None:
            cls = _data_class(obj, classes)
        fallback = _id(description, cls if cls is not None else
                       _collection_class(obj, parents, classes))
        if fallback or (by_mesh and any(by_mesh.values())):
            found[obj.name] = (obj, fallback, by_mesh)
    return {name: Label(obj, i, ci, by_mesh)
            for i, (name, (obj, ci, by_mesh)) in enumerate(sorted(found.items()), start=1)}
