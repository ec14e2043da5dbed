"""Render-server benchmark: throughput, per-image overhead and memory growth (prints figures).

    python bench/render_server.py [--n-renders 1000] [--size 64] [--spp 4] [--batch 16]

One run, clevr scene, Cycles on all cores, the `samples` latent fixed to --spp so every loop
renders the same work:
  1. images/s through a `python -m blender_addon.serve` subprocess (a DEALER client sending
     render requests of --batch explicit latents, all four arrays returned) vs a bare
     in-process loop over the same latents (BpyBackend in this process), the two alternating
     chunk by chunk so background load hits both alike; target ratio >= 0.90;
  2. per-image extraction (the server's extract_s: EXR save/read-back + labels) and transfer
     (client round trip minus the server's summed render_s + extract_s, per image: protocol,
     scene apply, sockets); target extraction + transfer < 5 ms at 64 px;
  3. the server's RSS growth (VmRSS) from after --warmup renders to the end of --n-renders
     more; target < 20 MB.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# Importing bpy writes ~/.config/blender/<ver>; keep the benchmark (and its server) off $HOME.
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="autosim-bench-"))

import numpy as np  # noqa: E402

from blender_addon.scenes import space_dict  # noqa: E402
from protocol.space import ParameterSpace  # noqa: E402

SCENE = "clevr"
TARGET_RATIO = 0.90
TARGET_OVERHEAD_MS = 5.0
TARGET_RSS_MB = 20.0
RETURN = ["image", "mask", "instances", "boxes"]


def _args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-renders", type=int, default=1000,
                   help="measured renders per loop, after the warm-up (default 1000)")
    p.add_argument("--size", type=int, default=64, help="image width = height in px (64)")
    p.add_argument("--spp", type=int, default=4, help="Cycles samples per pixel (4)")
    p.add_argument("--batch", type=int, default=16, help="latents per render request (16)")
    p.add_argument("--warmup", type=int, default=50, help="warm-up renders per loop (50)")
    p.add_argument("--seed", type=int, default=0, help="seed of the latents")
    args = p.parse_args(argv)
    if min(args.n_renders, args.size, args.batch) < 1 or args.warmup < 0:
        p.error("--n-renders, --size and --batch must be >= 1, --warmup >= 0")
    return args


def _latents(n: int, spp: int, seed: int) -> tuple[ParameterSpace, np.ndarray]:
    space = ParameterSpace.from_dict(space_dict(SCENE))
    choices = next(p.choices for p in space.params if p.name == "samples")
    if str(spp) not in choices:
        sys.exit(f"--spp must be one of the scene's samples choices {list(choices)}, got {spp}")
    rows = space.sample(n, np.random.default_rng(seed))
    rows[:, space.latent_slices["samples"]] = choices.index(str(spp))
    return space, rows


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")


def run(args, space: ParameterSpace, latents: np.ndarray, threads: int) -> dict:
    """Server and bare loop interleaved chunk by chunk (same latents, alternating which goes
    first), so a load change on the machine hits both figures alike."""
    from blender_addon.backend import BpyBackend
    from optimizer.simulators.client import RenderClient
    from optimizer.simulators.local_servers import LocalServers

    named = [space.clip_latent(space.unpack_latent(row)) for row in latents]
    acc = dict.fromkeys(("srv_wall", "rtt", "render_s", "extract_s", "bare_wall",
                         "bare_render_s", "bare_extract_s"), 0.0)
    servers = LocalServers(SCENE, threads=threads)
    with servers as endpoints:
        pid = servers.procs[0].pid
        client = RenderClient(endpoints[0], timeout_s=300.0, name="bench")
        try:
            hello = client.request("hello", {"client": "bench/render_server.py"})
            backend = BpyBackend(SCENE, threads=threads, space=space, width=args.size,
                                 height=args.size)

            def through_server(rows: np.ndarray) -> None:
                t0 = time.perf_counter()
                rep = client.request("render", {"latents": rows, "width": args.size,
                                                "height": args.size, "return": RETURN})
                dt = time.perf_counter() - t0
                items = rep.fields["items"]
                assert len(items) == len(rows) and items[0]["image"].shape[0] == args.size
                acc["srv_wall"] += dt
                acc["rtt"] += dt
                acc["render_s"] += sum(it["render_s"] for it in items)
                acc["extract_s"] += sum(it["extract_s"] for it in items)

            def bare(chunk: list[dict]) -> None:
                t0 = time.perf_counter()
                for latent in chunk:
                    res = backend.render(latent, args.size, args.size)
                    acc["bare_render_s"] += res.render_s
                    acc["bare_extract_s"] += res.extract_s
                acc["bare_wall"] += time.perf_counter() - t0

            def chunks(lo: int, hi: int):
                for i in range(lo, hi, args.batch):
                    j = min(i + args.batch, hi)
                    yield i // args.batch, latents[i:j], named[i:j]

            for _, rows, chunk in chunks(0, args.warmup):
                through_server(rows)
                bare(chunk)
            acc.update(dict.fromkeys(acc, 0.0))
            rss0 = _rss_mb(pid)
            for k, rows, chunk in chunks(args.warmup, len(latents)):
                if k % 2:
                    bare(chunk)
                    through_server(rows)
                else:
                    through_server(rows)
                    bare(chunk)
            rss1 = _rss_mb(pid)
            client.request("shutdown")
        finally:
            client.close()
    n = len(latents) - args.warmup
    return {"blender": hello.fields["blender"], "n": n, "rss0": rss0, "rss1": rss1,
            "srv_wall": acc["srv_wall"], "bare_wall": acc["bare_wall"],
            "srv_ips": n / acc["srv_wall"], "bare_ips": n / acc["bare_wall"],
            "render_ms": 1e3 * acc["render_s"] / n, "extract_ms": 1e3 * acc["extract_s"] / n,
            "transfer_ms": 1e3 * (acc["rtt"] - acc["render_s"] - acc["extract_s"]) / n,
            "bare_render_ms": 1e3 * acc["bare_render_s"] / n,
            "bare_extract_ms": 1e3 * acc["bare_extract_s"] / n}


def main(argv=None) -> int:
    args = _args(argv)
    threads = os.cpu_count() or 1
    space, latents = _latents(args.warmup + args.n_renders, args.spp, args.seed)
    t0 = time.perf_counter()
    r = run(args, space, latents, threads)
    total = time.perf_counter() - t0

    ratio = r["srv_ips"] / r["bare_ips"]
    overhead = r["extract_ms"] + r["transfer_ms"]
    growth = r["rss1"] - r["rss0"]

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    rows = [
        ("1. images/s through the server", f"{r['srv_ips']:.1f}", "", ""),
        ("   images/s bare in-process loop", f"{r['bare_ips']:.1f}", "", ""),
        ("   ratio server / bare", f"{ratio:.3f}", f">= {TARGET_RATIO:.2f}",
         verdict(ratio >= TARGET_RATIO)),
        ("2. extraction per image (extract_s)", f"{r['extract_ms']:.2f} ms", "", ""),
        ("   transfer per image", f"{r['transfer_ms']:.2f} ms", "", ""),
        ("   extraction + transfer per image", f"{overhead:.2f} ms",
         f"< {TARGET_OVERHEAD_MS:.0f} ms", verdict(overhead < TARGET_OVERHEAD_MS)),
        (f"3. server RSS growth, {args.n_renders} renders", f"{growth:+.1f} MB",
         f"< {TARGET_RSS_MB:.0f} MB", verdict(growth < TARGET_RSS_MB)),
    ]
    print("autosim render-server benchmark")
    print(f"  scene {SCENE}, {args.size}x{args.size} px, {args.spp} spp (samples latent fixed), "
          f"Cycles CPU threads {threads} (all cores)")
    print(f"  {args.n_renders} measured renders per loop after {args.warmup} warm-up; requests "
          f"of {args.batch} explicit latents returning {'+'.join(RETURN)}")
    print(f"  server: python -m blender_addon.serve (Blender {r['blender']}), one DEALER "
          f"client, one request in flight; bare: BpyBackend.render in this process;")
    print("  the two loops alternate chunk by chunk over the same latents")
    print()
    print(f"  {'figure':<40} {'value':>11}  {'target':>9}  result")
    for name, value, target, result in rows:
        print(f"  {name:<40} {value:>11}  {target:>9}  {result}")
    print()
    print(f"  details: mean render_s {r['render_ms']:.2f} ms (server) / "
          f"{r['bare_render_ms']:.2f} ms (bare); extract_s bare {r['bare_extract_ms']:.2f} ms; "
          f"server VmRSS {r['rss0']:.1f} -> {r['rss1']:.1f} MB; "
          f"time in loops {r['srv_wall']:.1f} s (server) / {r['bare_wall']:.1f} s (bare); "
          f"total {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
