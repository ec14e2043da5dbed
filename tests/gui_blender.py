"""Debian's Blender 3.4.1 in a real window under Xvfb, for the GUI tests (test_panel_gui.py,
test_watch_gui.py).

A test builds the legacy add-on zip, saves the default startup file as a file (opened as a file:
no splash), and launches `blender --enable-event-simulate start.blend -P script -- zip out shot
...` under xvfb-run, where the script is PRELUDE + its own part. The script reports by writing
`out` (JSON) and quits; `wait` reads it. PRELUDE installs the add-on, clicks the sidebar's
AutoSim tab (simulated events: Blender 3.4 has no API to pick a tab) and screenshots the window;
`sidebar_crop` cuts the sidebar out of that screenshot.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from blender_addon import build_extension as bx
from tests.system_blender import system_blender_env

PRELUDE = r"""
import json, sys, time, traceback
import addon_utils, bpy

ARGS = sys.argv[sys.argv.index("--") + 1:]
zip_path, out_path, shot_path = ARGS[:3]
out, state = {"background": bpy.app.background, "draws": 0}, {"clicks": 0, "t0": time.time()}


def bail():  # never leave a GUI Blender running: report and quit
    with open(out_path, "w") as fh:
        json.dump({"error": traceback.format_exc(), **out}, fh)
    bpy.ops.wm.quit_blender()


def finish():
    with open(out_path, "w") as fh:
        json.dump(out, fh)
    bpy.ops.wm.quit_blender()


def guarded(fn):  # a timer function that bails on any error
    def timer():
        try:
            return fn()
        except Exception:
            bail()
        return None
    return timer


def areas():
    win = bpy.context.window_manager.windows[0]
    by = {a.type: a for a in win.screen.areas}
    return win, by["VIEW_3D"], by["PROPERTIES"]


def region(area, kind):
    return next(r for r in area.regions if r.type == kind)


def redraw(win, area):  # the whole window, now (software GL under Xvfb: up to a second)
    with bpy.context.temp_override(window=win, area=area, screen=win.screen):
        bpy.ops.wm.redraw_timer(type="DRAW_WIN_SWAP", iterations=1)


def click(win, x, y):
    win.event_simulate(type="MOUSEMOVE", value="NOTHING", x=x, y=y)
    win.event_simulate(type="LEFTMOUSE", value="PRESS", x=x, y=y)
    win.event_simulate(type="LEFTMOUSE", value="RELEASE", x=x, y=y)


def install():
    bpy.ops.preferences.addon_install(filepath=zip_path)
    addon_utils.enable("autosim", default_set=True, handle_error=None)
    bpy.types.AUTOSIM_PT_main.append(lambda self, ctx: out.__setitem__("draws",
                                                                      out["draws"] + 1))
    areas()[1].spaces.active.show_region_ui = True


def open_tab(then):
    # Walk down the sidebar's tab strip (its right edge), clicking, until AutoSim draws; then
    # then(win, v3d, ui) from a timer.
    def click_tab():
        win, v3d, _ = areas()
        ui = region(v3d, "UI")
        redraw(win, v3d)
        if out["draws"]:
            return then(win, v3d, ui)
        if state["clicks"] > 60 or time.time() - state["t0"] > 90:
            raise RuntimeError("the AutoSim tab never drew")
        click(win, ui.x + ui.width - 8, ui.y + ui.height - 10 - 12 * state["clicks"])
        state["clicks"] += 1
        return 0.2
    bpy.app.timers.register(guarded(click_tab), first_interval=0.5, persistent=True)


def shoot(win, v3d, ui):
    win.event_simulate(type="MOUSEMOVE", value="NOTHING", x=ui.x - 200, y=ui.y + 200)
    with bpy.context.temp_override(window=win, area=v3d, screen=win.screen):
        bpy.ops.wm.redraw_timer(type="DRAW_WIN_SWAP", iterations=2)
        out["shot"] = sorted(bpy.ops.screen.screenshot(filepath=shot_path))
    out["window"] = [win.width, win.height]
    out["sidebar"] = [ui.x, ui.y, ui.width, ui.height]
"""


def tools() -> tuple[str, str]:
    blender, xvfb = shutil.which("blender"), shutil.which("xvfb-run")
    if blender is None or xvfb is None:
        reason = ("needs Debian's blender and xvfb-run (.ci/run installs them: apt-get install "
                  "blender xvfb xauth)")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return blender, xvfb


def launch(tmp_path: Path, script: str, *args: str) -> subprocess.Popen:
    """Start the GUI Blender on the default startup file with the legacy add-on zip and
    PRELUDE + script; its output goes to tmp_path/gui.log."""
    blender, xvfb = tools()
    legacy = bx.build(tmp_path / "dist", legacy=True)
    legacy = legacy.with_name(legacy.stem + "-legacy.zip")
    env = system_blender_env(tmp_path / "user")
    env.pop("PYTHONPATH", None)  # the add-on comes from its zip, as a user installs it
    start = tmp_path / "start.blend"  # the default startup file, opened as a file: no splash
    subprocess.run([blender, "-b", "--factory-startup", "--python-expr",
                    f"import bpy; bpy.ops.wm.save_as_mainfile(filepath={str(start)!r})"],
                   check=True, capture_output=True, env=env, timeout=60)
    (tmp_path / "gui.py").write_text(PRELUDE + script)
    with open(tmp_path / "gui.log", "w") as log:
        return subprocess.Popen(
            [xvfb, "-a", "-s", "-screen 0 1280x1024x24", blender, "--factory-startup",
             "--enable-event-simulate", str(start), "-P", str(tmp_path / "gui.py"), "--",
             str(legacy), str(tmp_path / "out.json"), str(tmp_path / "shot.png"), *args],
            stdout=log, stderr=subprocess.STDOUT, text=True, cwd=tmp_path, env=env,
            start_new_session=True)


def wait(proc: subprocess.Popen, tmp_path: Path, timeout: float) -> tuple[dict, str]:
    """The script's report and Blender's log, once it quit (killed after `timeout` s); fails
    on a script error or a traceback in the log (a panel that raised while drawing)."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill(proc)
    log = (tmp_path / "gui.log").read_text(errors="replace")
    out_path = tmp_path / "out.json"
    assert out_path.exists(), log[-4000:]
    out = json.loads(out_path.read_text())
    assert "error" not in out, out.get("error")
    assert "Traceback" not in log, log[-4000:]
    assert out["background"] is False
    return out, log


def kill(proc: subprocess.Popen) -> None:
    """End a GUI Blender still running: xvfb-run, Xvfb and Blender are one session."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def sidebar_crop(tmp_path: Path, out: dict, max_h: int | None = None):
    """The screenshot's sidebar (its top max_h pixels), as an RGB PIL image."""
    from PIL import Image

    full = Image.open(tmp_path / "shot.png")
    assert list(full.size) == out["window"]
    x, y, w, h = out["sidebar"]
    top = out["window"][1] - (y + h)
    crop = full.convert("RGB").crop((x, top, x + w, top + min(h, max_h or h)))
    assert np.asarray(crop, dtype=np.float32).std() > 10  # a drawn panel, not an empty region
    return crop


def keep(crop, variable: str) -> None:
    """Save the crop where `variable` says, small enough to commit: a 96-colour palette."""
    from PIL import Image

    path = os.environ.get(variable)
    if path:
        crop.quantize(colors=96, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
