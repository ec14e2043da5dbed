"""Options several commands share, each declared once; the typed values come back from
`simulator_options`, `scene_ref` and `method_options` (flags derived from the declarations)."""

from __future__ import annotations

import argparse
from typing import Any

from optimizer.scene_ref import SceneRef
from optimizer.session import SimulatorOptions

# (option, argparse keywords): every method option; its flag is --option-with-dashes.
METHOD_FLAGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("approx", {"choices": ("quadratic", "approx_quadratic", "linear", "no_val"),
                "help": "Table 1 approximation (autosimulate; default quadratic)"}),
    ("k", {"type": int, "help": "latents rendered per iteration (autosimulate); psi samples "
           "per policy step (reinforce)"}),
    ("epochs", {"type": int, "help": "fine-tuning epochs per iteration (epsilon)"}),
    ("batch_size", {"type": int}),
    ("lr_theta", {"type": float, "help": "task-model learning rate"}),
    ("lr_psi", {"type": float, "help": "simulator-parameter learning rate"}),
    ("damping", {"type": float, "help": "lambda in (H + lambda I)"}),
    ("cg_iters", {"type": int}),
    ("cg_rtol", {"type": float}),
    ("hessian", {"choices": ("head", "all"), "help": "parameters in the local quadratic "
                 "model: the head only (fast) or all"}),
    ("hessian_subsample", {"type": int, "help": "samples in the Hessian (0 = all K)"}),
    ("val_batch", {"type": int, "help": "validation samples for g_val (0 = all)"}),
    ("warmup", {"type": int, "help": "autosimulate: iterations that fine-tune theta before "
                "psi moves (default 0; the placement example's own: 15)"}),
    ("replay", {"type": int, "help": "autosimulate: reuse the samples of the last N "
                "iterations in the hypergradient, importance-weighted (0 = this step's only)"}),
    ("order", {"choices": ("paper", "fresh"), "help": "autosimulate: hypergradient after "
               "fine-tuning on the new samples (paper, Algorithm 1) or before, on samples "
               "theta has not seen (fresh)"}),
    ("normalise", {"action": "store_true", "default": None, "help": "autosimulate: divide "
                   "each sample's grad l . v by its gradient norm"}),
    ("sampling", {"choices": ("iid", "stratified", "antithetic", "paired"),
                  "help": "autosimulate: latents i.i.d., Latin-hypercube stratified, in "
                  "antithetic pairs (free normals mirrored, the rest shared) or paired (the "
                  "fixed parameters shared, the free ones drawn per row)"}),
    ("active_only", {"action": argparse.BooleanOptionalAction, "default": None,
                     "help": "autosimulate: drop the score terms of parameters a render does "
                     "not use (the space's active_if; unbiased)"}),
    ("psi_optimizer", {"choices": ("adam", "natural"), "help": "autosimulate: how psi steps: "
                       "Adam on lr_psi (the paper's) or natural gradient bounded by --kl-step"}),
    ("kl_step", {"type": float, "help": "autosimulate, natural: KL(q_old || q_new) of a step "
                 "when recent hypergradients agree (default 0.05)"}),
    ("psi_momentum", {"type": float, "help": "autosimulate, natural: decay of the gradient "
                      "averages (default 0.9)"}),
    ("shrink", {"type": float, "help": "autosimulate: scale each psi entry's step by "
                "max(0, 1 - C Var(m) / m^2), m its average hypergradient: entries without "
                "evidence stop drifting (default 0: off)"}),
    ("m", {"type": int, "help": "images per objective evaluation (baselines)"}),
    ("sigma2", {"type": float, "help": "REINFORCE policy variance (default 0.05)"}),
    ("lr_policy", {"type": float, "help": "REINFORCE policy learning rate"}),
    ("ema", {"type": float, "help": "REINFORCE baseline: weight on the old average"}),
    ("retain", {"action": "store_true", "default": None, "help": "REINFORCE: keep and "
                "fine-tune the task model instead of from scratch"}),
    ("init_points", {"type": int, "help": "bayesopt: random points before the GP"}),
    ("acq", {"choices": ("ei", "ucb"), "help": "bayesopt acquisition function"}),
    ("radius", {"type": float, "help": "bayesopt/random: box half-width around psi0"}),
    ("log_std_radius", {"type": float, "help": "bayesopt/random: the same for log-stds"}),
)
METHOD_OPTIONS = tuple(name for name, _ in METHOD_FLAGS)


