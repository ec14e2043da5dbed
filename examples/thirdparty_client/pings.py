"""Steps of version 2 (section 9): ping on the main socket, on the heartbeat socket, and on the
heartbeat socket while the main one renders."""

from __future__ import annotations

import re
import time

import numpy as np

from .connection import (
    Heartbeat,
    check_ping,
    expect_error,
    heartbeat_endpoint,
    open_dealer,
    recv_delimited,
)
from .frames import check, encode, short


def ping_main(s):
    ping = check_ping(s.conn.ok("ping"), "ping on the main socket")
    check(not ping["busy"] and ping["request"] == "", f"idle ping {ping!r}")
    check(ping["generation"] == s.gen, "ping generation")
    # images since hello: count explicit + 2 + 3 (error requests render nothing)
    s.summary["ping_images"] = ping["images"]
    s.summary["ping_main"] = dict(ping.fields)
    s.log(f"ping (main socket): {short(ping.fields)}")
    s.instance = instance = ping["instance"]
    check(
        all(i.startswith(instance + "-") for i in s.item_ids),
        f"item ids {s.item_ids[:2]} do not start with instance {instance!r}",
    )
    check(
        all(re.fullmatch(re.escape(instance) + r"-\d+-\d+", i) for i in s.item_ids),
        "item ids are not <instance>-<generation>-<n>",
    )


def ping_heartbeat(s):
    """Open the heartbeat socket hello announced: it answers ping, and only ping."""
    if "heartbeat" not in s.hello:
        s.summary["notes"].append("no heartbeat in hello: version-1 server")
        return
    hb_ep = heartbeat_endpoint(s.hello["heartbeat"], s.endpoint)
    s.hb = hb = Heartbeat(s.ctx, hb_ep)
    p2 = check_ping(hb.ping(), "ping on the heartbeat socket")
    check(p2["instance"] == s.instance, "heartbeat instance differs")
    s.log(f"ping (heartbeat socket {hb_ep}): {short(p2.fields)}")
    id_ = hb.send("get_params")
    r = hb.recv(2000)
    expect_error(r, "bad_value", "get_params on the heartbeat socket", id_)
    s.summary["errors"]["get_params on heartbeat socket"] = (r["code"], r["message"])
    s.log(f"  get_params on the heartbeat socket -> {r['code']}: {r['message']}")


def ping_while_busy(s):
    """A 16-image render on a DEALER with a ping pipelined behind it; meanwhile the heartbeat
    socket answers at once and says busy, and the pipelined ping is answered after the render."""
    if s.hb is None:
        return
    with open_dealer(s.ctx, s.endpoint) as dealer:
        many = np.repeat(s.latents[:1], 16, axis=0)
        fields = {"latents": many, "width": s.size, "height": s.size, "return": ["mask"]}
        dealer.send_multipart([b""] + encode("render", "long-1", fields))
        dealer.send_multipart([b""] + encode("ping", "after-1"))
        seen, lat, order = _watch(s, dealer)
        check(
            [m.id for m in order] == ["long-1", "after-1"],
            f"pipelined replies out of order: {[m.id for m in order]}",
        )
        check(len(order[0]["items"]) == 16, "long render items")
        busy = [p for p in seen if p[0]]
        check(
            busy and all(p[1] == "long-1" for p in busy),
            f"heartbeat pings during the render never said busy: {seen}",
        )
        check(check_ping(order[1], "pipelined ping")["busy"] is False, "ping after render busy")
    s.summary["busy_pings"] = len(busy)
    s.summary["max_ping_latency_s"] = max(lat)
    s.log(
        f"ping (heartbeat) during a 16-image render: {len(seen)} pings, {len(busy)} busy, "
        f"progress seen {sorted({p[2] for p in busy})}, "
        f"slowest answer {max(lat) * 1e3:.0f} ms;"
        " pipelined main-socket ping answered after the render"
    )


def _watch(s, dealer):
    """Ping the heartbeat socket until both replies are in on the DEALER: (busy, request,
    progress) of each ping answered, each ping's latency, the DEALER's replies in order."""
    seen, lat, order = [], [], []
    t0 = time.monotonic()
    while len(order) < 2 and time.monotonic() - t0 < s.timeout_s:
        t1 = time.monotonic()
        p = s.hb.ping(2000)
        lat.append(time.monotonic() - t1)
        if p is not None:
            seen.append((p["busy"], p["request"], p["progress"]))
        while dealer.poll(0):
            order.append(recv_delimited(dealer))
        time.sleep(0.05)
    return seen, lat, order
