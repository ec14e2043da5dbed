"""Render farm figures (issue 13), loopback only, bounded in time.

- detection (fake-backend server processes): 3 servers; one SIGKILLed, one SIGSTOPped while
  a stream runs; seconds from the signal until the optimizer drops the server, for
  `--server` (heartbeat socket) and `--listen` (servers join) at --heartbeat-s x 3;
- throughput (fake-backend): N = 1, 2, 4 servers whose fake renderer spends --cpu-s of CPU
  per image (one core each), images/s and the scaling against one server. The machine's
  cores cap it: on 2 cores 4 servers cannot beat 2x;
- chaos (real bpy clevr servers, bench/farm_chaos.py): 2000 images while one server is
  SIGKILLed every --kill-every s and replaced; delivery, masks and pixels against an
  undisturbed run, slowest iteration against the median, wasted renders;
- malformed (a real bpy clevr server, bench/farm_malformed.py): 10,000 hostile messages;
  error replies, deaths, resident-memory growth.

    PYTHONPATH=. python bench/farm.py [detection|throughput|chaos|malformed] [options]

Without a subcommand: detection and throughput, as before.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from optimizer.simulators.farm import FarmSimulator
from optimizer.simulators.remote import RemoteSimulator

ROOT = Path(__file__).resolve().parents[1]


def fake(*args: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.fake_server", *args],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    line = proc.stdout.readline()
    if not line.startswith("AUTOSIM_READY "):
        raise RuntimeError(f"fake server did not start: {line!r}")
    return proc, json.loads(line.split(" ", 1)[1])["endpoint"]


def stop_all(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGCONT)
            p.kill()
        p.wait(timeout=10)


def detect(sim: RemoteSimulator, names: list[str], procs: list[subprocess.Popen],
           limit_s: float) -> dict[str, float]:
    """Stream until both signalled servers are dropped; seconds from signal to drop."""
    sent: dict[str, float] = {}

    def chunks():
        rng = np.random.default_rng(0)
        t0 = time.monotonic()
        while not all(n in sim.dead for n in names) and time.monotonic() - t0 < limit_s:
            yield sim.space.sample(2, rng)

    for i, _batch in enumerate(sim.render_stream(chunks(), 8, 8)):
        if i == 5:
            procs[0].send_signal(signal.SIGKILL)
            sent[names[0]] = time.monotonic()
        if i == 6:
            procs[1].send_signal(signal.SIGSTOP)
            sent[names[1]] = time.monotonic()
    return {("SIGKILL", "SIGSTOP")[k]: round(sim.dead_at[n] - sent[n], 2) if n in sim.dead_at
            else float("nan") for k, n in enumerate(names)}


def detection(heartbeat_s: float) -> dict:
    out = {}
    procs = []
    try:
        eps = []
        for _ in range(3):
            proc, ep = fake("--delay-s", "0.01")
            procs.append(proc)
            eps.append(ep)
        with RemoteSimulator(eps, heartbeat_s=heartbeat_s, timeout_s=120) as sim:
            out["--server"] = detect(sim, eps[:2], procs, heartbeat_s * 6 + 10)
    finally:
        stop_all(procs)
    procs = []
    try:
        with FarmSimulator("tcp://127.0.0.1:*", heartbeat_s=heartbeat_s, min_servers=0,
                           timeout_s=120) as sim:
            for _ in range(3):
                procs.append(fake("--connect", sim.endpoint, "--delay-s", "0.01",
                                  "--heartbeat-s", str(heartbeat_s))[0])
            sim.wait_for_servers(3, 30)
            out["--listen"] = detect_farm(sim, procs[:2], heartbeat_s * 6 + 10)
    finally:
        stop_all(procs)
    return out


def detect_farm(sim: FarmSimulator, procs: list[subprocess.Popen], limit_s: float) -> dict:
    sent: dict[str, float] = {}

    def chunks():
        rng = np.random.default_rng(0)
        t0 = time.monotonic()
        while len(sim.left) < 2 and time.monotonic() - t0 < limit_s:
            yield sim.space.sample(2, rng)

    for i, _batch in enumerate(sim.render_stream(chunks(), 8, 8)):
        if i == 5:
            procs[0].send_signal(signal.SIGKILL)
            sent["SIGKILL"] = time.monotonic()
        if i == 6:
            procs[1].send_signal(signal.SIGSTOP)
            sent["SIGSTOP"] = time.monotonic()
    drops = sorted(sim.dead_at.values())  # the SIGKILLed one is dropped first
    return {k: round(d - sent[k], 2) for k, d in zip(("SIGKILL", "SIGSTOP"), drops)}


def throughput(counts: list[int], cpu_s: float, n: int) -> dict:
    rates = {}
    for count in counts:
        procs = []
        try:
            eps = []
            for _ in range(count):
                proc, ep = fake("--delay-s", str(cpu_s), "--spin")
                procs.append(proc)
                eps.append(ep)
            with RemoteSimulator(eps) as sim:
                lat = sim.space.sample(n, np.random.default_rng(0))
                chunks = [lat[i:i + 4] for i in range(0, n, 4)]
                t0 = time.monotonic()
                for _ in sim.render_stream(chunks, 32, 32, depth=2):
                    pass
                rates[count] = n / (time.monotonic() - t0)
        finally:
            stop_all(procs)
    return {c: {"images_per_s": round(r, 1), "scaling": round(r / rates[counts[0]], 2)}
            for c, r in rates.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", nargs="?", default="fake",
                   choices=("fake", "detection", "throughput", "chaos", "malformed"),
                   help="fake (default) = detection + throughput")
    p.add_argument("--heartbeat-s", type=float, default=2.0)
    p.add_argument("--cpu-s", type=float, default=0.02)
    p.add_argument("--n", type=int, help="images (throughput 200, chaos 2000) or messages "
                   "(malformed 10000)")
    p.add_argument("--servers", help="throughput: counts (default 1,2,4); chaos: how many "
                   "(default 2)")
    p.add_argument("--k", type=int, default=16, help="chaos: images per iteration")
    p.add_argument("--kill-every", type=float, default=20.0, help="chaos: seconds")
    args = p.parse_args()
    if args.what in ("fake", "detection"):
        print(json.dumps({"cores": os.cpu_count(), "heartbeat_s": args.heartbeat_s,
                          "liveness": 3, "detection_s": detection(args.heartbeat_s)}),
              flush=True)
    if args.what in ("fake", "throughput"):
        counts = [int(x) for x in (args.servers or "1,2,4").split(",")]
        n = args.n or 200
        print(json.dumps({"cpu_s_per_image": args.cpu_s, "n": n,
                          "throughput": throughput(counts, args.cpu_s, n)}), flush=True)
    if args.what == "chaos":
        from farm_chaos import chaos  # bench/ is on sys.path as a script

        n, servers = args.n or 2000, int(args.servers or 2)
        print(json.dumps({"cores": os.cpu_count(), "servers": servers, "n": n, "k": args.k,
                          "heartbeat_s": args.heartbeat_s, "kill_every_s": args.kill_every,
                          "chaos": chaos(n, args.k, 32, servers, args.kill_every,
                                         args.heartbeat_s)}), flush=True)
    if args.what == "malformed":
        from farm_malformed import malformed

        print(json.dumps({"malformed": malformed(args.n or 10_000)}), flush=True)


if __name__ == "__main__":
    main()
