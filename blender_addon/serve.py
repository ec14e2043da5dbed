"""Headless render server entry point.

    blender -b --factory-startup -P blender_addon/serve.py -- --scene clevr --bind tcp://127.0.0.1:5555
    python -m blender_addon.serve --scene clevr --bind tcp://127.0.0.1:5555
    blender -b my.blend -P blender_addon/serve.py -- --bind ...   (the open file's bindings)
    python -m blender_addon.serve --blend my.blend --bind ...

Prints one line `AUTOSIM_READY {"endpoint": ..., "pid": ...}` on stdout once it serves, so a
parent that asked for port `*` learns the real one. Stops on the `shutdown` message, Ctrl-C or
SIGTERM, closing its socket (timers are never involved headless, so nothing hangs at exit).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

if __package__ in (None, ""):  # run as a script by `blender -P`: make the packages importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

READY = "AUTOSIM_READY"


def _args(argv: list[str]) -> argparse.Namespace:
    from blender_addon.scenes import SCENE_NAMES

    p = argparse.ArgumentParser(prog="autosim-serve", description="autosim render server")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--scene", choices=SCENE_NAMES,
                      help="a built-in example scene (default: the open .blend's bindings if "
                      "it has them, else clevr)")
    what.add_argument("--blend", help="a .blend with autosim bindings to open and serve")
    p.add_argument("--bind", default="tcp://127.0.0.1:5555",
                   help="ZeroMQ endpoint; 127.0.0.1 unless told otherwise; port * = any free")
    p.add_argument("--connect", metavar="tcp://HOST:PORT",
                   help="join an optimizer listening here (`autosim optimize --listen`) "
                   "instead of binding; with --curve this side is the CURVE client "
                   "(client.key_secret + server.key)")
    p.add_argument("--heartbeat-s", type=float, default=2.0,
                   help="with --connect: beat to the optimizer every S seconds (default 2)")
    p.add_argument("--max-renders", type=int, default=0, metavar="N",
                   help="exit (status 0) after the request that brings this process to N "
                   "images, its reply marked `recycle`, so a supervisor starts a fresh one "
                   "(bounds Blender's memory growth over long runs; 0 = never)")
    p.add_argument("--threads", type=int, default=0, help="Cycles threads (0 = all cores)")
    p.add_argument("--device", default="CPU", choices=("CPU", "AUTO"),
                   help="AUTO uses a GPU compute device when Blender finds one")
    p.add_argument("--params", help="parameter-space JSON to start from (default: the scene's)")
    p.add_argument("--curve", metavar="DIR", help="CURVE key folder (`autosim keys`): only "
                   "authorized clients get answers; required on a non-loopback --bind")
    p.add_argument("--max-message-mb", type=float, default=256.0,
                   help="largest request accepted, MiB (default 256)")
    p.add_argument("--exit-with-parent", action="store_true",
                   help="stop (as on SIGTERM) once the process that started this one is gone, "
                   "e.g. an optimizer that was SIGKILLed and could not stop its local servers")
    p.add_argument("--quiet", action="store_true", help="no log lines on stderr")
    return p.parse_args(argv)


def _open_file_is_bound() -> bool:
    """Blender opened a saved .blend that carries an autosim description."""
    import bpy

    from blender_addon.bindings import TEXT_NAME

    return bool(bpy.data.filepath) and TEXT_NAME in bpy.data.texts


def _script_argv() -> list[str]:
    argv = sys.argv
    if "--" in argv:
        return argv[argv.index("--") + 1:]
    return [] if _inside_blender_binary() else argv[1:]


def _inside_blender_binary() -> bool:
    return os.path.basename(sys.argv[0]).lower().startswith("blender")


class _Stop:
    """Signal state. An exception raised while Cycles renders surfaces inside the render
    engine's Python callback, where Blender prints and swallows it; so during a render the
    handler only records the stop and _Interruptible raises once the image is done."""

    requested = False
    rendering = False


def _interrupt(signum, _frame) -> None:
    signal.signal(signum, signal.SIG_DFL)  # a second signal ends the process outright
    _Stop.requested = True
    if not _Stop.rendering:
        raise KeyboardInterrupt


class _Interruptible:
    """Backend wrapper: stops the server (KeyboardInterrupt) after the image in progress."""

    def __init__(self, backend) -> None:
        self._backend = backend

    def __getattr__(self, name: str):
        return getattr(self._backend, name)

    def render(self, latent, width: int, height: int):
        if _Stop.requested:
            raise KeyboardInterrupt
        _Stop.rendering = True
        try:
            result = self._backend.render(latent, width, height)
        finally:
            _Stop.rendering = False
        if _Stop.requested:
            raise KeyboardInterrupt
        return result


def _install_signal_handlers() -> dict:
    """SIGTERM and SIGINT stop the server cleanly (KeyboardInterrupt). Installed before the
    scene is built: in `blender -b` Blender's own SIGINT handler only sets a break flag and
    keeps running. Returns the previous handlers, for _restore_signal_handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    _Stop.requested = _Stop.rendering = False
    return {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}


