"""The artist's way in, in a real window: Debian's Blender 3.4.1 under Xvfb.

The legacy add-on zip is installed into the default startup file; "Randomize with AutoSim" runs
with the context of a real Properties editor (the light's energy) and of the 3D view's sidebar
(the default cube's location), as the button context menu runs it; the context menu offers the
entry and, once bound, "Remove from AutoSim"; a preview renders; the sidebar's AutoSim tab is
clicked (simulated events: Blender 3.4 has no API to pick a tab) and drawn; a screenshot of the
window is cropped to the sidebar. AUTOSIM_PANEL_PNG=docs/panel.png keeps that crop. The
window itself is tests/gui_blender.py's.
"""

from __future__ import annotations

import pytest

from tests import gui_blender as gui

TIMEOUT_S = 180

_SCRIPT = r"""
class Recorder:  # stands in for a menu's layout: records the operators offered
    def __init__(self):
        self.ops = []

    def separator(self):
        pass

    def operator(self, idname, **kw):
        self.ops.append([idname, kw.get("text", "")])


def menu_entries(ctx_kw):
    rec = Recorder()
    menu = type("Menu", (), {"layout": rec})()
    with bpy.context.temp_override(**ctx_kw):
        for fn in bpy.types.UI_MT_button_context_menu.draw._draw_funcs[1:]:
            fn(menu, bpy.context)
    return [e for e in rec.ops if e[0].startswith("autosim.")]


def setup():
    install()
    win, v3d, props = areas()
    light, cube = bpy.data.lights["Light"], bpy.data.objects["Cube"]
    energy = dict(window=win, area=props, region=region(props, "WINDOW"),
                  button_pointer=light, button_prop=light.bl_rna.properties["energy"])
    location = dict(window=win, area=v3d, region=region(v3d, "UI"), button_pointer=cube,
                    button_prop=cube.bl_rna.properties["location"])
    out["menu_before"] = menu_entries(energy)
    for kw in (energy, location):
        with bpy.context.temp_override(**kw):
            out.setdefault("ops", []).append(sorted(bpy.ops.autosim.randomize_property()))
    out["menu_after"] = menu_entries(energy)
    try:
        with bpy.context.temp_override(**energy):
            bpy.ops.autosim.randomize_property()
        out["again"] = "accepted"
    except RuntimeError as exc:
        out["again"] = str(exc)
    text = bpy.data.texts["autosim_scene.json"].as_string()
    out["bindings"] = [[b["data"], b["id"], b["path"]] for b in json.loads(text)["bindings"]]
    scene = bpy.context.scene
    scene.autosim.preview_size = 64
    scene.autosim.active_param = 0
    with bpy.context.temp_override(window=win, area=v3d, region=region(v3d, "UI")):
        out["preview"] = sorted(bpy.ops.autosim.render_preview())
    img = bpy.data.images["AutoSim Preview"]
    px = list(img.pixels)
    out["preview_mean"] = sum(px[i] for i in range(len(px)) if i % 4 != 3) / (0.75 * len(px))
    out["preview_dirty"] = img.is_dirty
    open_tab(shot_and_show)


def shot_and_show(win, v3d, ui):
    shoot(win, v3d, ui)
    with bpy.context.temp_override(window=win, area=v3d, region=ui):
        out["show"] = sorted(bpy.ops.autosim.show_preview())  # no Image Editor: a new window
    out["editors"] = [a.spaces.active.image.name for w in bpy.context.window_manager.windows
                      for a in w.screen.areas if a.type == "IMAGE_EDITOR"]
    finish()


try:
    setup()
except Exception:
    bail()
"""


@pytest.mark.slow
def test_context_menu_entry_binds_and_the_panel_reads_in_a_real_window(tmp_path):
    out, _ = gui.wait(gui.launch(tmp_path, _SCRIPT), tmp_path, TIMEOUT_S)
    assert out["menu_before"] == [["autosim.randomize_property", ""]]
    assert out["ops"] == [["FINISHED"], ["FINISHED"]]
    assert out["bindings"] == [["lights", "Light", "energy"], ["objects", "Cube", "location"]]
    assert out["menu_after"] == [["autosim.unbind_property",
                                  "Remove from AutoSim (Light_energy)"]]
    assert "already bound" in out["again"]
    assert out["preview"] == ["FINISHED"] and out["preview_mean"] > 0.02
    assert out["preview_dirty"] is False
    assert out["draws"] >= 1 and out["shot"] == ["FINISHED"]
    assert out["show"] == ["FINISHED"] and out["editors"] == ["AutoSim Preview"]
    crop = gui.sidebar_crop(tmp_path, out, max_h=760)
    crop.save(tmp_path / "panel.png", optimize=True)
    gui.keep(crop, "AUTOSIM_PANEL_PNG")
