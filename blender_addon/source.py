"""What the panel works on, and the one way it renders it (bpy).

A bpy scene shows one of:
  EXAMPLE  a built-in example built into it this session (examples.py; its parameters are
           built in, nothing is stored in the file);
  FILE     the file's scene description (the Text datablock `autosim_scene.json`, see
           bindings.store/read): what "Randomize with AutoSim" creates;
  NONE     nothing yet.
For FILE, the description is the truth and the panel's properties mirror its space:
show() fills them (after every binding change, on file load, on "Reload"); save_edits (an
EDIT_HOOK) writes an artist's edit back into the Text, and live.py writes an optimizer's psi
back the same way, so what the panel shows is what the saved file holds. A description edited
in the Text Editor makes the panel stale (hash differs): nothing is written over it until the
panel reloads it.

session(scene) gives preview, dataset export and the GUI render server the same thing for
every mode: a name, class names, and apply(latent) -> visible labelled objects.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any

import bpy

from protocol.scene import SceneDescription
from protocol.space import SpaceError

from . import authoring, examples, picking, render
from . import properties as P
from .bindings import TEXT_NAME, BlendScene, read, store
from .scenes import SceneHandle, load
from .scenes import classes as scene_classes


def mode(scene: Any) -> str:
    """EXAMPLE, FILE or NONE (see the module docstring)."""
    if examples.scene_handle(scene) is not None:
        return "EXAMPLE"
    return "FILE" if bpy.data.texts.get(TEXT_NAME) is not None else "NONE"


def text_hash() -> str:
    text = bpy.data.texts.get(TEXT_NAME)
    return "" if text is None else f"{zlib.crc32(text.as_string().encode()):08x}"


def stale(scene: Any) -> bool:
    """The file's description is not the one the panel shows (edited elsewhere, or new)."""
    return mode(scene) == "FILE" and scene.autosim.description_hash != text_hash()


def show(scene: Any, desc: SceneDescription | None = None) -> SceneDescription | None:
    """Fill the panel from `desc` (default: the file's); returns what it showed."""
    settings = scene.autosim
    desc = desc if desc is not None else read(bpy.data)
    with P.filling():
        settings.bindings.clear()
        if desc is None:
            settings.params.clear()
            settings.space_json = settings.space_name = ""
        else:
            for b in desc.bindings:
                item = settings.bindings.add()
                item.param, item.kind, item.target = b.param, b.kind, b.target
                item.json = json.dumps(b.to_dict(), sort_keys=True)
            P.space_to_props(desc.space, settings)
        settings.description_hash = text_hash()
        n = len(settings.params)
        if settings.active_param >= n:
            settings.active_param = max(n - 1, 0)
    return desc


def save(scene: Any, desc: SceneDescription) -> SceneDescription:
    """Store `desc` in the file (classes found on objects added) and show it."""
    desc = SceneDescription.from_dict(authoring.with_classes(desc.to_dict(),
                                                             picking.file_classes(bpy.data)))
    store(desc, bpy.data)
    show(scene, desc)
    return desc


def save_edits(scene: Any) -> None:
    """EDIT_HOOK: the distribution the panel now shows goes into the file's description."""
    if mode(scene) != "FILE" or stale(scene):
        return
    desc = read(bpy.data)
    try:
        new = desc.with_space(P.current_space(scene.autosim))
    except (SpaceError, ValueError) as exc:
        scene.autosim.last_error = f"edit not stored: {exc}"
        return
    store(new, bpy.data)
    scene.autosim.description_hash = text_hash()


def panel_description(scene: Any) -> SceneDescription:
    """The file's description at the distribution the panel shows (RuntimeError if stale)."""
    if stale(scene):
        raise RuntimeError("the description was changed outside the panel: press Reload")
    desc = read(bpy.data)
    if desc is None:
        raise RuntimeError("nothing bound yet: right-click a property > Randomize with AutoSim")
    return desc.with_space(P.current_space(scene.autosim))


@dataclass
class Session:
    """A scene ready to render: its name, classes, description (None for an example)."""

    name: str
    scene: Any
    classes: list[str]
    module: Any
    handle: SceneHandle
    description: SceneDescription | None = None

    def apply(self, latent: dict[str, Any]) -> list[tuple[int, int]]:
        return self.module.apply(self.handle, latent)


def session(scene: Any) -> Session:
    """The scene the panel shows, resolved for rendering (SceneError names a bad binding;
    RuntimeError when there is nothing to render)."""
    handle = examples.scene_handle(scene)
    if handle is not None:
        return Session(handle.name, handle.scene, scene_classes(handle.name), load(handle.name),
                       handle)
    if mode(scene) == "NONE":
        raise RuntimeError("nothing bound yet: right-click a property > Randomize with "
                           "AutoSim, or build an example")
    desc = panel_description(scene)
    module = BlendScene(None, desc)
    handle = module.build()  # resolves every binding against the file
    return Session(desc.name or "scene", handle.scene, list(desc.classes), module, handle, desc)


class PanelBackend:
    """The GUI render server's backend: renders the panel's session without changing the
    artist's render settings (preview.rendering)."""

    def __init__(self, sess: Session, space: Any) -> None:
        self.session = sess
        self.scene = sess.name
        self.classes = list(sess.classes)
        self.space = space
        self.description = None if sess.description is None else \
            sess.description.with_space(space)
        self.blender_version = bpy.app.version_string

    def render(self, latent: dict[str, Any], width: int, height: int) -> render.RenderResult:
        from .preview import rendering

        placed = self.session.apply(latent)
        with rendering(self.session.scene, width, height):
            return render.render_frame(self.session.scene, placed)

    def close(self) -> None:
        """Nothing to release."""
