"""Chaos on a farm of real bpy clevr servers (`bench/farm.py chaos`, issue 13).

N images (32 px, Cycles samples held at the lowest choice, 4) are rendered in iterations of
K through FarmSimulator, as `autosim optimize` renders them, from --servers local servers
that join over loopback (LocalServers(connect=...)). Every --kill-every s one server is
SIGKILLed; LocalServers' supervisor starts a fresh one, which joins the running stream. Then
the same latents are rendered again by a fresh, undisturbed farm. Reported:

* delivery: every image delivered once, in order (latents, item ids);
* labels and pixels against the undisturbed run: masks must match; pixel mismatches are
  counted, split by whether the item was among the first 5 renders of its process in
  either run (a fresh clevr server's first renders can differ in Cycles noise; measured
  while writing this: a clevr server's pixels depend on what it rendered before for longer
  than that, see docs/benchmarks.md), with their size;
* iteration wall times: median, slowest, and the slowest minus the median;
* wasted work: images requested but never delivered (lost with a killed server, or
  rendered twice), an upper bound on discarded renders, and that many times the median
  render time per image.
"""

from __future__ import annotations

import contextlib
import re
import signal
import tempfile
import threading
import time
from collections.abc import Iterator

import numpy as np

from optimizer.simulators.farm import FarmSimulator
from optimizer.simulators.local_servers import LocalServers

FRESH = 5  # renders of a fresh clevr process that may differ in noise (docs/benchmarks.md)


class CountingFarm(FarmSimulator):
    """FarmSimulator that counts the images it asks for (the delivered ones it knows)."""

    requested = 0

    def _send(self, identity, type_, fields=None):
        if type_ == "render":
            self.requested += len(fields["latents"])
        return super()._send(identity, type_, fields)


@contextlib.contextmanager
def farm(servers: int, heartbeat_s: float, log_dir: str) -> Iterator[tuple]:
    with CountingFarm("tcp://127.0.0.1:*", heartbeat_s=heartbeat_s, min_servers=0,
                      timeout_s=120) as sim:
        local = LocalServers("clevr", servers, threads=1, connect=sim.endpoint,
                             heartbeat_s=heartbeat_s, log_dir=log_dir)
        with local:
            sim.wait_for_servers(servers, 120)
            yield sim, local


def latents_for(sim: FarmSimulator, n: int, seed: int) -> np.ndarray:
    lat = sim.space.sample(n, np.random.default_rng(seed))
    lat[:, sim.space.latent_slices["samples"]] = 0  # '4' samples: the cheapest renders
    return lat


def render_all(sim: FarmSimulator, lat: np.ndarray, k: int, size: int,
               on_iteration=None) -> tuple[list, list[float]]:
    batches, times = [], []
    for i in range(0, len(lat), k):
        t0 = time.monotonic()
        batches.append(sim.render(lat[i:i + k], size, size))
        times.append(time.monotonic() - t0)
        if on_iteration is not None:
            on_iteration()
    return batches, times


class Killer(threading.Thread):
    """SIGKILLs the longest-running local server every `every` seconds, at most `most` times
    (None: until stopped). A bound keeps a loaded machine, where a restarted Blender takes
    longer than `every` to join, from losing every server to the killer."""

    def __init__(self, local: LocalServers, every: float, most: int | None = None) -> None:
        super().__init__(daemon=True)
        self.local, self.every, self.most = local, every, most
        self.kills: list[float] = []
        self.done = threading.Event()
        self._born = {p.pid: time.monotonic() for p in local.procs}

    def run(self) -> None:
        while not self.done.wait(self.every):
            if self.most is not None and len(self.kills) >= self.most:
                return
            now = time.monotonic()
            for p in self.local.procs:
                self._born.setdefault(p.pid, now)
            alive = [p for p in self.local.procs if p.poll() is None]
            if not alive:
                continue
            oldest = min(alive, key=lambda p: self._born[p.pid])
            oldest.send_signal(signal.SIGKILL)
            self.kills.append(time.monotonic())


def process_index(item_id: str) -> int:
    """The n of `<instance>-<generation>-<n>`: how many items its process had rendered."""
    return int(re.fullmatch(r"[0-9a-f]+-\d+-(\d+)", item_id).group(1))


def chaos(n: int = 2000, k: int = 16, size: int = 32, servers: int = 2,
          kill_every_s: float = 20.0, heartbeat_s: float = 2.0, seed: int = 0,
          max_kills: int | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="autosim-chaos-") as logs:
        with farm(servers, heartbeat_s, logs) as (sim, local):
            lat = latents_for(sim, n, seed)
            killer = Killer(local, kill_every_s, max_kills)
            t0 = time.monotonic()
            killer.start()
            try:
                got, times = render_all(sim, lat, k, size)
            finally:
                killer.done.set()
                killer.join()
            wall = time.monotonic() - t0
            restarts, requested = local.restarts, sim.requested
            dropped = dict(sim.left)
        with farm(servers, heartbeat_s, logs) as (sim, _local):
            ref, ref_times = render_all(sim, lat, k, size)
    return report(lat, got, ref, times, ref_times, wall, killer.kills, t0, restarts,
                  requested, dropped)


def report(lat, got, ref, times, ref_times, wall, kills, t0, restarts, requested,
           dropped) -> dict:
    ids = [i for b in got for i in b.item_ids]
    delivered = np.concatenate([b.latents for b in got])
    images = np.concatenate([b.images for b in got])
    ref_images = np.concatenate([b.images for b in ref])
    masks_equal = bool(np.array_equal(np.concatenate([b.masks for b in got]),
                                      np.concatenate([b.masks for b in ref])))
    differ = [i for i in range(len(lat)) if not np.array_equal(images[i], ref_images[i])]
    ref_ids = [i for b in ref for i in b.item_ids]
    fresh = [i for i in differ
             if min(process_index(ids[i]), process_index(ref_ids[i])) < FRESH]
    diff = [np.abs(images[i].astype(int) - ref_images[i].astype(int)) for i in differ]
    per_image = float(np.median([b.render_s / len(b) for b in got]))
    med = float(np.median(times))
    return {
        "images": len(lat), "iterations": len(times), "wall_s": round(wall, 1),
        "kills": len(kills), "kill_at_s": [round(t - t0, 1) for t in kills],
        "restarts": restarts,
        "dropped": sorted(dropped.values()),
        "delivered_once_in_order": bool(np.array_equal(delivered, lat)
                                        and len(ids) == len(set(ids)) == len(lat)),
        "masks_equal_undisturbed": masks_equal,
        "pixel_mismatches": len(differ),
        "pixel_mismatches_in_first_renders": len(fresh),
        "pixel_mismatches_later": len(differ) - len(fresh),
        "mismatched_pixel_abs_diff": {"max": int(max((d.max() for d in diff), default=0)),
                                      "mean": round(float(np.mean([d.mean() for d in diff]))
                                                    if diff else 0.0, 2)},
        "iteration_s": {"median": round(med, 2), "slowest": round(max(times), 2),
                        "slowest_minus_median": round(max(times) - med, 2),
                        "undisturbed_median": round(float(np.median(ref_times)), 2),
                        "undisturbed_slowest": round(max(ref_times), 2)},
        "wasted": {"images_requested_not_delivered": requested - len(lat),
                   "render_s_per_image": round(per_image, 3),
                   "render_s_upper_bound": round((requested - len(lat)) * per_image, 2)},
    }
