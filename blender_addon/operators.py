"""Thin operators of the AutoSim panel: examples, samples, preview, JSON, dataset, server.

The work lives in plain functions (apply_sample, render_preview, export_space, import_space,
generate_dataset) that the operators call and tests call directly; each works on what the panel
shows (source.session: the file's bindings or a built-in example). Binding operators are in
authoring_ops.py. The GUI render server (start_server, stop_server, server_timer) lives in
live.py; those names are also importable from here, as tests and scripts have always used them.
"""

import json

import bpy
import numpy as np
from bpy.props import BoolProperty, EnumProperty, StringProperty
from bpy.types import Operator
from bpy_extras.io_utils import ExportHelper, ImportHelper

from protocol.dataset import DatasetWriter
from protocol.space import ParameterSpace, SpaceError

from . import examples, preview, render, source
from . import properties as P
from .examples import scene_handle as scene_handle
from .live import TIMER_INTERVAL as TIMER_INTERVAL
from .live import push_edit, start_server, stop_server
from .live import running_server as running_server
from .live import server_timer as server_timer
from .scenes import space_dict
from .watch import start_watch, stop_watch

# `X as X`: re-exported, so tests and scripts keep reaching them as operators.X.
_ERRORS = (RuntimeError, OSError, ImportError, ValueError)  # SceneError is a ValueError


def build_scene(scene, name: str):
    """Build example `name` in a new scene (shown in the window); returns its SceneHandle.
    `scene` is the scene the artist was on: it is left as it was."""
    stop_server()
    handle = examples.build_example(name)
    settings = handle.scene.autosim
    settings.scene = name
    P.space_to_props(ParameterSpace.from_dict(space_dict(name)), settings)
    return handle


def sample_latent(space: ParameterSpace, seed: int):
    """(row, clipped named latent) of the seeded sample: the same seed gives the same scene."""
    row = space.sample(1, np.random.default_rng(int(seed)))[0]
    return row, space.clip_latent(space.unpack_latent(row))


def apply_sample(scene, seed: int):
    """Apply one random sample of the panel's distribution; returns (named latent, placed)."""
    sess = source.session(scene)
    _, named = sample_latent(P.current_space(scene.autosim), seed)
    placed = sess.apply(named)
    scene.autosim.last_sample = json.dumps(named)
    return named, placed


def render_preview(scene):
    """Apply the preview seed's sample and render it small and quick (preview.rendering caps
    the samples) into the panel's preview and the Image "AutoSim Preview"."""
    settings = scene.autosim
    sess = source.session(scene)
    _, placed = apply_sample(scene, settings.preview_seed)
    size = settings.preview_size
    with preview.rendering(sess.scene, size, size, max_samples=settings.preview_samples):
        result = render.render_frame(sess.scene, placed)
    return preview.show(result.image, result.mask, len(sess.classes))


