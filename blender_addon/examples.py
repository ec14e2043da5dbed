"""The built-in example scenes (clevr, placement), built into a NEW scene of the open file (bpy).

The examples' builders were written for render servers that own their file: they empty it
first (scenes.primitives.reset_data). Built from the panel, that would delete the artist's work, so
build_example() makes a new scene, shows it in the window, and runs the builder with that reset
switched off: the artist's scenes, objects and materials stay as they were. Rebuilding removes
only what the previous example build made (tracked in this session). The SceneHandle lives in
memory for the session (reopening the file needs another build).
"""

from __future__ import annotations

import contextlib
from typing import Any

import bpy

from . import render
from .preferences import get_preferences
from .scenes import SceneHandle, load

EXAMPLE_PROPERTY = "autosim_example"  # on the bpy scene an example was built into

_handles: dict[str, SceneHandle] = {}  # bpy scene name -> the example built into it
_made: list[Any] = []                  # IDs the last example build created


def scene_handle(scene: Any) -> SceneHandle | None:
    """The SceneHandle build_example() made for `scene`, or None (never built, or gone)."""
    handle = _handles.get(scene.name)
    if handle is None:
        return None
    try:
        first = next(iter(handle.objects.values()))
        first = first[0] if isinstance(first, list) else first
        ok = handle.scene == scene and bool(first.name)
    except (ReferenceError, StopIteration, IndexError):
        ok = False
    if not ok:
        _handles.pop(scene.name, None)
    return handle if ok else None


def require_handle(scene: Any) -> SceneHandle:
    handle = scene_handle(scene)
    if handle is None:
        raise RuntimeError("build the example first (AutoSim > Examples > Build)")
    return handle


@contextlib.contextmanager
def _no_reset():
    from .scenes import primitives

    saved = primitives.reset_data
    primitives.reset_data = lambda: None
    try:
        yield
    finally:
        primitives.reset_data = saved


def _id_pointers() -> dict[str, set[int]]:
    out = {}
    for prop in bpy.data.bl_rna.properties:
        coll = getattr(bpy.data, prop.identifier, None)
        if prop.type == "COLLECTION" and isinstance(coll, bpy.types.bpy_prop_collection):
            with contextlib.suppress(TypeError, AttributeError):
                out[prop.identifier] = {i.as_pointer() for i in coll}
    return out


def _new_ids(before: dict[str, set[int]]) -> list[Any]:
    out = []
    for name, ptrs in before.items():
        out += [i for i in getattr(bpy.data, name) if i.as_pointer() not in ptrs]
    return out


def remove_previous() -> None:
    """Delete what the previous example build made (its scene, objects, meshes, ...)."""
    alive = []
    for idb in _made:
        with contextlib.suppress(ReferenceError):
            if idb.name:
                alive.append(idb)
    _made.clear()
    _handles.clear()
    doomed = {i.as_pointer() for i in alive if isinstance(i, bpy.types.Scene)}
    keep = [sc for sc in bpy.data.scenes if sc.as_pointer() not in doomed]
    wm = bpy.context.window_manager
    for win in wm.windows if wm else ():  # a window must never show a removed scene
        if win.scene.as_pointer() in doomed:
            win.scene = keep[0] if keep else bpy.data.scenes.new("Scene")
    if alive:
        bpy.data.batch_remove(alive)


def build_example(name: str, window: Any = None) -> SceneHandle:
    """Build example `name` into a new scene (named after it) and show that scene (the caller
    stops a running server first: it serves the scene being replaced)."""
    load(name)  # an unknown name fails here, before anything changes
    wm = bpy.context.window_manager
    window = window or bpy.context.window or (wm.windows[0] if wm and wm.windows else None)
    if window is None:
        raise RuntimeError("no window to show the example scene in")
    scene = bpy.data.scenes.new(f"AutoSim {name}")
    scene[EXAMPLE_PROPERTY] = name
    for win in wm.windows if wm else ():
        if win.scene.get(EXAMPLE_PROPERTY):  # a window showing an example about to go
            win.scene = scene
    window.scene = scene
    remove_previous()
    scene.name = f"AutoSim {name}"  # the previous build's scene of that name is gone now
    before = _id_pointers()
    _made.append(scene)
    try:
        with _no_reset(), bpy.context.temp_override(window=window, scene=scene):
            handle = load(name).build()
    finally:
        _made.extend(_new_ids(before))
    size = scene.autosim.preview_size
    render.configure(scene, size, size, device=get_preferences().device)
    _handles[scene.name] = handle
    return handle


def forget() -> None:
    """A file is being opened: its IDs are not ours to remove any more."""
    _handles.clear()
    _made.clear()
