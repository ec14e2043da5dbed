"""What each `autosim` subcommand does; argument parsing lives in cli.py."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from optimizer.dataset_render import render_dataset  # noqa: F401  (bench, demo use it here)
from optimizer.errors import CliError
from optimizer.simulators.farm import FarmSimulator
from optimizer.simulators.local_servers import LocalServers
from optimizer.simulators.remote import RemoteSimulator
from protocol.space import ParameterSpace, SpaceError


def load_space_file(path: str) -> ParameterSpace:
    try:
        return ParameterSpace.from_json(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"cannot read parameter file {path}: {exc.strerror}") from exc
    except SpaceError as exc:
        raise CliError(f"{path}: {exc}") from exc


def _check_scene(scene: str) -> None:
    from blender_addon.scenes import SCENE_NAMES

    if scene not in SCENE_NAMES:
        raise CliError(f"unknown scene {scene!r}; known: {', '.join(SCENE_NAMES)}")


BLEND = "blend"  # the scene key of a user's bound .blend (--blend): no built-in defaults


def blend_path(args: argparse.Namespace) -> str | None:
    """--blend as an absolute path, checked to exist (None without --blend)."""
    blend = getattr(args, "blend", None)
    if not blend:
        return None
    path = Path(blend)
    if not path.is_file():
        raise CliError(f"--blend {blend}: no such file")
    if path.suffix.lower() != ".blend":
        raise CliError(f"--blend {blend}: expected a .blend file")
    return str(path.resolve())


@contextlib.contextmanager
def open_simulator(args: argparse.Namespace, scene: str,
                   blend: str | None = None) -> Iterator[RemoteSimulator]:
    """Running servers from --server, else local bpy servers started (and stopped) here,
    serving the built-in `scene` or, given `blend` (scene BLEND), that bound .blend."""
    blend = blend or (blend_path(args) if scene == BLEND else None)
    curve = getattr(args, "curve", None)
    if curve is not None and not Path(curve).is_dir():
        raise CliError(f"--curve {curve}: no such key folder (make one with autosim keys)")
    max_renders = int(getattr(args, "max_renders", 0) or 0)
    if max_renders < 0:
        raise CliError(f"--max-renders must be >= 0, got {max_renders}")
    if max_renders and (args.server or getattr(args, "listen", None)):
        raise CliError("--max-renders recycles local servers; servers you start take it "
                       "themselves (`autosim serve --max-renders N`)")
    if getattr(args, "listen", None):
        if args.server:
            raise CliError("--listen and --server: choose one (servers join a --listen "
                           "address with `autosim serve --connect`)")
        print(f"autosim: waiting for render servers on {args.listen} (`autosim serve "
              f"--connect {args.listen}`)", file=sys.stderr, flush=True)
        try:
            farm = FarmSimulator(args.listen, curve=curve, timeout_s=args.timeout,
                                 heartbeat_s=_heartbeat(args) or 2.0,
                                 join_timeout_s=args.timeout, log=_stderr)
        except OSError as exc:
            raise CliError(f"--listen: {exc}") from None
        with farm as sim:
            if scene != BLEND and sim.scene != scene:
                raise CliError(f"joined server(s) serve scene {sim.scene!r}, not {scene!r}")
            yield sim
        return
    if args.server:
        with _remote(args.server, args.timeout, curve, _heartbeat(args)) as sim:
            if scene != BLEND and sim.scene != scene:
                raise CliError(f"server(s) {args.server} serve scene {sim.scene!r}, not {scene!r}")
            yield sim
        return
    if blend is None:
        _check_scene(scene)
    if args.local_servers < 1:
        raise CliError(f"--local-servers must be at least 1, got {args.local_servers}")
    if max_renders:
        with _local_farm(args, scene, blend, curve, max_renders) as sim:
            yield sim
        return
    with LocalServers(scene, args.local_servers, threads=args.threads,
                      blend=blend, curve=curve) as endpoints:
        with _remote(endpoints, args.timeout, curve, _heartbeat(args)) as sim:
            yield sim


@contextlib.contextmanager
def _local_farm(args: argparse.Namespace, scene: str, blend: str | None, curve: str | None,
                max_renders: int) -> Iterator[FarmSimulator]:
    """Local servers that recycle: they join a loopback listener (protocol v2), so the one
    that replaces a recycled or crashed server is taken into the running optimisation."""
    heartbeat_s = _heartbeat(args) or 2.0
    try:
        farm = FarmSimulator("tcp://127.0.0.1:*", curve=curve, timeout_s=args.timeout,
                             heartbeat_s=heartbeat_s, min_servers=0)
    except OSError as exc:
        raise CliError(f"local servers: {exc}") from None
    servers = LocalServers(scene, args.local_servers, threads=args.threads, blend=blend,
                           curve=curve, connect=farm.endpoint, max_renders=max_renders,
                           heartbeat_s=heartbeat_s, log=_stderr)
    with farm as sim, servers:
        sim.wait_for_servers(args.local_servers, servers.startup_timeout_s)
        yield sim


def _stderr(msg: str) -> None:
    """Farm events (servers joining, dropped, restarted): what an operator wants to see."""
    print(f"autosim: {msg}", file=sys.stderr, flush=True)


def _heartbeat(args: argparse.Namespace) -> float:
    heartbeat_s = float(getattr(args, "heartbeat_s", 2.0))
    if not heartbeat_s >= 0:
        raise CliError(f"--heartbeat-s must be >= 0, got {heartbeat_s}")
    return heartbeat_s


def _remote(endpoints: list[str], timeout_s: float, curve: str | None,
            heartbeat_s: float = 2.0) -> RemoteSimulator:
    from protocol.curve import KeysError

    try:
        return RemoteSimulator(endpoints, timeout_s=timeout_s, curve=curve,
                               heartbeat_s=heartbeat_s)
    except KeysError as exc:
        raise CliError(f"--curve: {exc}") from None


def _target_space(sim: RemoteSimulator, params: str | None, preset: str | None) -> ParameterSpace:
    space = load_space_file(params) if params else sim.space
    if preset is None:
        preset = "validation" if not params and "validation" in space.presets else None
    if preset and preset != "none":
        try:
            space = space.preset(preset)
        except SpaceError as exc:
            raise CliError(str(exc)) from exc
    return space


def cmd_render(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise CliError(f"--n must be at least 1, got {args.n}")
    if args.chunk < 1:
        raise CliError(f"--chunk must be at least 1, got {args.chunk}")
    if not 8 <= args.size <= 2048:
        raise CliError(f"--size must be in [8, 2048], got {args.size}")
    scene = BLEND if blend_path(args) else args.scene
    with open_simulator(args, scene) as sim:
        space = _target_space(sim, args.params, args.preset)
        if space.psi_dim != sim.space.psi_dim:
            raise CliError(f"{args.params}: space does not match scene {sim.scene!r}")
        summary = render_dataset(sim, space, args.n, args.seed, args.size, Path(args.out),
                                 fmt=args.format, resume=args.resume, progress=args.progress,
                                 val_fraction=args.val_fraction, chunk=args.chunk,
                                 manifest=True)
    resumed = (f", {summary['resumed_from']} were already there"
               if summary["resumed_from"] else "")
    print(f"rendered {summary['rendered']} images of {sim.scene} to {args.out}{resumed} "
          f"({summary['images_per_s']:.1f} images/s)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from blender_addon import serve

    blend = blend_path(args)
    argv = (["--blend", blend] if blend else ["--scene", args.scene]) + [
        "--bind", args.bind, "--threads", str(args.threads),
        "--max-message-mb", str(args.max_message_mb)]
    if getattr(args, "connect", None):
        argv += ["--connect", args.connect, "--heartbeat-s", str(args.heartbeat_s)]
    if getattr(args, "max_renders", 0):
        argv += ["--max-renders", str(args.max_renders)]
    if args.curve:
        argv += ["--curve", args.curve]
    if args.params:
        argv += ["--params", args.params]
    return serve.main(argv)


def cmd_keys(args: argparse.Namespace) -> int:
    from protocol.curve import KeysError, generate

    try:
        root = generate(args.out)
    except KeysError as exc:
        raise CliError(str(exc)) from None
    print(f"wrote CURVE keys to {root}: servers use --curve {root} (server.key_secret, "
          f"authorized/), clients --curve {root} (client.key_secret, server.key); keep the "
          f"*.key_secret files private")
    return 0


def cmd_optimize(args: argparse.Namespace) -> int:
    from optimizer.optimize import cmd_optimize as run

    return run(args)


def cmd_bench(args: argparse.Namespace) -> int:
    from optimizer.bench import cmd_bench as run

    return run(args)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from optimizer.evaluate import cmd_evaluate as run

    return run(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from optimizer.demo import run_demo

    return run_demo(args)
