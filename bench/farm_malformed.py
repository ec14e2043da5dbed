"""10,000 malformed messages against one real bpy render server (`bench/farm.py malformed`).

The messages are tests/hostile.py's ~200 kinds, drawn again with a new seed for each pass
(the random-bytes, junk, truncation and mutation cases change; the rest repeat). Each must
get an `error` reply carrying the id the server could read; the server must not die, and
its resident memory (VmRSS from /proc/PID/status) is read before, after the first pass, and
at the end. Afterwards it must still render a real image.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter

import zmq

from optimizer.simulators.local_servers import LocalServers
from protocol import wire
from tests.hostile import SEED, hostile_messages

REPLY_S = 10.0


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cases(total: int):
    """`total` hostile messages: whole corpora, one seed per pass, cut at total."""
    passes = (hostile_messages(SEED + k) for k in itertools.count())
    return itertools.islice(itertools.chain.from_iterable(passes), total)


def malformed(total: int = 10_000, threads: int = 1) -> dict:
    servers = LocalServers("clevr", 1, threads=threads, startup_timeout_s=120)
    with servers as endpoints:
        proc = servers.procs[0]  # the server process itself (python -m blender_addon.serve)
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoints[0])
        errors, wrong_id, no_reply, codes = 0, 0, 0, Counter()
        try:
            rss = {"before_kb": rss_kb(proc.pid)}
            first_pass = len(hostile_messages(SEED))
            t0 = time.monotonic()
            for count, (_what, frames, expected_id, _code) in enumerate(cases(total), 1):
                sock.send_multipart([b"", *frames])
                if not sock.poll(int(REPLY_S * 1000)):
                    no_reply += 1
                    if proc.poll() is not None:
                        break
                    continue
                rep = wire.decode(sock.recv_multipart()[1:])
                if rep.type == "error":
                    errors += 1
                    codes[rep.fields["code"]] += 1
                wrong_id += rep.id != expected_id
                if count == first_pass:
                    rss["after_first_pass_kb"] = rss_kb(proc.pid)
            took = time.monotonic() - t0
            alive = proc.poll() is None
            rss["after_kb"] = rss_kb(proc.pid) if alive else None
            sock.send_multipart([b"", *wire.encode("render", "after", {
                "n": 1, "seed": 4, "width": 32, "height": 32, "return": ["image"]})])
            ok = bool(sock.poll(int(REPLY_S * 1000))) and \
                wire.decode(sock.recv_multipart()[1:]).type == "render"
        finally:
            sock.close(0)
            ctx.term()
    return {"messages": total, "kinds_per_pass": first_pass, "error_replies": errors,
            "wrong_ids": wrong_id, "no_reply": no_reply, "deaths": 0 if alive else 1,
            "renders_after": ok, "seconds": round(took, 1),
            "messages_per_s": round(total / took, 1), "codes": dict(codes.most_common()),
            "rss_kb": rss,
            "rss_growth_kb": None if rss["after_kb"] is None
            else rss["after_kb"] - rss["before_kb"],
            "rss_growth_after_first_pass_kb": None if rss["after_kb"] is None
            else rss["after_kb"] - rss["after_first_pass_kb"]}

