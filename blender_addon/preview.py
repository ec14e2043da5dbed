"""Rendering inside the artist's file without changing its settings, and the panel's preview.

rendering(scene, w, h) is the only way the GUI renders (preview, GUI render server, dataset):
it sets what label extraction needs (Cycles, the object-index pass, no compositor, an EXR to
read back, the size asked for, no denoiser, optionally fewer samples) and puts every one of
those settings back afterwards, so rendering never changes the artist's output format, engine
or resolution.

The preview is written twice: into a bpy.utils.previews image the panel draws (template_icon;
it is not a datablock, so it is never saved and never asks "Save modified images?"), and into
the Image "AutoSim Preview" for an Image Editor, packed right after writing (a generated image
whose pixels were written counts as modified; a packed one does not) and without a fake user,
so File > New or quitting never asks to save it.
"""

from __future__ import annotations

import colorsys
import contextlib
from collections.abc import Iterator
from typing import Any

import bpy
import bpy.utils.previews
import numpy as np

PREVIEW_IMAGE, PREVIEW_MASK = "AutoSim Preview", "AutoSim Preview Mask"
_ICON = 32
_previews: Any = None  # the bpy.utils.previews collection (register() makes it)


def _saved(owner: Any, attrs: tuple[str, ...]) -> list[tuple[Any, str, Any]]:
    return [(owner, a, getattr(owner, a)) for a in attrs]


@contextlib.contextmanager
def rendering(scene: Any, width: int, height: int, max_samples: int | None = None
              ) -> Iterator[None]:
    """Render settings for one labelled frame of `scene`, restored on the way out."""
    r, ims = scene.render, scene.render.image_settings
    saved = _saved(r, ("engine", "resolution_x", "resolution_y", "resolution_percentage",
                       "use_compositing", "use_sequencer"))
    saved += _saved(ims, ("file_format", "color_mode", "color_depth", "exr_codec"))
    for vl in scene.view_layers:
        saved += _saved(vl, ("use_pass_combined", "use_pass_object_index"))
    try:
        r.engine = "CYCLES"
        saved += _saved(scene.cycles, ("use_denoising",))
        scene.cycles.use_denoising = False  # a build without OpenImageDenoise fails otherwise
        if max_samples is not None:
            saved += _saved(scene.cycles, ("samples",))
            scene.cycles.samples = min(scene.cycles.samples, int(max_samples))
        r.resolution_x, r.resolution_y, r.resolution_percentage = int(width), int(height), 100
        r.use_compositing = r.use_sequencer = False
        for vl in scene.view_layers:
            vl.use_pass_combined = vl.use_pass_object_index = True
        yield
    finally:
        for owner, attr, value in reversed(saved):
            with contextlib.suppress(TypeError, ValueError, AttributeError):
                if getattr(owner, attr) != value:
                    setattr(owner, attr, value)


def mask_colours(mask: np.ndarray, n_classes: int) -> np.ndarray:
    """Class ids -> RGB (background black, classes spread around the hue circle)."""
    pal = [(0, 0, 0)] + [colorsys.hsv_to_rgb(i / max(n_classes - 1, 1), 0.75, 1.0)
                         for i in range(n_classes - 1)]
    pal = (np.asarray(pal) * 255).astype(np.uint8)
    return pal[np.clip(mask, 0, n_classes - 1)]


def _rgba(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 sRGB, top row first -> flat float RGBA, bottom row first (Blender's)."""
    height, width = rgb.shape[:2]
    rgba = np.ones((height, width, 4), np.float32)
    rgba[..., :3] = rgb[::-1] / np.float32(255.0)
    return rgba


def write_image(name: str, rgb: np.ndarray) -> Any:
    """Put `rgb` into the Image `name` (made or resized as needed), packed: not "modified"."""
    height, width = rgb.shape[:2]
    img = bpy.data.images.get(name)
    if img is None or img.source not in ("GENERATED", "FILE") or \
            (img.source == "FILE" and img.packed_file is None):
        if img is not None:
            bpy.data.images.remove(img)
        img = bpy.data.images.new(name, width, height, alpha=False)
    elif tuple(img.size) != (width, height):
        img.scale(width, height)
    img.use_fake_user = False
    img.pixels.foreach_set(_rgba(rgb).ravel())
    img.update()
    img.pack()
    return img


def _set_preview(rgb: np.ndarray) -> None:
    if _previews is None:
        return
    p = _previews.get("preview") or _previews.new("preview")
    height, width = rgb.shape[:2]
    p.image_size = (width, height)
    p.image_pixels_float.foreach_set(_rgba(rgb).ravel())
    ys = np.linspace(0, height - 1, _ICON).astype(int)
    xs = np.linspace(0, width - 1, _ICON).astype(int)
    p.icon_size = (_ICON, _ICON)
    p.icon_pixels_float.foreach_set(_rgba(rgb[ys][:, xs]).ravel())


def icon_id() -> int:
    """The panel's preview icon (0 when there is none yet)."""
    p = _previews.get("preview") if _previews is not None else None
    return p.icon_id if p is not None else 0


def show(image: np.ndarray, mask: np.ndarray, n_classes: int) -> Any:
    """The panel's preview and the two Images; Image Editors showing nothing show it."""
    _set_preview(image)
    img = write_image(PREVIEW_IMAGE, image)
    write_image(PREVIEW_MASK, mask_colours(mask, n_classes))
    wm = bpy.context.window_manager
    for win in (wm.windows if wm else ()):
        for area in win.screen.areas:
            if area.type == "IMAGE_EDITOR" and area.spaces.active.image is None:
                area.spaces.active.image = img
            area.tag_redraw()
    return img


def open_image_editor(context: Any) -> bool:
    """Show the preview Image in an Image Editor, opening Blender's render view (a new window
    by default) when the screen has none. False when there is no preview yet."""
    img = bpy.data.images.get(PREVIEW_IMAGE)
    if img is None:
        return False

    def editors() -> list[Any]:
        wm = context.window_manager
        return [a for w in wm.windows for a in w.screen.areas if a.type == "IMAGE_EDITOR"]

    if not editors():
        bpy.ops.render.view_show("INVOKE_DEFAULT")
    for area in editors()[:1]:
        area.spaces.active.image = img
        area.tag_redraw()
    return True


def register() -> None:
    global _previews
    if _previews is None:
        _previews = bpy.utils.previews.new()


def unregister() -> None:
    global _previews
    if _previews is not None:
        bpy.utils.previews.remove(_previews)
        _previews = None
