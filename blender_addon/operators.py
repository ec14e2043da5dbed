"""Thin operators of the AutoSim panel.

The work lives in plain functions (build_scene, apply_sample, render_preview, export_space,
import_space, generate_dataset) that the operators call and tests call directly. The render
server the GUI runs (start_server, stop_server, server_timer) lives in live.py; those names are
also importable from here, as tests and scripts have always used them.
"""

import colorsys
import contextlib
import json

import bpy
import numpy as np
from bpy.props import BoolProperty, EnumProperty, StringProperty
from bpy.types import Operator
from bpy_extras.io_utils import ExportHelper, ImportHelper

from protocol.dataset import DatasetWriter
from protocol.space import ParameterSpace, SpaceError

from . import properties as P
from . import render
from .live import TIMER_INTERVAL as TIMER_INTERVAL
from .live import push_edit, start_server, stop_server
from .live import running_server as running_server
from .live import server_timer as server_timer
from .preferences import get_preferences
from .scenes import classes as scene_classes
from .scenes import load, space_dict

# `X as X`: TIMER_INTERVAL, running_server and server_timer are re-exported from live.py, so
# tests and scripts keep reaching the GUI server as operators.server_timer and so on.

PREVIEW_IMAGE, PREVIEW_MASK = "AutoSim Preview", "AutoSim Preview Mask"

_handles: dict = {}   # bpy scene name -> SceneHandle made by build_scene()


# ------------------------------------------------------------------------------ scene


def scene_handle(scene):
    """The SceneHandle build_scene() made for `scene`, or None (never built, or gone)."""
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


def _require_handle(scene):
    handle = scene_handle(scene)
    if handle is None:
        raise RuntimeError("build the scene first (AutoSim > Build Scene)")
    return handle


def build_scene(scene, name: str, reset: bool = False):
    """Build scene `name` into the current file (replacing its contents) and show its space
    (kept when the panel already shows this scene's parameters, unless reset)."""
    stop_server()
    if scene != bpy.context.scene:
        raise RuntimeError("AutoSim builds into the active scene")
    handle = load(name).build()
    settings = handle.scene.autosim
    size = settings.preview_size
    render.configure(handle.scene, size, size, device=get_preferences().device)
    _handles.clear()
    _handles[handle.scene.name] = handle
    settings.scene = name
    space = ParameterSpace.from_dict(space_dict(name))
    if not reset and settings.space_name == name:
        with contextlib.suppress(SpaceError, ValueError):
            space = P.current_space(settings)
    P.space_to_props(space, settings)
    return handle


@contextlib.contextmanager
def _resolution(scene, width: int, height: int):
    r = scene.render
    saved = r.resolution_x, r.resolution_y, r.resolution_percentage
    render.set_resolution(scene, width, height)
    try:
        yield
    finally:
        r.resolution_x, r.resolution_y, r.resolution_percentage = saved


def sample_latent(space: ParameterSpace, seed: int):
    """(row, clipped named latent) of the seeded sample: the same seed gives the same scene."""
    row = space.sample(1, np.random.default_rng(int(seed)))[0]
    return row, space.clip_latent(space.unpack_latent(row))


def apply_sample(scene, seed: int):
    """Apply one random sample of the panel's distribution; returns (named latent, placed)."""
    handle = _require_handle(scene)
    _, named = sample_latent(P.current_space(scene.autosim), seed)
    placed = load(handle.name).apply(handle, named)
    scene.autosim.last_sample = json.dumps(named)
    return named, placed


def _write_image(name: str, rgb: np.ndarray):
    height, width = rgb.shape[:2]
    img = bpy.data.images.get(name)
    if img is None:
        img = bpy.data.images.new(name, width, height, alpha=False)
    elif tuple(img.size) != (width, height):
        img.scale(width, height)
    rgba = np.ones((height, width, 4), np.float32)
    rgba[..., :3] = rgb[::-1] / np.float32(255.0)  # Blender images start at the bottom row
    img.pixels.foreach_set(rgba.ravel())
    img.update()
    return img


def _mask_colours(mask: np.ndarray, n_classes: int) -> np.ndarray:
    pal = [(0, 0, 0)] + [colorsys.hsv_to_rgb(i / max(n_classes - 1, 1), 0.75, 1.0)
                         for i in range(n_classes - 1)]
    pal = (np.asarray(pal) * 255).astype(np.uint8)
    return pal[np.clip(mask, 0, n_classes - 1)]


