"""Dataset-render throughput against the servers' own bare rate (issue 14).

For N = 1 and 2 local clevr servers (1 Cycles thread each), in one run:
- bare: the servers render the same chunks back to back and the client throws the images
  away (render_stream, depth 2: no idle server between requests), the most they can give;
- dataset: `render_dataset` writes every item (PNGs, masks, labels, items.jsonl), pipelined
  (depth 2) and, for comparison, one chunk per server at a time (depth 1).
Prints images/s and the ratio dataset / bare, per repeat, then median and spread.

    python bench/render_dataset.py [--n 96] [--size 64] [--repeats 3] [--servers 1,2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from optimizer.dataset_render import item_latents, render_dataset
from optimizer.simulators.local_servers import LocalServers
from optimizer.simulators.remote import RemoteSimulator


def spread(xs: list[float]) -> str:
    return f"{min(xs):.3f}-{max(xs):.3f}"


def bare_rate(sim: RemoteSimulator, n: int, size: int, chunk: int) -> float:
    chunks = [item_latents(sim.space, 1, range(s, min(s + chunk, n))) for s in range(0, n, chunk)]
    t0 = time.perf_counter()
    for _ in sim.render_stream(chunks, size, size, depth=2):
        pass
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=96)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--chunk", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--servers", default="1,2")
    args = ap.parse_args()
    print(f"clevr, {args.n} images of {args.size} px per measurement, chunk {args.chunk}, "
          f"1 Cycles thread per server")
    for count in [int(c) for c in args.servers.split(",")]:
        with LocalServers("clevr", count, threads=1) as eps, RemoteSimulator(eps) as sim:
            bare_rate(sim, 2 * count * args.chunk, args.size, args.chunk)  # warm up
            rows = []
            for r in range(args.repeats):
                bare = bare_rate(sim, args.n, args.size, args.chunk)
                rates = {}
                for depth in (2, 1):
                    with tempfile.TemporaryDirectory() as tmp:
                        s = render_dataset(sim, sim.space, args.n, 1, args.size,
                                           Path(tmp) / "set", chunk=args.chunk, depth=depth)
                    rates[depth] = s["images_per_s"]
                rows.append((bare, rates[2], rates[1]))
                print(f"  {count} server(s), repeat {r}: bare {bare:.1f} img/s, dataset "
                      f"pipelined {rates[2]:.1f} ({rates[2] / bare:.3f} of bare), one chunk "
                      f"per server {rates[1]:.1f} ({rates[1] / bare:.3f})", flush=True)
        ratios2 = [p / b for b, p, _ in rows]
        ratios1 = [q / b for b, _, q in rows]
        print(f"{count} server(s): bare {statistics.median(b for b, _, _ in rows):.1f} img/s; "
              f"pipelined/bare median {statistics.median(ratios2):.3f} "
              f"(range {spread(ratios2)}); depth 1/bare median {statistics.median(ratios1):.3f} "
              f"(range {spread(ratios1)})")


if __name__ == "__main__":
    main()
