"""Watch a Run, in a real window: Debian's Blender 3.4.1 under Xvfb watches a real toy run.

The legacy add-on zip is installed into the default startup file (nothing bound); the sidebar's
AutoSim tab is clicked, then the closed "Watch a Run" sub-panel's header (simulated clicks
upwards from the bottom of the panel stack, found on a screenshot: Blender 3.4 has no API to
open a panel); "Watch" runs with the sidebar's context; then `autosim optimize --scene toy
--publish` runs (no Blender needed) and Blender is left alone, no event sent, until its timer
has received the run's last update and the panel has drawn it.

Checked: the panel redrew during the run and last drew the last update; its run, iteration,
images and metric are the last published; the metric history is every published point in
order; the run's parameters (not the file's: shown as rows) are the last published psi's
probabilities and mean ± std; no label of any state of the panel is wider than the default
sidebar gives it (blf, the UI font); nothing raised while drawing. The sidebar, scrolled to its
end, is cropped from a screenshot (AUTOSIM_WATCH_PNG=docs/watch.png keeps it): it has rows of
text, and the sparkline's blocks stand on one baseline as tall as their levels (the UI font
has the glyphs). Then Stop ends the watch, and one started again ends with File > New.
The window is tests/gui_blender.py's.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests import gui_blender as gui

TIMEOUT_S = 120
ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = r"""
endpoint, ready_path = ARGS[3:5]
seen = {"watch": [], "examples": 0}  # the watch panel's draws (updates shown), the examples'
scan = {"y": None, "steps": 0, "phase": "clicked"}
out["t"] = {}


def watch_module():
    return sys.modules["autosim.watch"]


def settings():
    return bpy.context.scene.autosim


def counts():
    return [out["draws"], len(seen["watch"]), seen["examples"]]


def setup():
    install()
    bpy.types.AUTOSIM_PT_watch.append(
        lambda self, ctx: seen["watch"].append(ctx.scene.autosim.watch_messages))
    bpy.types.AUTOSIM_PT_examples.append(
        lambda self, ctx: seen.__setitem__("examples", seen["examples"] + 1))
    open_tab(find_stack)


def find_stack(win, v3d, ui):
    # The closed sub-panels' headers stack under the parent, Examples last. The sidebar
    # overlaps the 3D view (its empty part shows the dithered viewport): in a screenshot the
    # lowest rows whose panel margin (x 8-16, the factory theme) is one flat colour are the
    # bottom of that header.
    import numpy as np

    out["t"]["tab"] = time.time() - state["t0"]
    path = shot_path + ".scan.png"
    with bpy.context.temp_override(window=win, area=v3d, screen=win.screen):
        bpy.ops.screen.screenshot(filepath=path)
    img = bpy.data.images.load(path)
    px = np.empty(img.size[0] * img.size[1] * 4, np.float32)
    img.pixels.foreach_get(px)
    band = px.reshape(img.size[1], img.size[0], 4)[ui.y:ui.y + ui.height,
                                                    ui.x + 8:ui.x + 16, :3]
    bpy.data.images.remove(img)
    flat = np.ptp(band, axis=1).max(axis=1) < 1e-3
    bottom = next(r for r in range(2, len(flat) - 2) if flat[r:r + 3].all())
    scan["y"] = out["stack_bottom"] = ui.y + bottom + 3
    click(win, ui.x + 40, scan["y"])
    bpy.app.timers.register(guarded(open_watch), first_interval=0.1, persistent=True)
    return None


