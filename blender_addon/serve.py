"""Headless render server entry point.

    blender -b --factory-startup -P blender_addon/serve.py -- --scene clevr --bind tcp://127.0.0.1:5555
    python -m blender_addon.serve --scene clevr --bind tcp://127.0.0.1:5555

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

if __package__ in (None, ""):  # run as a script by `blender -P`: make the packages importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

READY = "AUTOSIM_READY"


def _args(argv: list[str]) -> argparse.Namespace:
    from blender_addon.scenes import SCENE_NAMES

    p = argparse.ArgumentParser(prog="autosim-serve", description="autosim render server")
    p.add_argument("--scene", default="clevr", choices=SCENE_NAMES)
    p.add_argument("--bind", default="tcp://127.0.0.1:5555",
                   help="ZeroMQ endpoint; 127.0.0.1 unless told otherwise; port * = any free")
    p.add_argument("--threads", type=int, default=0, help="Cycles threads (0 = all cores)")
    p.add_argument("--device", default="CPU", choices=("CPU", "AUTO"),
                   help="AUTO uses a GPU compute device when Blender finds one")
    p.add_argument("--params", help="parameter-space JSON to start from (default: the scene's)")
    p.add_argument("--quiet", action="store_true", help="no log lines on stderr")
    return p.parse_args(argv)


def _script_argv() -> list[str]:
    argv = sys.argv
    if "--" in argv:
        return argv[argv.index("--") + 1:]
    return [] if _inside_blender_binary() else argv[1:]


def _inside_blender_binary() -> bool:
    return os.path.basename(sys.argv[0]).lower().startswith("blender")


def _sigterm(_signum, _frame) -> None:
    raise KeyboardInterrupt


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
    backend = BpyBackend(args.scene, threads=args.threads, device=args.device, space=space)
    server = RenderServer(backend, log=log)
    try:
        endpoint = server.bind(args.bind)
    except OSError as exc:
        print(f"autosim-serve: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _sigterm)
    print(f"{READY} {json.dumps({'endpoint': endpoint, 'pid': os.getpid(), 'scene': args.scene})}",
          flush=True)
    log(f"serving scene {args.scene!r} on {endpoint}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log("interrupted")
    finally:
        server.close()
        backend.close()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