def export_space(scene, path: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(P.current_space(scene.autosim).to_json())


def import_space(scene, path: str) -> ParameterSpace:
    """Load a space JSON into the panel (and the file's description); on any error
    (unreadable, invalid, another scene's) raise with a clear message and change nothing."""
    from .backend import check_space_fits

    settings = scene.autosim
    try:
        with open(path, encoding="utf-8") as fh:
            space = ParameterSpace.from_json(fh.read())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except SpaceError as exc:
        raise ValueError(f"{path} is not a valid AutoSim space: {exc}") from exc
    if source.mode(scene) == "FILE":
        base = source.panel_description(scene).space
        if space.names != base.names or space.latent_dim != base.latent_dim:
            raise ValueError(f"parameter space does not fit this file's bindings: expected "
                             f"parameters {base.names}, got {space.names}")
    else:
        handle = scene_handle(scene)
        check_space_fits(handle.name if handle else settings.scene, space)
    P.space_to_props(space, settings)
    source.save_edits(scene)
    push_edit(scene)
    return space


def generate_dataset(scene, folder: str, n: int, size: int, seed: int, progress=None) -> str:
    """Render n samples of the panel's distribution into `folder` (protocol.dataset layout:
    images, class masks, YOLO labels + data.yaml, items.jsonl with latent and seed)."""
    settings = scene.autosim
    sess = source.session(scene)
    space = P.current_space(settings)
    latents = space.sample(int(n), np.random.default_rng(int(seed)))
    with preview.rendering(sess.scene, size, size), \
            DatasetWriter(folder, sess.classes, space.to_dict()) as writer:
        for i, row in enumerate(latents):
            named = space.unpack_latent(row)
            placed = sess.apply(space.clip_latent(named))
            res = render.render_frame(sess.scene, placed)
            writer.add(res.image, res.mask, res.boxes, res.classes, {
                "item_id": f"blender-{seed}-{i}", "seed": int(seed), "index": i,
                "generation": settings.server_generation, "scene": sess.name,
                "latent": row.tolist(), "latent_named": named})
            if progress is not None:
                progress(i + 1)
    return str(writer.root)


@bpy.app.handlers.persistent
def _on_load_pre(*_args) -> None:
    stop_server()
    stop_watch()
    examples.forget()


# ------------------------------------------------------------------------------ operators


class _NeedsSource:
    @classmethod
    def poll(cls, context):
        if context.scene is not None and source.mode(context.scene) != "NONE":
            return True
        if hasattr(cls, "poll_message_set"):
            cls.poll_message_set("Bind a property (right-click > Randomize with AutoSim) or "
                                 "build an example first")
        return False


class _Reporting:
    """execute() runs self.run(context); an error becomes an ERROR report, nothing else."""

    def execute(self, context):
        try:
            msg = self.run(context)
        except _ERRORS as exc:
            context.scene.autosim.last_error = str(exc)[:400]
            self.report({"ERROR"}, f"{self.bl_label} failed: {exc}")
            return {"CANCELLED"}
        context.scene.autosim.last_error = ""  # it worked: the panel's error line goes
        if msg:
            self.report({"INFO"}, msg)
        return {"FINISHED"}


class AUTOSIM_OT_build_scene(_Reporting, Operator):
    """Build the chosen example in a new scene of this file (your scenes stay as they are)"""

    bl_idname = "autosim.build_scene"
    bl_label = "Build Example"

    def run(self, context):
        name = context.scene.autosim.scene
        handle = build_scene(context.scene, name)
        return f"Built example {name!r} in the new scene {handle.scene.name!r}"


class AUTOSIM_OT_reset_space(Operator):
    """Show the example's shipped distributions (or its validation preset)"""

    bl_idname = "autosim.reset_space"
    bl_label = "Reset Distributions"
    bl_options = {"REGISTER", "UNDO"}
    preset: EnumProperty(name="Preset", items=[
        ("DEFAULT", "Shipped", "The example's shipped starting distributions"),
        ("VALIDATION", "Validation", "The example's validation preset")])

    def execute(self, context):
        s = context.scene.autosim
        handle = scene_handle(context.scene)
        space = ParameterSpace.from_dict(space_dict(handle.name if handle else s.scene))
        P.space_to_props(space.preset("validation") if self.preset == "VALIDATION" else space, s)
        push_edit(context.scene)
        return {"FINISHED"}


class AUTOSIM_OT_apply_sample(_NeedsSource, _Reporting, Operator):
    """Apply one random sample of the distributions to the scene (same seed, same scene;
    Ctrl-Z brings the values back)"""

    bl_idname = "autosim.apply_sample"
    bl_label = "Apply Random Sample"
    bl_options = {"REGISTER", "UNDO"}
    next_seed: BoolProperty(name="Next seed", default=False,
                            description="Advance the seed by one first")

    def run(self, context):
        s = context.scene.autosim
        if self.next_seed:
            s.preview_seed += 1
        apply_sample(context.scene, s.preview_seed)


class AUTOSIM_OT_render_preview(_NeedsSource, _Reporting, Operator):
    """Apply the seed's sample and render a small preview shown in the panel"""

    bl_idname = "autosim.render_preview"
    bl_label = "Render Preview"
    bl_options = {"REGISTER", "UNDO"}

    def run(self, context):
        render_preview(context.scene)


class AUTOSIM_OT_show_preview(Operator):
    """Show the preview in an Image Editor (opens the render view when there is none)"""

    bl_idname = "autosim.show_preview"
    bl_label = "Open in Image Editor"

    def execute(self, context):
        if not preview.open_image_editor(context):
            self.report({"ERROR"}, "Render a preview first")
            return {"CANCELLED"}
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
        except (ValueError, OSError, RuntimeError) as exc:
            self.report({"ERROR"}, f"Import failed, nothing changed: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Loaded {self.filepath}")
        return {"FINISHED"}


class AUTOSIM_OT_generate_dataset(_NeedsSource, Operator):
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
        except _ERRORS as exc:
            self.report({"ERROR"}, f"Dataset failed: {exc}")
            return {"CANCELLED"}
        finally:
            wm.progress_end()
        self.report({"INFO"}, f"Wrote {s.dataset_n} images to {out}")
        return {"FINISHED"}


class AUTOSIM_OT_server_start(_NeedsSource, Operator):
    """Serve renders of this scene over ZeroMQ; optimizers steer the distributions live"""

    bl_idname = "autosim.server_start"
    bl_label = "Serve"

    def execute(self, context):
        try:
            endpoint = start_server(context.scene)
        except _ERRORS as exc:
            context.scene.autosim.last_error = str(exc)[:400]
            self.report({"ERROR"}, f"Server not started: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Render server on {endpoint}")
        return {"FINISHED"}


class AUTOSIM_OT_server_stop(Operator):
    """Stop the render server and close its socket"""

    bl_idname = "autosim.server_stop"
    bl_label = "Stop"

    def execute(self, context):
        stop_server()
        return {"FINISHED"}


class AUTOSIM_OT_watch_start(Operator):
    """Watch an optimizer's run (its --publish address): psi and the metric, live"""

    bl_idname = "autosim.watch_start"
    bl_label = "Watch"

    def execute(self, context):
        try:
            address = start_watch(context.scene)
        except Exception as exc:  # a bad address, key folder or pyzmq: say so, change nothing
            context.scene.autosim.watch_error = str(exc)[:400]
            self.report({"ERROR"}, f"Not watching: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Watching {address}")
        return {"FINISHED"}


class AUTOSIM_OT_watch_stop(Operator):
    """Stop watching the run"""

    bl_idname = "autosim.watch_stop"
    bl_label = "Stop"

    def execute(self, context):
        stop_watch()
        return {"FINISHED"}


classes = (AUTOSIM_OT_build_scene, AUTOSIM_OT_reset_space, AUTOSIM_OT_apply_sample,
           AUTOSIM_OT_render_preview, AUTOSIM_OT_show_preview, AUTOSIM_OT_export_space,
           AUTOSIM_OT_import_space, AUTOSIM_OT_generate_dataset, AUTOSIM_OT_server_start,
           AUTOSIM_OT_server_stop, AUTOSIM_OT_watch_start, AUTOSIM_OT_watch_stop)
_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register() -> None:
    _register_classes()
    preview.register()
    if push_edit not in P.EDIT_HOOKS:
        P.EDIT_HOOKS.append(push_edit)
    if _on_load_pre not in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.append(_on_load_pre)


def unregister() -> None:
    stop_server()
    stop_watch()
    examples.forget()
    if _on_load_pre in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_on_load_pre)
    if push_edit in P.EDIT_HOOKS:
        P.EDIT_HOOKS.remove(push_edit)
    preview.unregister()
    _unregister_classes()