def open_watch():
    # Click upwards from there. A click is judged two ticks later, by a redraw asked for after
    # it was handled: an open panel draws its body, a closed one does not. A click that opened
    # Examples closes it again, and the next one goes higher.
    win, v3d, _ = areas()
    ui = region(v3d, "UI")
    if scan["phase"] == "clicked":
        scan["phase"], scan["before"] = "asked", counts()
        ui.tag_redraw()
        return 0.1
    now = counts()
    if now[0] == scan["before"][0]:  # not redrawn yet
        ui.tag_redraw()
        return 0.1
    if now[1] > scan["before"][1]:
        out["watch_header_y"] = scan["y"]
        out["t"]["watch_open"] = time.time() - state["t0"]
        return start(win, v3d, ui)
    scan["steps"] += 1
    if scan["steps"] > 60:
        raise RuntimeError("the Watch a Run header was never found")
    if now[2] > scan["before"][2]:
        scan["examples_at"] = scan["y"]
    else:
        scan["y"] += 15 if scan["y"] == scan.get("examples_at") else 5
    click(win, ui.x + 40, scan["y"])
    scan["phase"] = "clicked"
    return 0.1


def start(win, v3d, ui):
    settings().watch_address = endpoint
    with bpy.context.temp_override(window=win, area=v3d, region=ui):
        out["start"] = sorted(bpy.ops.autosim.watch_start())
    out["timer"] = bpy.app.timers.is_registered(watch_module().watch_timer)
    open(ready_path, "w").close()
    out["t"]["ready"] = time.time() - state["t0"]
    state["t_ready"] = time.time()
    bpy.app.timers.register(guarded(until_final), first_interval=0.2, persistent=True)
    return None


def until_final():
    # No event, no forced redraw: the add-on's timer reads and tags the sidebar for redraw.
    s = settings()
    if s.watch_final and seen["watch"] and seen["watch"][-1] == s.watch_messages:
        win, v3d, _ = areas()
        out["t"]["final"] = time.time() - state["t0"]
        return report(win, v3d, region(v3d, "UI"))
    if time.time() - state["t_ready"] > 60:
        raise RuntimeError(f"no final update shown: {s.watch_messages} updates, "
                           f"drawn {seen['watch'][-5:]}, error {s.watch_error!r}")
    return 0.2


class Widths:  # stands in for the watch panel's layout: the pixels each label gets
    def __init__(self, width, found, parts=None):
        self.width, self.found, self.parts = width, found, parts

    def _slot(self):
        return self.parts.pop(0) if self.parts and len(self.parts) > 1 else (
            self.parts[0] if self.parts else self.width)

    def column(self, **kw):
        return Widths(self._slot(), self.found)

    row = column

    def box(self):
        return Widths(self._slot() - 10, self.found)

    def split(self, factor=0.5, **kw):
        w = self._slot()
        return Widths(w, self.found, [factor * w, (1 - factor) * w])

    def label(self, text="", icon="NONE"):
        self.found.append([text, icon != "NONE", self._slot()])

    def operator(self, idname, text=None, icon="NONE", **kw):
        mod, name = idname.split(".")
        rna = getattr(getattr(bpy.ops, mod), name).get_rna_type()
        self.label(text=rna.name if text is None else text, icon=icon)

    def prop(self, data, name, **kw):  # use_property_split: the name on 40%
        self.found.append([data.bl_rna.properties[name].name, False, 0.4 * self._slot()])


def too_wide(win, v3d, ui):
    # Labels Blender would clip: the sub-panel's layout is the sidebar less its tab strip and
    # margins (56 px at scale 1, measured on a screenshot); a label needs its text, its icon
    # and ~10 px of padding.
    import blf

    scale = bpy.context.preferences.system.ui_scale
    found = []
    panel = type("Panel", (), {"layout": Widths(ui.width - 56 * scale, found)})()
    with bpy.context.temp_override(window=win, area=v3d, region=ui):
        bpy.types.AUTOSIM_PT_watch.draw._draw_funcs[0](panel, bpy.context)  # not the counter
    blf.size(0, bpy.context.preferences.ui_styles[0].widget.points * scale)
    need = [[t, blf.dimensions(0, t)[0] + (28 if icon else 10) * scale, w] for t, icon, w in found]
    return [[t, round(n), round(w)] for t, n, w in need if n > w]


