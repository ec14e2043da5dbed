"""Add-on preferences: default bind address and the Cycles device.

bl_idname is `__package__`, which is the add-on's module name however it was installed
(`blender_addon` from the repository, `autosim` as a legacy add-on, `bl_ext.<repo>.autosim` as
an extension), so Blender finds these preferences in every case.
"""

import bpy
from bpy.props import EnumProperty, StringProperty
from bpy.types import AddonPreferences

DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"


class AutosimPreferences(AddonPreferences):
    bl_idname = __package__

    bind_address: StringProperty(
        name="Default address", default=DEFAULT_ADDRESS,
        description="ZeroMQ endpoint a new render server binds when the panel's address is "
                    "empty (127.0.0.1: this machine only; port * picks a free port)")
    curve_dir: StringProperty(
        name="CURVE keys", default="", subtype="DIR_PATH",
        description="Key folder made by `autosim keys --out DIR`: the panel's server then "
                    "answers only authorized clients (required for any non-loopback address)")
    device: EnumProperty(
        name="Cycles device", default="CPU",
        items=[("CPU", "CPU", "Render on the CPU (deterministic, always available)"),
               ("AUTO", "Auto", "Use a GPU compute device when Cycles finds one")],
        description="Device used when AutoSim builds a scene")

    def draw(self, _context):
        col = self.layout.column()
        col.prop(self, "bind_address")
        col.prop(self, "curve_dir")
        col.prop(self, "device")


class _Defaults:
    bind_address = DEFAULT_ADDRESS
    curve_dir = ""
    device = "CPU"


def get_preferences(context=None):
    """This add-on's preferences, or the defaults when it was registered without Blender's
    add-on manager (e.g. `blender_addon.register()` called from a script or test)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(__package__) if context.preferences else None
    return addon.preferences if addon is not None and addon.preferences else _Defaults()


classes = (AutosimPreferences,)
register, unregister = bpy.utils.register_classes_factory(classes)
