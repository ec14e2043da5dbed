"""The "AutoSim" tab of the 3D viewport sidebar. Panels only draw; operators do the work."""

import bpy
from bpy.types import Panel

from . import live, operators


class _AutosimPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "AutoSim"

    @classmethod
    def poll(cls, context):
        return context.scene is not None and hasattr(context.scene, "autosim")


class AUTOSIM_PT_main(_AutosimPanel, Panel):
    bl_idname = "AUTOSIM_PT_main"
    bl_label = "AutoSim"

    def draw(self, context):
        s = context.scene.autosim
        layout = self.layout
        row = layout.row(align=True)
        row.prop(s, "scene", text="")
        row.operator("autosim.build_scene", icon="SCENE_DATA")
        handle = operators.scene_handle(context.scene)
        if handle is None:
            layout.label(text="Not built in this session yet", icon="INFO")
        else:
            layout.label(text=f"Scene {handle.name!r} ready", icon="CHECKMARK")


class AUTOSIM_PT_distributions(_AutosimPanel, Panel):
    bl_idname = "AUTOSIM_PT_distributions"
    bl_label = "Distributions"
    bl_parent_id = "AUTOSIM_PT_main"

    def draw(self, context):
        s = context.scene.autosim
        layout = self.layout
        if not len(s.params):
            layout.label(text="Build a scene or import a space", icon="INFO")
            return
        row = layout.row(align=True)
        row.operator("autosim.reset_space", text="Shipped").preset = "DEFAULT"
        row.operator("autosim.reset_space", text="Validation").preset = "VALIDATION"
        for p in s.params:
            _draw_param(layout.box(), p)


def _draw_param(box, p):
    head = box.row(align=True)
    head.prop(p, "show_expanded", text="", emboss=False,
              icon="TRIA_DOWN" if p.show_expanded else "TRIA_RIGHT")
    head.label(text=p.name)
    head.prop(p, "fixed", toggle=True, text="Fixed" if p.fixed else "Optimise",
              icon="LOCKED" if p.fixed else "UNLOCKED")
    if not p.show_expanded:
        return
    if p.doc:
        box.label(text=p.doc)
    if p.kind == "normal":
        dim = len(p.components)
        for i, c in enumerate(p.components):
            col = box.column(align=True)
            if dim > 1:
                col.label(text="xyzw"[i] if dim <= 4 else f"[{i}]")
            col.prop(c, "mean")
            col.prop(c, "std")
            if c.has_low or c.has_high:
                lo = f"{c.low:.3g}" if c.has_low else "-inf"
                hi = f"{c.high:.3g}" if c.has_high else "inf"
                col.label(text=f"samples clipped to [{lo}, {hi}]")
    elif p.kind == "categorical":
        grid = box.grid_flow(columns=2 if len(p.choices) > 6 else 1, even_columns=True,
                             align=True)
        for ch in p.choices:
            grid.prop(ch, "prob", text=ch.name, slider=True)
    elif p.kind == "bernoulli":
        box.prop(p, "prob", text="Probability on", slider=True)


class AUTOSIM_PT_server(_AutosimPanel, Panel):
    bl_idname = "AUTOSIM_PT_server"
    bl_label = "Render Server"
    bl_parent_id = "AUTOSIM_PT_main"

    def draw(self, context):
        s = context.scene.autosim
        layout = self.layout
        srv = live.running_server()
        running = srv is not None and s.server_running
        layout.prop(s, "address")
        if running:
            layout.operator("autosim.server_stop", icon="PAUSE")
            col = layout.column(align=True)
            col.label(text=f"Serving on {s.server_endpoint}", icon="LINKED")
            col.label(text=f"Optimizer: {s.server_client or 'none yet'}")
            col.label(text=f"Psi generation: {s.server_generation}")
            metric = f"{s.val_metric:.4g}" if s.has_val_metric else "none reported"
            col.label(text=f"Validation metric: {metric}")
            if s.metrics_text:
                col.label(text=s.metrics_text)
            col.label(text=f"Requests {s.server_requests}, images {s.server_images}")
        else:
            layout.operator("autosim.server_start", icon="PLAY")
            if srv is not None:
                layout.label(text="Serving another scene", icon="INFO")
        if s.last_error:
            layout.label(text=s.last_error, icon="ERROR")


class AUTOSIM_PT_output(_AutosimPanel, Panel):
    bl_idname = "AUTOSIM_PT_output"
    bl_label = "Preview & Export"
    bl_parent_id = "AUTOSIM_PT_main"

    def draw(self, context):
        s = context.scene.autosim
        layout = self.layout
        col = layout.column(align=True)
        row = col.row(align=True)
        row.prop(s, "preview_seed")
        row.operator("autosim.apply_sample", text="Apply", icon="FILE_REFRESH")
        row.operator("autosim.apply_sample", text="Next", icon="FORWARD").next_seed = True
        row = col.row(align=True)
        row.prop(s, "preview_size")
        row.operator("autosim.render_preview", icon="RENDER_STILL")

        row = layout.row(align=True)
        row.operator("autosim.export_space", text="Export JSON", icon="EXPORT")
        row.operator("autosim.import_space", text="Import JSON", icon="IMPORT")

        box = layout.box()
        box.label(text="Dataset", icon="OUTLINER_COLLECTION")
        box.prop(s, "dataset_dir")
        row = box.row(align=True)
        row.prop(s, "dataset_n")
        row.prop(s, "dataset_size")
        row.prop(s, "dataset_seed")
        box.operator("autosim.generate_dataset", icon="RENDER_ANIMATION")


classes = (AUTOSIM_PT_main, AUTOSIM_PT_distributions, AUTOSIM_PT_server, AUTOSIM_PT_output)
register, unregister = bpy.utils.register_classes_factory(classes)