def report(win, v3d, ui):
    w, s = watch_module(), settings()
    out["shown"] = {k: getattr(s, "watch_" + k) for k in (
        "run", "scene", "metric_name", "iteration", "images", "metric", "has_metric", "final",
        "messages", "shown", "error", "endpoint", "running")}
    out["history"] = w.history()
    out["params_text"] = w.params_text()
    with bpy.context.temp_override(window=win, area=v3d, region=ui):
        out["spark_width"] = sys.modules["autosim.ui"]._spark_width(bpy.context)
    out["sparkline"] = w.sparkline(w.history(), out["spark_width"])
    out["blocks"] = w.BLOCKS
    out["drawn_updates"] = sorted(set(seen["watch"]))
    # every state the panel can be in, at this sidebar's width
    out["too_wide"] = {"TEXT": too_wide(win, v3d, ui)}
    keep = {k: getattr(s, k) for k in ("watch_shown", "watch_messages", "watch_running",
                                       "watch_error")}
    for name, values in (("PANEL", {"watch_shown": "PANEL"}),
                         ("no space yet", {"watch_shown": "WAITING"}),
                         ("no update yet", {"watch_messages": 0}),
                         ("another scene", {"watch_running": False}),
                         ("error", {"watch_error": "watch stopped: Operation cannot be "
                                                   "accomplished in current state"})):
        for k, v in values.items():
            setattr(s, k, v)
        out["too_wide"][name] = too_wide(win, v3d, ui)
        for k, v in keep.items():
            setattr(s, k, v)
    # scroll the sidebar to its end (the panel is taller than the window) and shoot
    for _ in range(40):
        win.event_simulate(type="WHEELDOWNMOUSE", value="PRESS", x=ui.x + 100,
                           y=ui.y + ui.height - 60)
    bpy.app.timers.register(guarded(lambda: stop_and_new(win, v3d, ui)), first_interval=0.5,
                            persistent=True)
    return None


def stop_and_new(win, v3d, ui):
    shoot(win, v3d, ui)
    w, s = watch_module(), settings()
    with bpy.context.temp_override(window=win, area=v3d, region=ui):
        out["stop"] = sorted(bpy.ops.autosim.watch_stop())
    redraw(win, v3d)
    out["after_stop"] = [w.watching(), bpy.app.timers.is_registered(w.watch_timer),
                         s.watch_running]
    with bpy.context.temp_override(window=win, area=v3d, region=ui):  # again, then File > New
        out["restart"] = sorted(bpy.ops.autosim.watch_start())
        bpy.ops.wm.read_homefile()
    bpy.app.timers.register(guarded(after_new), first_interval=0.5, persistent=True)
    return None


def after_new():
    w = watch_module()
    win, v3d, _ = areas()
    redraw(win, v3d)
    out["after_new"] = [w.watching(), bpy.app.timers.is_registered(w.watch_timer),
                        hasattr(bpy.types, "AUTOSIM_PT_watch")]
    out["t"]["end"] = time.time() - state["t0"]
    finish()
    return None


try:
    setup()
except Exception:
    bail()
"""


def _free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def _toy_run(run_dir: Path, endpoint: str) -> None:
    """`autosim optimize` of the toy scene (20 iterations), publishing on `endpoint`."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "optimizer.cli", "optimize", "--scene", "toy",
                           "--budget-images", "1280", "--k", "64", "--device", "cpu",
                           "--out", str(run_dir), "--no-progress", "--publish", endpoint],
                          capture_output=True, text=True, env=env, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]


