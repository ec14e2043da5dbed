"""Watch a run: the panel subscribes to an optimizer's `--publish` socket (optimizer/publish.py)
and shows psi moving and the metric curve, without being a render server.

A SUB socket (a CURVE client with the preferences' key folder when one is set) is polled by a
bpy.app.timers function (watch_timer) with NOBLOCK reads: the UI never waits on it. Timers
never fire headless, where tests call `watch_timer()` by hand. Each message: when the run's
parameter space has the panel's structure (same parameters, kinds, sizes, choices) the panel's
distributions show the run's psi, as a render server's set_params would (the file's stored
description is not rewritten: watching only looks); otherwise the run's parameters are shown
read-only as text rows. The last HISTORY (images, metric) points draw as a text sparkline.
Module-global state: one watcher per Blender session.
"""

import json
import sys
from collections import deque

import bpy

from . import properties as P
from .preferences import get_preferences

TOPIC = b"autosim.run"
VERSION = 1
TIMER_INTERVAL = 0.1
HISTORY = 200
MAX_PER_TICK = 64
BLOCKS = "▁▂▃▄▅▆▇█"

_ctx = None
_sock = None
_scene = ""
_run = None            # name of the run being shown
_space = None          # the run's ParameterSpace (from a message that carried it)
_history: deque = deque(maxlen=HISTORY)
_params_text: list[tuple[str, str | None]] = []


def _log(msg: str) -> None:
    print(f"[autosim] {msg}", file=sys.stderr, flush=True)


def watching() -> bool:
    return _sock is not None


def history() -> list[tuple[int, float]]:
    """The (images_rendered, metric) points kept, oldest first."""
    return list(_history)


def params_text() -> list[tuple[str, str | None]]:
    """The run's parameters as rows (when its space is not the panel's): see _describe."""
    return list(_params_text)


def sparkline(points, width: int = 32) -> str:
    """The metric values as unicode blocks, at most `width` of them (means of equal runs)."""
    values = [v for _, v in points if v is not None]
    if not values:
        return ""
    if len(values) > width:
        step = len(values) / width
        values = [sum(chunk) / len(chunk) for chunk in
                  (values[int(i * step):int((i + 1) * step)] or values[-1:]
                   for i in range(width))]
    lo, hi = min(values), max(values)
    span = hi - lo
    return "".join(BLOCKS[0 if span <= 0 else round((v - lo) / span * (len(BLOCKS) - 1))]
                   for v in values)


def _settings():
    scene = bpy.data.scenes.get(_scene) if _scene else None
    return scene.autosim if scene is not None else None


def _describe(space) -> list[tuple[str, str | None]]:
    """The run's parameters as rows that fit the sidebar: (name, None) heads each parameter,
    then (key, value) pairs: a probability per choice, mean ± std per component."""
    rows: list[tuple[str, str | None]] = []
    for p in space.params:
        rows.append((p.name + (" (fixed)" if p.fixed else ""), None))
        s = p.summary()
        if "probs" in s:
            rows += [(k, f"{v:.2f}") for k, v in s["probs"].items()]
        elif "mean" in s:
            mean, std = list(s["mean"]), list(s.get("std") or [])
            for i, m in enumerate(mean):
                key = f"[{i}]" if len(mean) > 1 else ""
                rows.append((key, _fmt(m) + (f" ± {_fmt(std[i])}" if i < len(std) else "")))
        else:
            rows += [(k, _fmt(v)) for k, v in s.items()]
    return rows


def _fmt(v) -> str:
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return f"{v:.3g}" if isinstance(v, float | int) else str(v)


