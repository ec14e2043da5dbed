"""The "AutoSim" tab of the 3D viewport sidebar. Panels only draw; operators do the work.

One parent panel says what the panel shows (the file's bindings, a built-in example, or
nothing yet and how to start); sub-panels that collapse hold the bindings list and the selected
binding (ui_list.py), the preview, the dataset export, the render server and the examples.
Layouts are Blender's own (UIList, use_property_split, sub-panels), so labels read at the
sidebar's default width.
"""

import bpy
from bpy.types import Panel

from . import live, preview, source, ui_list, watch


class _AutosimPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "AutoSim"

    @classmethod
    def poll(cls, context):
        return context.scene is not None and hasattr(context.scene, "autosim")


def _split(layout):
    col = layout.column()
    col.use_property_split = True
    col.use_property_decorate = False
    return col


def _pair(layout, key: str, value: str, icon: str = "NONE") -> None:
    """A 'key   value' line aligned like use_property_split fields."""
    row = layout.split(factor=0.4)
    row.alignment = "RIGHT"
    row.label(text=key)
    row.label(text=value, icon=icon)


def _metric(layout, name: str, value: float) -> None:
    """The validation metric; its name goes with the value ("Val. accuracy" is clipped)."""
    _pair(layout, "Metric", f"{name or 'validation'} {value:.4g}")


def _scale() -> float:
    """The UI's scale (0 where nothing draws: the bpy module)."""
    return bpy.context.preferences.system.ui_scale or 1.0


def _text_px(context) -> float:
    """The pixels a label's text gets in a sub-panel of this sidebar: its width less the tab
    strip, the panel's and the layout's margins and a label's padding (Blender 3.4's factory
    theme, measured on a screenshot); the default sidebar's where there is no region."""
    region, scale = getattr(context, "region", None), _scale()
    return (region.width if region is not None else 229 * scale) - 66 * scale


def _measure():
    """A text's width in pixels in the UI font at the UI's size."""
    import blf

    blf.size(0, bpy.context.preferences.ui_styles[0].widget.points * _scale())
    return lambda text: blf.dimensions(0, text)[0]


def _wrapped(text: str, width: float) -> list[str]:
    """`text` in lines that fit `width` pixels (a word wider than that gets a line)."""
    measure, lines = _measure(), []
    for word in text.split():
        if lines and measure(f"{lines[-1]} {word}") <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines


def _error(layout, text: str, context) -> None:
    """An error in red, wrapped to the sidebar's width (a label is clipped, not wrapped)."""
    if not text:
        return
    col = layout.column(align=True)
    col.alert = True
    for i, line in enumerate(_wrapped(text, _text_px(context) - 18 * _scale())):
        col.label(text=line, icon="ERROR" if i == 0 else "BLANK1")