def _numbers(text: str) -> list[float]:
    return [float(v) for v in re.findall(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", text)]


def _sparkline_heights(gray: np.ndarray, n: int) -> list[float]:
    """The drawn height of each of the n blocks of the sparkline in a sidebar crop: they stand
    on one baseline, the longest run of bright pixels of any row of the panels (x 8-199)."""
    bright = gray[:, 8:199] > 120
    runs = []
    for y, row in enumerate(bright):
        edges = np.flatnonzero(np.diff(np.r_[0, row.astype(np.int8), 0]))
        runs += [(int(e - b), y, int(b)) for b, e in zip(edges[::2], edges[1::2])]
    length, y, x = max(runs)
    assert length >= 4 * n, (length, n)  # blocks of a few pixels each, side by side
    height = [int(np.argmin(bright[y::-1, c])) for c in range(x, x + length)]
    part = length / n
    return [float(np.median(height[int(i * part) + 1:int((i + 1) * part) - 1] or [0]))
            for i in range(n)]


@pytest.mark.slow
def test_watch_a_run_follows_a_toy_run_in_a_real_window(tmp_path):
    from optimizer.run import read_metrics
    from protocol.space import ParameterSpace

    endpoint, ready = _free_endpoint(), tmp_path / "ready"
    proc = gui.launch(tmp_path, _SCRIPT, endpoint, str(ready))
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if ready.exists():
            _toy_run(tmp_path / "run", endpoint)
        out, _ = gui.wait(proc, tmp_path, max(1.0, deadline - time.monotonic()))
    finally:
        gui.kill(proc)
    assert out["start"] == ["FINISHED"] and out["timer"] is True, out
    records = read_metrics(tmp_path / "run")
    last, shown = records[-1], out["shown"]
    assert (shown["run"], shown["scene"], shown["metric_name"]) == ("run", "toy", "accuracy")
    assert (shown["iteration"], shown["images"], shown["messages"]) == (
        last["iteration"], last["images_rendered"], len(records))
    assert shown["has_metric"] and shown["final"] and shown["running"]
    assert shown["metric"] == pytest.approx(last["val_metric"], rel=1e-6)
    assert (shown["shown"], shown["error"], shown["endpoint"]) == ("TEXT", "", endpoint)
    assert out["history"] == [[r["images_rendered"], pytest.approx(r["val_metric"], rel=1e-9)]
                              for r in records]
    # the panel redrew while the run went on, no event sent, and last showed the last update
    assert len(out["drawn_updates"]) >= 2 and out["drawn_updates"][-1] == len(records)
    # the rows show the last published psi: per parameter, its probabilities or mean ± std
    space = ParameterSpace.from_json((tmp_path / "run" / "final_space.json").read_text())
    space = space.with_psi(np.asarray(last["psi"]))
    rows, heads = out["params_text"], [i for i, (_, v) in enumerate(out["params_text"])
                                       if v is None]
    assert [rows[i][0].split(" ")[0] for i in heads] == space.names
    for i, j, p in zip(heads, heads[1:] + [len(rows)], space.params):
        s = p.summary()
        want = list(s["probs"].values()) if "probs" in s else [
            v for pair in zip(s["mean"], s["std"]) for v in pair]
        got = _numbers(" ".join(value for _, value in rows[i + 1:j]))
        assert got == pytest.approx(want, rel=5e-3, abs=5e-3), rows[i:j]
    # nothing clipped at the default sidebar width, in any state of the panel
    assert out["sidebar"][2] == 229
    assert out["too_wide"] == {k: [] for k in out["too_wide"]}, out["too_wide"]
    assert len(out["sparkline"]) == min(len(records), out["spark_width"])
    assert out["stop"] == ["FINISHED"] and out["after_stop"] == [False, False, False]
    assert out["restart"] == ["FINISHED"] and out["after_new"] == [False, False, True]

    crop = gui.sidebar_crop(tmp_path, out)
    crop.save(tmp_path / "watch.png", optimize=True)
    gui.keep(crop, "AUTOSIM_WATCH_PNG")
    gray = np.asarray(crop.convert("L"), dtype=np.int32)
    lines = np.flatnonzero(np.diff(np.r_[0, (gray[:, 8:199] > 120).any(axis=1), 0]) == 1)
    assert len(lines) >= 25, len(lines)  # rows of text: the panel's labels and values
    # the sparkline drew in the UI font: blocks on one baseline, as tall as their levels
    levels = [out["blocks"].index(c) for c in out["sparkline"]]
    heights = _sparkline_heights(gray, len(levels))
    for a_, b_ in zip(*np.triu_indices(len(levels), 1)):
        if levels[a_] != levels[b_]:
            assert (levels[a_] < levels[b_]) == (heights[a_] < heights[b_]), (levels, heights)