def render_preview(scene):
    """Apply the preview seed's sample and render it into the image "AutoSim Preview" (and
    its class mask into "AutoSim Preview Mask"); image editors showing nothing show it."""
    handle = _require_handle(scene)
    _, placed = apply_sample(scene, scene.autosim.preview_seed)
    size = scene.autosim.preview_size
    with _resolution(scene, size, size):
        result = render.render_frame(scene, placed)
    img = _write_image(PREVIEW_IMAGE, result.image)
    _write_image(PREVIEW_MASK, _mask_colours(result.mask, len(scene_classes(handle.name))))
    wm = bpy.context.window_manager
    for win in (wm.windows if wm else ()):
        for area in win.screen.areas:
            if area.type == "IMAGE_EDITOR" and area.spaces.active.image is None:
                area.spaces.active.image = img
            area.tag_redraw()
    return img


def export_space(scene, path: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(P.current_space(scene.autosim).to_json())


def import_space(scene, path: str) -> ParameterSpace:
    """Load a space JSON into the panel; on any error (unreadable, invalid, another scene's)
    raise with a clear message and change nothing."""
    from .backend import check_space_fits

    settings = scene.autosim
    try:
        with open(path, encoding="utf-8") as fh:
            space = ParameterSpace.from_json(fh.read())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except SpaceError as exc:
        raise ValueError(f"{path} is not a valid AutoSim space: {exc}") from exc
    handle = scene_handle(scene)
    check_space_fits(handle.name if handle else settings.scene, space)
    P.space_to_props(space, settings)
    push_edit(scene)
    return space


def generate_dataset(scene, folder: str, n: int, size: int, seed: int, progress=None) -> str:
    """Render n samples of the panel's distribution into `folder` (protocol.dataset layout:
    images, class masks, YOLO labels + data.yaml, items.jsonl with latent and seed)."""
    handle = _require_handle(scene)
    settings = scene.autosim
    space = P.current_space(settings)
    latents = space.sample(int(n), np.random.default_rng(int(seed)))
    module = load(handle.name)
    with _resolution(scene, size, size), \
            DatasetWriter(folder, scene_classes(handle.name), space.to_dict()) as writer:
        for i, row in enumerate(latents):
            named = space.unpack_latent(row)
            placed = module.apply(handle, space.clip_latent(named))
            res = render.render_frame(scene, placed)
            writer.add(res.image, res.mask, res.boxes, res.classes, {
                "item_id": f"blender-{seed}-{i}", "seed": int(seed), "index": i,
                "generation": settings.server_generation, "scene": handle.name,
                "latent": row.tolist(), "latent_named": named})
            if progress is not None:
                progress(i + 1)
    return str(writer.root)


@bpy.app.handlers.persistent
def _on_load_pre(*_args) -> None:
    stop_server()
    _handles.clear()


# ------------------------------------------------------------------------------ operators


class _NeedsScene:
    @classmethod
    def poll(cls, context):
        if context.scene is not None and scene_handle(context.scene) is not None:
            return True
        if hasattr(cls, "poll_message_set"):
            cls.poll_message_set("Build the AutoSim scene first")
        return False


class AUTOSIM_OT_build_scene(Operator):
    """Build the chosen AutoSim scene into this file (replaces all objects)"""

    bl_idname = "autosim.build_scene"
    bl_label = "Build Scene"
    reset: BoolProperty(name="Reset distributions", default=False,
                        description="Load the scene's shipped distributions even when the "
                                    "panel already shows this scene's parameters")

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event)

    def execute(self, context):
        name = context.scene.autosim.scene
        build_scene(context.scene, name, reset=self.reset)
        self.report({"INFO"}, f"Built scene {name!r}")
        return {"FINISHED"}


class AUTOSIM_OT_reset_space(Operator):
    """Show the scene's shipped distributions (or its validation preset)"""

    bl_idname = "autosim.reset_space"
    bl_label = "Reset Distributions"
    preset: EnumProperty(name="Preset", items=[
        ("DEFAULT", "Shipped", "The scene's shipped starting distributions"),
        ("VALIDATION", "Validation", "The scene's validation preset")])

    def execute(self, context):
        s = context.scene.autosim
        handle = scene_handle(context.scene)
        space = ParameterSpace.from_dict(space_dict(handle.name if handle else s.scene))
        P.space_to_props(space.preset("validation") if self.preset == "VALIDATION" else space, s)
        push_edit(context.scene)
        return {"FINISHED"}


