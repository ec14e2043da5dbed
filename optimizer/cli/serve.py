"""`autosim serve`: a render server in this process (the bpy module)."""

from __future__ import annotations

import argparse

from optimizer.cli.base import Command
from optimizer.cli.options import scene_ref


class ServeCommand(Command):
    name = "serve"
    help = "run a render server in this process (bpy module)"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--scene", default="clevr", help="built-in example scene (default clevr)")
        p.add_argument("--blend", help="serve this .blend's autosim bindings (not --scene)")
        p.add_argument("--bind", default="tcp://127.0.0.1:5555", metavar="tcp://HOST:PORT",
                       help="where to listen (default tcp://127.0.0.1:5555; port * = any free "
                       "one, printed on the AUTOSIM_READY line)")
        p.add_argument("--connect", metavar="tcp://HOST:PORT",
                       help="join an optimizer's --listen address instead of binding")
        p.add_argument("--heartbeat-s", type=float, default=2.0, metavar="S",
                       help="with --connect: beat to the optimizer every S seconds (default "
                       "2; keep it at the optimizer's --heartbeat-s); ignored with --bind")
        p.add_argument("--max-renders", type=int, default=0, metavar="N",
                       help="exit after N images so a supervisor restarts a fresh process")
        p.add_argument("--threads", type=int, default=0, metavar="N",
                       help="Cycles render threads (default 0 = all cores)")
        p.add_argument("--params", metavar="SPACE.json",
                       help="parameter-space JSON to start from (default: the scene's)")
        p.add_argument("--curve", metavar="DIR", help="CURVE key folder (`autosim keys`): "
                       "only its authorized clients get answers; required off loopback")
        p.add_argument("--max-message-mb", type=float, default=256.0, metavar="MB",
                       help="largest request accepted, MiB (default 256)")

    def run(self, args: argparse.Namespace) -> int:
        from blender_addon import serve

        ref = scene_ref(args, rendered=True)
        argv = (["--blend", ref.blend] if ref.blend else ["--scene", ref.scene]) + [
            "--bind", args.bind, "--threads", str(args.threads),
            "--max-message-mb", str(args.max_message_mb)]
        if args.connect:
            argv += ["--connect", args.connect, "--heartbeat-s", str(args.heartbeat_s)]
        if args.max_renders:
            argv += ["--max-renders", str(args.max_renders)]
        if args.curve:
            argv += ["--curve", args.curve]
        if args.params:
            argv += ["--params", args.params]
        return serve.main(argv)