def _spark_width(context) -> int:
    """How many sparkline blocks fit a label of this sidebar."""
    block = _measure()(watch.BLOCKS[-1]) or 8 * _scale()
    return max(8, min(watch.HISTORY, int(_text_px(context) // block)))


class AUTOSIM_PT_main(_AutosimPanel, Panel):
    bl_idname = "AUTOSIM_PT_main"
    bl_label = "AutoSim"

    def draw(self, context):
        s = context.scene.autosim
        layout = self.layout
        mode = source.mode(context.scene)
        col = layout.column(align=True)
        if mode == "EXAMPLE":
            col.label(text=f"Example scene: {s.scene}", icon="SCENE_DATA")
        elif mode == "FILE":
            col.label(text=f"{len(s.params)} bound in this file", icon="LINKED")
            if source.stale(context.scene):
                row = col.row()
                row.alert = True
                row.label(text="Description changed", icon="ERROR")
                row.operator("autosim.reload_description", icon="FILE_REFRESH")
        else:
            col.label(text="Nothing bound yet.", icon="INFO")
            col.label(text="Right-click a property:")
            col.label(text="Randomize with AutoSim")
        if s.last_error:
            row = layout.row()
            row.alert = True
            row.label(text=s.last_error, icon="ERROR")


class AUTOSIM_PT_bindings(_AutosimPanel, Panel):
    bl_idname = "AUTOSIM_PT_bindings"
    bl_label = "Bindings"
    bl_parent_id = "AUTOSIM_PT_main"

    def draw(self, context):
        s = context.scene.autosim
        layout = self.layout
        mode = source.mode(context.scene)
        row = layout.row()
        row.prop(s, "group_filter", expand=True, icon_only=True)
        row.separator()
        tools = row.row(align=True)
        tools.alignment = "RIGHT"
        tools.menu("AUTOSIM_MT_one_of", text="", icon="ADD")
        tools.operator("autosim.remove_param", text="", icon="REMOVE")
        if mode == "FILE":
            tools.operator("autosim.reload_description", text="", icon="FILE_REFRESH")
        layout.template_list("AUTOSIM_UL_params", "", s, "params", s, "active_param", rows=4)
        if 0 <= s.active_param < len(s.params):
            box = layout.box()
            ui_list.draw_details(box, s, s.params[s.active_param], mode == "EXAMPLE")


class AUTOSIM_PT_preview(_AutosimPanel, Panel):
    bl_idname = "AUTOSIM_PT_preview"
    bl_label = "Preview"
    bl_parent_id = "AUTOSIM_PT_main"

    def draw(self, context):
        s = context.scene.autosim
        layout = self.layout
        col = _split(layout)
        col.prop(s, "preview_seed")
        col.prop(s, "preview_size")
        col.prop(s, "preview_samples")
        row = layout.row(align=True)
        row.operator("autosim.apply_sample", text="Apply", icon="FILE_REFRESH")
        row.operator("autosim.apply_sample", text="Next", icon="FORWARD").next_seed = True
        layout.operator("autosim.render_preview", icon="RENDER_STILL")
        icon = preview.icon_id()
        if icon:
            layout.template_icon(icon_value=icon, scale=8.0)
            layout.operator("autosim.show_preview", icon="IMAGE_DATA")


class AUTOSIM_PT_dataset(_AutosimPanel, Panel):
    bl_idname = "AUTOSIM_PT_dataset"
    bl_label = "Dataset"
    bl_parent_id = "AUTOSIM_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        s = context.scene.autosim
        layout = self.layout
        col = _split(layout)
        col.prop(s, "dataset_dir")
        col.prop(s, "dataset_n")
        col.prop(s, "dataset_size")
        col.prop(s, "dataset_seed")
        layout.operator("autosim.generate_dataset", icon="RENDER_ANIMATION")
        row = layout.row(align=True)
        row.operator("autosim.export_space", text="Export", icon="EXPORT")
        row.operator("autosim.import_space", text="Import", icon="IMPORT")


class AUTOSIM_PT_server(_AutosimPanel, Panel):
    bl_idname = "AUTOSIM_PT_server"
    bl_label = "Render Server"
    bl_parent_id = "AUTOSIM_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        s = context.scene.autosim
        layout = self.layout
        srv = live.running_server()
        running = srv is not None and s.server_running
        _split(layout).prop(s, "address")
        if not running:
            layout.operator("autosim.server_start", icon="PLAY")
            if srv is not None:
                layout.label(text="Serving another scene", icon="INFO")
            return
        layout.operator("autosim.server_stop", icon="PAUSE")
        col = layout.column(align=True)
        _pair(col, "Serving", s.server_endpoint.replace("tcp://", ""))
        _pair(col, "Optimizer", s.server_client or "none connected")
        if s.has_val_metric:
            _metric(col, s.metric_name, s.val_metric)
        if s.metrics_text:
            col.label(text=s.metrics_text)
        _pair(col, "Updates", str(s.server_updates))
        _pair(col, "Requests", str(s.server_requests))
        _pair(col, "Images", str(s.server_images))


class AUTOSIM_PT_watch(_AutosimPanel, Panel):
    bl_idname = "AUTOSIM_PT_watch"
    bl_label = "Watch a Run"
    bl_parent_id = "AUTOSIM_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        s = context.scene.autosim
        layout = self.layout
        _split(layout).prop(s, "watch_address")
        if not (watch.watching() and s.watch_running):
            layout.operator("autosim.watch_start", icon="HIDE_OFF")
            if watch.watching():
                layout.label(text="Watching another scene", icon="INFO")
            _error(layout, s.watch_error, context)
            return
        layout.operator("autosim.watch_stop", icon="PAUSE")
        col = layout.column(align=True)
        if not s.watch_messages:
            col.label(text="Waiting for the optimizer", icon="TIME")
        else:
            _pair(col, "Run", s.watch_run + (" (done)" if s.watch_final else ""))
            _pair(col, "Iteration", str(s.watch_iteration))
            _pair(col, "Images", str(s.watch_images))
            if s.watch_has_metric:
                _metric(col, s.watch_metric_name, s.watch_metric)
            curve = watch.sparkline(watch.history(), _spark_width(context))
            if curve:
                col.label(text=curve)
            if s.watch_shown == "PANEL":
                col.label(text="Bindings follow the run", icon="LINKED")
            elif s.watch_shown == "TEXT":
                col.label(text="The run's parameters:", icon="INFO")
                box = layout.box().column(align=True)
                for key, value in watch.params_text():
                    if value is None:
                        box.label(text=key)
                    else:
                        _pair(box, key, value)
            else:
                col.label(text="Waiting for the space", icon="TIME")
        _error(layout, s.watch_error, context)


class AUTOSIM_PT_examples(_AutosimPanel, Panel):
    bl_idname = "AUTOSIM_PT_examples"
    bl_label = "Examples"
    bl_parent_id = "AUTOSIM_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        s = context.scene.autosim
        layout = self.layout
        _split(layout).prop(s, "scene")
        layout.operator("autosim.build_scene", icon="SCENE_DATA")
        layout.label(text="Builds in a new scene", icon="INFO")
        if source.mode(context.scene) == "EXAMPLE":
            row = layout.row(align=True)
            row.operator("autosim.reset_space", text="Shipped").preset = "DEFAULT"
            row.operator("autosim.reset_space", text="Validation").preset = "VALIDATION"


classes = (AUTOSIM_PT_main, AUTOSIM_PT_bindings, AUTOSIM_PT_preview, AUTOSIM_PT_dataset,
           AUTOSIM_PT_server, AUTOSIM_PT_watch, AUTOSIM_PT_examples)
register, unregister = bpy.utils.register_classes_factory(classes)