def _watch_parent(log, period_s: float = 1.0) -> None:
    """Poll the parent pid from a daemon thread; when the process is re-parented (its parent
    died), SIGTERM itself, so the server stops the way a supervisor would stop it."""
    parent = os.getppid()

    def watch() -> None:
        import time

        while os.getppid() == parent:
            time.sleep(period_s)
        log(f"parent process {parent} is gone: stopping")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="autosim-parent-watch", daemon=True).start()


def _restore_signal_handlers(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def main(argv: list[str] | None = None) -> int:
    args = _args(_script_argv() if argv is None else argv)
    from blender_addon.backend import BpyBackend
    from blender_addon.server import RenderServer
    from protocol.space import ParameterSpace, SpaceError

    def log(msg: str) -> None:
        if not args.quiet:
            print(f"[autosim-serve] {msg}", file=sys.stderr, flush=True)

    space = None
    if args.params:
        try:
            with open(args.params, encoding="utf-8") as fh:
                space = ParameterSpace.from_json(fh.read())
        except (OSError, SpaceError) as exc:
            print(f"autosim-serve: --params {args.params}: {exc}", file=sys.stderr)
            return 2
    from blender_addon.server import Limits
    from protocol.curve import is_loopback

    where = args.connect or args.bind
    if args.curve is None and not is_loopback(where):  # before any scene is built
        print(f"autosim-serve: refusing to serve {where} without authentication; make "
              f"keys with `autosim keys --out DIR` and pass --curve DIR (or bind 127.0.0.1)",
              file=sys.stderr)
        return 2
    if not args.max_message_mb > 0:
        print("autosim-serve: --max-message-mb must be > 0", file=sys.stderr)
        return 2
    limits = Limits(max_message_bytes=int(args.max_message_mb * 1024 * 1024))
    blend = args.blend
    if blend is None and args.scene is None and _open_file_is_bound():
        blend = ""  # `blender -b my.blend -P serve.py`: serve the file Blender opened
    scene = args.scene or "clevr"
    previous_handlers = _install_signal_handlers()
    if args.exit_with_parent:
        _watch_parent(log)
    backend = server = None
    try:
        try:
            backend = BpyBackend(scene, blend=blend, threads=args.threads, device=args.device,
                                 space=space)
        except (ValueError, OSError) as exc:  # SceneError is a ValueError: names the binding
            print(f"autosim-serve: {args.blend or 'the open .blend'}: {exc}"
                  if blend is not None else f"autosim-serve: {exc}", file=sys.stderr)
            return 2
        scene = backend.scene
        server = RenderServer(_Interruptible(backend), log=log, limits=limits,
                              max_renders=max(args.max_renders, 0))
        try:
            if args.connect:
                endpoint = server.connect(args.connect, curve=args.curve,
                                          heartbeat_s=args.heartbeat_s)
            else:
                endpoint = server.bind(args.bind, curve=args.curve)
        except OSError as exc:
            print(f"autosim-serve: {exc}", file=sys.stderr)
            return 2
        ready = {"endpoint": endpoint, "pid": os.getpid(), "scene": scene}
        print(f"{READY} {json.dumps(ready)}", flush=True)
        log(f"serving scene {scene!r} on {endpoint}")
        server.serve_forever()
    except KeyboardInterrupt:
        log("interrupted")
    finally:
        if server is not None:
            server.close()
        if backend is not None:
            backend.close()
        _restore_signal_handlers(previous_handlers)
    log(f"stopped after {server.rendered_total if server else 0} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
