"""The artist's way in, in a real window: Debian's Blender 3.4.1 under Xvfb.

The legacy add-on zip is installed into the default startup file; "Randomize with AutoSim" runs
with the context of a real Properties editor (the light's energy) and of the 3D view's sidebar
(the default cube's location), as the button context menu runs it; the context menu offers the
entry and, once bound, "Remove from AutoSim"; a preview renders; the sidebar's AutoSim tab is
clicked (simulated events: Blender 3.4 has no API to pick a tab) and drawn; a screenshot of the
window is cropped to the sidebar. AUTOSIM_PANEL_PNG=docs/panel.png keeps that crop.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess

import numpy as np
import pytest

from blender_addon import build_extension as bx
from tests.system_blender import system_blender_env

TIMEOUT_S = 180

_SCRIPT = r"""
import json, sys, time, traceback
import addon_utils, bpy

zip_path, out_path, shot_path = sys.argv[sys.argv.index("--") + 1:][:3]
out, state = {"background": bpy.app.background, "draws": 0}, {"clicks": 0, "t0": time.time()}


def bail():  # never leave a GUI Blender running: report and quit
    with open(out_path, "w") as fh:
        json.dump({"error": traceback.format_exc(), **out}, fh)
    bpy.ops.wm.quit_blender()


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


def areas():
    win = bpy.context.window_manager.windows[0]
    by = {a.type: a for a in win.screen.areas}
    return win, by["VIEW_3D"], by["PROPERTIES"]


def region(area, kind):
    return next(r for r in area.regions if r.type == kind)


def setup():
    bpy.ops.preferences.addon_install(filepath=zip_path)
    addon_utils.enable("autosim", default_set=True, handle_error=None)
    bpy.types.AUTOSIM_PT_main.append(lambda self, ctx: out.__setitem__("draws",
                                                                      out["draws"] + 1))
    win, v3d, props = areas()
    v3d.spaces.active.show_region_ui = True
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
    bpy.app.timers.register(click_tab, first_interval=0.5)


def click_tab():
    # Walk down the sidebar's tab strip (its right edge), clicking, until AutoSim draws.
    try:
        win, v3d, _ = areas()
        ui = region(v3d, "UI")
        with bpy.context.temp_override(window=win, area=v3d):
            bpy.ops.wm.redraw_timer(type="DRAW_WIN_SWAP", iterations=1)
        if out["draws"]:
            return shoot(win, v3d, ui)
        if state["clicks"] > 60 or time.time() - state["t0"] > 90:
            raise RuntimeError("the AutoSim tab never drew")
        x, y = ui.x + ui.width - 8, ui.y + ui.height - 10 - 12 * state["clicks"]
        win.event_simulate(type="MOUSEMOVE", value="NOTHING", x=x, y=y)
        win.event_simulate(type="LEFTMOUSE", value="PRESS", x=x, y=y)
        win.event_simulate(type="LEFTMOUSE", value="RELEASE", x=x, y=y)
        state["clicks"] += 1
        return 0.2
    except Exception:
        bail()
    return None


def shoot(win, v3d, ui):
    win.event_simulate(type="MOUSEMOVE", value="NOTHING", x=ui.x - 200, y=ui.y + 200)
    with bpy.context.temp_override(window=win, area=v3d, screen=win.screen):
        bpy.ops.wm.redraw_timer(type="DRAW_WIN_SWAP", iterations=2)
        out["shot"] = sorted(bpy.ops.screen.screenshot(filepath=shot_path))
    out["window"] = [win.width, win.height]
    out["sidebar"] = [ui.x, ui.y, ui.width, ui.height]
    with bpy.context.temp_override(window=win, area=v3d, region=ui):
        out["show"] = sorted(bpy.ops.autosim.show_preview())  # no Image Editor: a new window
    out["editors"] = [a.spaces.active.image.name for w in bpy.context.window_manager.windows
                      for a in w.screen.areas if a.type == "IMAGE_EDITOR"]
    with open(out_path, "w") as fh:
        json.dump(out, fh)
    bpy.ops.wm.quit_blender()
    return None


try:
    setup()
except Exception:
    bail()
"""


def _tools() -> tuple[str, str]:
    blender, xvfb = shutil.which("blender"), shutil.which("xvfb-run")
    if blender is None or xvfb is None:
        reason = ("needs Debian's blender and xvfb-run (.ci/run installs them: apt-get install "
                  "blender xvfb xauth)")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return blender, xvfb


@pytest.mark.slow
def test_context_menu_entry_binds_and_the_panel_reads_in_a_real_window(tmp_path):
    blender, xvfb = _tools()
    legacy = bx.build(tmp_path / "dist", legacy=True)
    legacy = legacy.with_name(legacy.stem + "-legacy.zip")
    env = system_blender_env(tmp_path / "user")
    env.pop("PYTHONPATH", None)  # the add-on comes from its zip, as a user installs it
    start = tmp_path / "start.blend"  # the default startup file, opened as a file: no splash
    subprocess.run([blender, "-b", "--factory-startup", "--python-expr",
                    f"import bpy; bpy.ops.wm.save_as_mainfile(filepath={str(start)!r})"],
                   check=True, capture_output=True, env=env, timeout=60)
    script, out_path, shot = tmp_path / "gui.py", tmp_path / "out.json", tmp_path / "shot.png"
    script.write_text(_SCRIPT)
    proc = subprocess.Popen([xvfb, "-a", "-s", "-screen 0 1280x1024x24", blender,
                             "--factory-startup", "--enable-event-simulate", str(start), "-P",
                             str(script), "--", str(legacy), str(out_path), str(shot)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=tmp_path, env=env, start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # xvfb-run, Xvfb and Blender: one session
        log, _ = proc.communicate()
    assert out_path.exists(), log[-4000:]
    out = json.loads(out_path.read_text())
    assert "error" not in out, out.get("error")
    assert "Traceback" not in log, log[-4000:]
    assert out["background"] is False
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

    from PIL import Image

    full = Image.open(shot)
    assert list(full.size) == out["window"]
    x, y, w, h = out["sidebar"]
    top = out["window"][1] - (y + h)
    crop = full.convert("RGB").crop((x, top, x + w, top + min(h, 760)))
    px = np.asarray(crop, dtype=np.float32)
    assert px.std() > 10  # a drawn panel, not an empty region
    crop.save(tmp_path / "panel.png", optimize=True)
    keep = os.environ.get("AUTOSIM_PANEL_PNG")
    if keep:  # small enough to commit: a 96-colour palette
        crop.quantize(colors=96, method=Image.Quantize.MEDIANCUT).save(keep, optimize=True)