def _apply(settings, msg: dict) -> None:
    """One decoded update into the panel's status, history and distributions."""
    global _run, _space
    from protocol.space import ParameterSpace

    if msg.get("run") != _run:  # a new run: forget the last one's curve and space
        _run, _space = msg.get("run"), None
        _history.clear()
    if "space" in msg:
        _space = ParameterSpace.from_dict(msg["space"])
    vm = msg.get("val_metric")
    _history.append((int(msg.get("images_rendered", 0)), None if vm is None else float(vm)))
    settings.watch_run = str(msg.get("run", ""))
    settings.watch_scene = str(msg.get("scene", ""))
    settings.watch_metric_name = str(msg.get("metric_name", ""))
    settings.watch_iteration = int(msg.get("iteration", 0))
    settings.watch_images = int(msg.get("images_rendered", 0))
    settings.watch_has_metric = vm is not None
    settings.watch_metric = 0.0 if vm is None else float(vm)
    settings.watch_final = bool(msg.get("final", False))
    settings.watch_messages += 1
    if _space is None:
        settings.watch_shown = "WAITING"
        return
    run_space = _space.with_psi(msg["psi"])
    if len(settings.params) and P._structure_matches(run_space, settings):
        base = P.base_space(settings)
        P.space_to_props(base.with_psi(run_space.psi), settings)
        settings.watch_shown = "PANEL"
        _params_text.clear()
    else:
        settings.watch_shown = "TEXT"
        _params_text[:] = _describe(run_space)


def _tag_redraw() -> None:
    from .live import _tag_redraw as redraw

    redraw()


def start_watch(scene, address: str = "") -> str:
    """Subscribe to a run's --publish address (else the panel's); returns it. Raises
    RuntimeError (already watching), KeysError (CURVE folder), zmq.ZMQError (address)."""
    global _ctx, _sock, _scene, _run, _space
    from . import ensure_zmq

    if _sock is not None:
        raise RuntimeError("already watching a run (Stop first)")
    zmq = ensure_zmq()
    settings = scene.autosim
    address = address or settings.watch_address
    keys = get_preferences().curve_dir
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 1000)
    try:
        if keys:
            from protocol.curve import secure_client

            secure_client(sock, bpy.path.abspath(keys))
        sock.setsockopt(zmq.SUBSCRIBE, TOPIC)
        sock.connect(address)
    except Exception:
        sock.close()
        ctx.term()
        raise
    _ctx, _sock, _scene, _run, _space = ctx, sock, scene.name, None, None
    _history.clear()
    _params_text.clear()
    settings.watch_running, settings.watch_endpoint = True, address
    settings.watch_run = settings.watch_scene = settings.watch_metric_name = ""
    settings.watch_error, settings.watch_shown = "", "WAITING"
    settings.watch_messages = settings.watch_iteration = settings.watch_images = 0
    settings.watch_has_metric = settings.watch_final = False
    if not bpy.app.timers.is_registered(watch_timer):
        bpy.app.timers.register(watch_timer, first_interval=TIMER_INTERVAL, persistent=True)
    _log(f"watching {address}")
    return address


def stop_watch() -> bool:
    """Unregister the timer and close the socket; True if a watcher was running."""
    global _ctx, _sock
    if bpy.app.timers.is_registered(watch_timer):
        bpy.app.timers.unregister(watch_timer)
    sock, ctx, _sock, _ctx = _sock, _ctx, None, None
    if sock is None:
        return False
    sock.close()
    ctx.term()
    settings = _settings()
    if settings is not None:
        settings.watch_running = False
    _tag_redraw()
    return True


def watch_timer():
    """Read what has arrived (never waits); the interval to the next call, None to stop."""
    import zmq

    sock, settings = _sock, _settings()
    if sock is None:
        return None
    if settings is None:  # the watched scene was deleted
        stop_watch()
        return None
    got = 0
    try:
        while got < MAX_PER_TICK:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            got += 1
            try:
                if len(frames) != 2 or frames[0] != TOPIC:
                    raise ValueError("not an autosim.run message")
                msg = json.loads(frames[1])
                if not isinstance(msg, dict) or msg.get("version") != VERSION:
                    raise ValueError(f"unknown version {msg.get('version')!r}"
                                     if isinstance(msg, dict) else "not a JSON object")
                _apply(settings, msg)
                settings.watch_error = ""
            except (ValueError, KeyError, TypeError) as exc:
                settings.watch_error = f"ignored a message: {exc}"[:300]
    except zmq.ZMQError as exc:
        settings.watch_error = f"watch stopped: {exc}"
        stop_watch()
        return None
    if got:
        _tag_redraw()
    return TIMER_INTERVAL
