"""The bindings list (a UIList) and the selected parameter's details. Drawing only.

One row per parameter of the space: its name, a one-line distribution and the optimise/fixed
lock (the sidebar is narrow: the group shows in the filter and the details, the targets in the
details). A row whose target no longer exists is drawn red (alert) with an error icon. The
list filters by group (lights, quality, placement, materials, other) and by name. Below it, the
selected parameter: what it drives (missing targets in red, with the reason), and its
distribution's fields, editable (mean and spread per component; probabilities or logits per
choice; fixed).
"""

from __future__ import annotations

import json
from typing import Any

import bpy
from bpy.types import UIList

from . import authoring, picking

GROUP_ICONS = {"LIGHTS": "LIGHT", "QUALITY": "RENDER_STILL", "PLACEMENT": "OBJECT_ORIGIN",
               "MATERIALS": "MATERIAL", "OTHER": "DOT"}
_AXES = "XYZW"


def bindings_of(settings: Any, name: str) -> list[dict]:
    return [json.loads(b.json) for b in settings.bindings if b.param == name and b.json]


def row_info(settings: Any, item: Any) -> tuple[str, str]:
    """(group, why broken or '') of a parameter row."""
    bs = bindings_of(settings, item.name)
    choices = [c.name for c in item.choices]
    broken = next((why for b in bs if (why := picking.missing(b, choices))), "")
    return authoring.group_of(bs[0] if bs else None, item.name), broken


def summary(item: Any) -> str:
    return authoring.summary(item.kind, [c.mean for c in item.components],
                             [c.std for c in item.components],
                             [(c.name, c.prob) for c in item.choices], item.prob)


class AUTOSIM_UL_params(UIList):
    """The panel's bindings: one row per parameter."""

    bl_idname = "AUTOSIM_UL_params"

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname,
                  index=0, flt_flag=0):
        _, broken = row_info(data, item)
        row = layout.row(align=True)
        split = row.split(factor=0.57, align=True)
        split.alert = bool(broken)
        split.label(text=item.name, icon="ERROR" if broken else "NONE")
        split.label(text=summary(item))
        row.prop(item, "fixed", text="", emboss=False,
                 icon="LOCKED" if item.fixed else "UNLOCKED")

    def filter_items(self, context, data, propname):
        items = getattr(data, propname)
        helper = bpy.types.UI_UL_list
        flags = helper.filter_items_by_name(self.filter_name, self.bitflag_filter_item, items,
                                            "name", reverse=self.use_filter_invert) \
            if self.filter_name else [self.bitflag_filter_item] * len(items)
        if data.group_filter != "ALL":
            for i, item in enumerate(items):
                if row_info(data, item)[0] != data.group_filter:
                    flags[i] &= ~self.bitflag_filter_item
        order = helper.sort_items_by_name(items, "name") if self.use_filter_sort_alpha else []
        return flags, order


def draw_details(layout: Any, settings: Any, item: Any, example: bool) -> None:
    """What the selected parameter drives, and its distribution's editable fields."""
    col = layout.column()
    group, _ = row_info(settings, item)
    col.label(text=item.doc or item.name, icon=GROUP_ICONS[group])
    bs = bindings_of(settings, item.name)
    for b in bs:
        why = picking.missing(b, [c.name for c in item.choices])
        row = col.row()
        row.alert = bool(why)
        row.label(text=authoring.short_target(b), icon="ERROR" if why else "LINKED")
        if why:
            sub = col.row()
            sub.alert = True
            sub.label(text=why)
    if not bs:
        col.label(text="Built into the example" if example else "Not bound to anything",
                  icon="INFO")
    col.separator()
    col.use_property_split = True
    col.use_property_decorate = False
    col.prop(item, "fixed", text="Fixed")
    if item.kind == "normal":
        n = len(item.components)
        for i, c in enumerate(item.components):
            sub = col.column(align=True)
            axis = f" {_AXES[i]}" if 1 < n <= 4 else (f" [{i}]" if n > 4 else "")
            sub.prop(c, "mean", text=f"Mean{axis}")
            sub.prop(c, "std", text=f"Spread{axis}")
        lows = [f"{c.low:.3g}" if c.has_low else "-inf" for c in item.components]
        highs = [f"{c.high:.3g}" if c.has_high else "inf" for c in item.components]
        if any(c.has_low or c.has_high for c in item.components):
            same = len(set(lows)) == 1 and len(set(highs)) == 1
            rng = f"[{lows[0]}, {highs[0]}]" if same else "per component"
            col.label(text=f"Clipped to {rng}")
    elif item.kind == "categorical":
        col.prop(settings, "show_logits")
        sub = col.column(align=True)
        for ch in item.choices:
            if settings.show_logits:
                sub.prop(ch, "logit", text=ch.name)
            else:
                sub.prop(ch, "prob", text=ch.name, slider=True)
    elif item.kind == "bernoulli":
        if settings.show_logits:
            col.prop(item, "logit", text="Logit")
        else:
            col.prop(item, "prob", text="Probability On", slider=True)
        col.prop(settings, "show_logits")


classes = (AUTOSIM_UL_params,)
register, unregister = bpy.utils.register_classes_factory(classes)
