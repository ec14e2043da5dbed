"""The render server inside an interactive Blender session, and the panel's view of it.

A blender_addon.server.RenderServer serves what the panel shows (source.session: the file's
bindings, or a built-in example built this session) through source.PanelBackend, which
renders without changing the artist's render settings. Blender's UI runs on the one Python
thread, so instead of a blocking loop a bpy.app.timers function (server_timer) calls
`server.step(timeout_ms=0)` every TIMER_INTERVAL seconds: the UI never blocks on the socket.
Timers never fire headless, where `server_timer()` can be called by hand (tests) and
`serve.py` runs the blocking loop instead.

set_params from an optimizer rewrites the panel's properties (the artist watches the
distributions move, and a file's description follows: source.save_edits); an artist's edit
while serving installs the edited distribution on the server as a new psi generation
(push_edit, an EDIT_HOOK that operators.register() installs). The status lines: who is
connected (cleared when its last connection closes), the validation metric with its name,
distribution updates, requests and images of this run (a new optimizer's hello resets them).
The server state below is module-global: one server per Blender session.
"""

import sys

import bpy

from protocol.space import SpaceError

from . import properties as P
from . import render, source
from .preferences import get_preferences

TIMER_INTERVAL = 0.05  # seconds between socket polls in the GUI

_server = None        # the running RenderServer
_server_scene = ""    # name of the bpy scene it serves
_synced_requests = -1


def _log(msg: str) -> None:
    print(f"[autosim] {msg}", file=sys.stderr, flush=True)


def running_server():
    return _server


def _server_scene_obj():
    return bpy.data.scenes.get(_server_scene) if _server_scene else None


def _server_settings():
    scene = _server_scene_obj()
    return scene.autosim if scene is not None else None


def _tag_redraw() -> None:
    wm = bpy.context.window_manager
    for win in (wm.windows if wm else ()):
        for area in win.screen.areas:
            if area.type in ("VIEW_3D", "PROPERTIES", "IMAGE_EDITOR"):
                area.tag_redraw()


def _sync_status(state) -> None:
    """Show the server's state in the panel; the distributions when psi changed."""
    global _synced_requests
    settings = _server_settings()
    if settings is None:
        return
    if state.generation != settings.server_generation:
        P.space_to_props(state.space, settings)
        source.save_edits(_server_scene_obj())
    vm = state.metrics.get("val_metric")
    others = ", ".join(f"{k} {v:.4g}" for k, v in sorted(state.metrics.items())
                       if k != "val_metric")
    for attr, value in (
            ("server_generation", state.generation), ("server_client", state.client),
            ("has_val_metric", vm is not None), ("val_metric", 0.0 if vm is None else vm),
            ("metric_name", state.metric_name), ("metrics_text", others),
            ("server_updates", state.updates),
            ("server_requests", state.requests), ("server_images", state.images),
            ("last_error", state.last_error)):
        render.assign(settings, attr, value)  # only what changed: no needless UI updates
    _synced_requests = state.requests
    _tag_redraw()


def push_edit(scene) -> None:
    """EDIT_HOOK: an artist's edit becomes the server's psi (a new generation)."""
    srv = _server
    if srv is None or scene.name != _server_scene:
        return
    try:
        srv.state.space = P.current_space(scene.autosim)
    except SpaceError as exc:
        scene.autosim.last_error = f"edit not sent: {exc}"
        return
    srv.state.generation += 1
    scene.autosim.server_generation = srv.state.generation


def start_server(scene, address: str = "") -> str:
    """Serve what the panel shows on `address` (else the panel's, else the preferences');
    returns the bound endpoint. Raises RuntimeError (nothing to serve / already running),
    SceneError (a binding does not resolve), OSError (bind)."""
    global _server, _server_scene, _synced_requests
    from . import ensure_zmq
    from .server import RenderServer

    if _server is not None:
        raise RuntimeError(f"a render server is already running at {_server.endpoint}")
    settings = scene.autosim
    sess = source.session(scene)
    address = address or settings.address or get_preferences().bind_address
    ensure_zmq()
    backend = source.PanelBackend(sess, P.current_space(settings))
    server = RenderServer(backend, on_change=_sync_status, log=_log, track_peers=True)
    endpoint = server.bind(address, curve=bpy.path.abspath(get_preferences().curve_dir) or None)
    _server, _server_scene, _synced_requests = server, scene.name, -1
    settings.server_running, settings.server_endpoint = True, endpoint
    settings.last_error = settings.server_client = settings.metric_name = ""
    settings.server_updates = settings.server_requests = settings.server_images = 0
    settings.has_val_metric = False
    settings.server_generation = -1  # forces the first sync to show the server's psi
    _sync_status(server.state)
    if not bpy.app.timers.is_registered(server_timer):
        bpy.app.timers.register(server_timer, first_interval=TIMER_INTERVAL, persistent=True)
    _log(f"render server on {endpoint}")
    return endpoint


def stop_server() -> bool:
    """Unregister the timer, close the socket; True if a server was running."""
    global _server
    if bpy.app.timers.is_registered(server_timer):
        bpy.app.timers.unregister(server_timer)
    srv, _server = _server, None
    if srv is None:
        return False
    srv.close()
    settings = _server_settings()
    if settings is not None:
        settings.server_running, settings.server_endpoint = False, ""
        settings.server_client = ""  # nobody is connected to a stopped server
    _tag_redraw()
    return True


def _synced_client() -> str:
    settings = _server_settings()
    return settings.server_client if settings is not None else ""


def server_timer():
    """One non-blocking step of the GUI server; the interval to the next call, None to stop."""
    srv = _server
    if srv is None:
        return None
    try:
        alive = srv.step(timeout_ms=0, max_messages=4)
    except Exception as exc:  # the socket itself failed: stop rather than spin
        _log(f"render server stopped: {type(exc).__name__}: {exc}")
        srv.state.last_error = f"server stopped: {exc}"
        alive = False
    if srv.state.requests != _synced_requests or srv.state.client != _synced_client():
        _sync_status(srv.state)
    if not alive:  # a client sent `shutdown`
        stop_server()
        return None
    return TIMER_INTERVAL