class AUTOSIM_OT_apply_sample(_NeedsScene, Operator):
    """Apply one random sample of the distributions to the scene (same seed, same scene)"""

    bl_idname = "autosim.apply_sample"
    bl_label = "Apply Random Sample"
    bl_options = {"REGISTER"}
    next_seed: BoolProperty(name="Next seed", default=False,
                            description="Advance the seed by one first")

    def execute(self, context):
        s = context.scene.autosim
        if self.next_seed:
            s.preview_seed += 1
        apply_sample(context.scene, s.preview_seed)
        return {"FINISHED"}


class AUTOSIM_OT_render_preview(_NeedsScene, Operator):
    """Render the seed's sample into the image named AutoSim Preview"""

    bl_idname = "autosim.render_preview"
    bl_label = "Render Preview"

    def execute(self, context):
        render_preview(context.scene)
        self.report({"INFO"}, f"Rendered into image {PREVIEW_IMAGE!r}")
        return {"FINISHED"}


class AUTOSIM_OT_export_space(Operator, ExportHelper):
    """Save the distributions as an AutoSim space JSON"""

    bl_idname = "autosim.export_space"
    bl_label = "Export Space JSON"
    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})

    def execute(self, context):
        try:
            export_space(context.scene, self.filepath)
        except (OSError, SpaceError) as exc:
            self.report({"ERROR"}, f"Export failed: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Saved {self.filepath}")
        return {"FINISHED"}


class AUTOSIM_OT_import_space(Operator, ImportHelper):
    """Load distributions from an AutoSim space JSON"""

    bl_idname = "autosim.import_space"
    bl_label = "Import Space JSON"
    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})

    def execute(self, context):
        try:
            import_space(context.scene, self.filepath)
        except (ValueError, OSError) as exc:
            self.report({"ERROR"}, f"Import failed, nothing changed: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Loaded {self.filepath}")
        return {"FINISHED"}


class AUTOSIM_OT_generate_dataset(_NeedsScene, Operator):
    """Render N samples with masks, YOLO labels and items.jsonl into the folder"""

    bl_idname = "autosim.generate_dataset"
    bl_label = "Generate Dataset"

    def execute(self, context):
        s = context.scene.autosim
        folder = bpy.path.abspath(s.dataset_dir) if s.dataset_dir else ""
        if not folder:
            self.report({"ERROR"}, "Choose a dataset folder first")
            return {"CANCELLED"}
        wm = context.window_manager
        wm.progress_begin(0, s.dataset_n)
        try:
            out = generate_dataset(context.scene, folder, s.dataset_n, s.dataset_size,
                                   s.dataset_seed, progress=wm.progress_update)
        except (OSError, SpaceError) as exc:
            self.report({"ERROR"}, f"Dataset failed: {exc}")
            return {"CANCELLED"}
        finally:
            wm.progress_end()
        self.report({"INFO"}, f"Wrote {s.dataset_n} images to {out}")
        return {"FINISHED"}


class AUTOSIM_OT_server_start(_NeedsScene, Operator):
    """Serve renders of this scene over ZeroMQ; optimizers steer the distributions live"""

    bl_idname = "autosim.server_start"
    bl_label = "Start Server"

    def execute(self, context):
        try:
            endpoint = start_server(context.scene)
        except (RuntimeError, OSError, ImportError, SpaceError) as exc:
            context.scene.autosim.last_error = str(exc)
            self.report({"ERROR"}, f"Server not started: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Render server on {endpoint}")
        return {"FINISHED"}


class AUTOSIM_OT_server_stop(Operator):
    """Stop the render server and close its socket"""

    bl_idname = "autosim.server_stop"
    bl_label = "Stop Server"

    def execute(self, context):
        stop_server()
        return {"FINISHED"}


classes = (AUTOSIM_OT_build_scene, AUTOSIM_OT_reset_space, AUTOSIM_OT_apply_sample,
           AUTOSIM_OT_render_preview, AUTOSIM_OT_export_space, AUTOSIM_OT_import_space,
           AUTOSIM_OT_generate_dataset, AUTOSIM_OT_server_start, AUTOSIM_OT_server_stop)
_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register() -> None:
    _register_classes()
    if push_edit not in P.EDIT_HOOKS:
        P.EDIT_HOOKS.append(push_edit)
    if _on_load_pre not in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.append(_on_load_pre)


def unregister() -> None:
    stop_server()
    _handles.clear()
    if _on_load_pre in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_on_load_pre)
    if push_edit in P.EDIT_HOOKS:
        P.EDIT_HOOKS.remove(push_edit)
    _unregister_classes()