def add_method_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("method options (defaults: the method's, then the scene's own)")
    for name, kw in METHOD_FLAGS:
        g.add_argument("--" + name.replace("_", "-"), dest=name, **kw)


def method_options(args: argparse.Namespace) -> dict[str, Any]:
    """The method options given on the command line (the scene's own fill the rest)."""
    return {k: getattr(args, k) for k in METHOD_OPTIONS if getattr(args, k, None) is not None}


def add_scene_options(p: argparse.ArgumentParser, default: str, *, tasks: tuple[str, ...],
                      what: str = "") -> None:
    p.add_argument("--scene", default=default, help=what or "a built-in example scene")
    p.add_argument("--blend", help="your own .blend with autosim bindings (instead of "
                   "--scene); local servers open it")
    p.add_argument("--task", choices=tasks, help="the task model (default: the scene's own; "
                   "a .blend without one: segmentation)")


def scene_ref(args: argparse.Namespace, *, rendered: bool = False) -> SceneRef:
    return SceneRef.from_flags(args.scene, getattr(args, "blend", None),
                               getattr(args, "task", None), rendered=rendered)


_SIMULATOR = SimulatorOptions()


def add_simulator_options(p: argparse.ArgumentParser) -> None:
    """Where images come from. Defaults are None here so a resume can tell a flag given again
    from one left out (SimulatorOptions holds the real defaults)."""
    p.add_argument("--server", action="append", default=None, metavar="tcp://HOST:PORT",
                   help="use this running render server (repeatable); default: start local ones")
    p.add_argument("--local-servers", type=int, metavar="N", help="local bpy render servers "
                   f"to start when no --server is given (default {_SIMULATOR.local_servers})")
    p.add_argument("--threads", type=int, help="Cycles threads per local server (default 0 = "
                   "all cores)")
    p.add_argument("--timeout", type=float, metavar="S", help="seconds to wait for a render "
                   f"server before giving up (default {_SIMULATOR.timeout:g}); with "
                   "heartbeats: for its next finished image")
    p.add_argument("--listen", metavar="tcp://ADDR:PORT",
                   help="let render servers join (`autosim serve --connect`) at any time, "
                   "instead of --server; off loopback it needs --curve (this side is then the "
                   "CURVE server: server.key_secret + authorized/)")
    p.add_argument("--heartbeat-s", type=float, metavar="S",
                   help="with --server (or local servers): ping each server's heartbeat "
                   "socket every S s; with --listen: the beat period expected of joined "
                   "servers (their `serve --connect --heartbeat-s`). 3 periods without a beat "
                   "(a killed or hung server) drop it and its work goes to the others "
                   f"(default {_SIMULATOR.heartbeat_s:g}; 0 = off, not with --listen)")
    p.add_argument("--curve", metavar="DIR", help="CURVE key folder (`autosim keys`) to "
                   "authenticate to --server render servers (local ones use it too)")
    p.add_argument("--max-renders", type=int, metavar="N",
                   help="local servers: each exits after N images and a fresh one takes its "
                   "place (bounds Blender's memory growth; 0 = never). Servers you start "
                   "take it themselves: `autosim serve --max-renders N`")


def simulator_options(args: argparse.Namespace,
                      base: SimulatorOptions | None = None) -> SimulatorOptions:
    """The flags given, over `base` (a resumed run's saved options) or the defaults; a
    --server or --listen given replaces the saved topology."""
    import dataclasses

    base = base or SimulatorOptions()
    if args.server or args.listen:
        base = dataclasses.replace(base, server=(), listen=None, max_renders=0)
    return base.replace(
        server=tuple(args.server) if args.server else None, listen=args.listen,
        local_servers=args.local_servers, threads=args.threads, timeout=args.timeout,
        heartbeat_s=args.heartbeat_s, curve=args.curve,
        max_renders=getattr(args, "max_renders", None))


def add_publish_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--publish", metavar="tcp://ADDR:PORT",
                   help="publish every psi update and the metric for watchers (the add-on's "
                   "Watch a run); off loopback only with --curve DIR")
