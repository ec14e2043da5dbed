"""Steps at the end: a DEALER without the delimiter, a second hello, and shutdown."""

from __future__ import annotations

import time

from .connection import open_dealer, recv_delimited
from .frames import check, decode, encode, short


def dealer_without_delimiter(s):
    """Framing: a DEALER that omits the delimiter is answered without one."""
    with open_dealer(s.ctx, s.endpoint) as raw:
        raw.send_multipart(encode("ping", "nodelim"))
        check(raw.poll(int(s.timeout_s * 1000)), "DEALER without delimiter: no reply")
        parts = raw.recv_multipart(copy=False)
    check(parts[0].bytes != b"", "DEALER without delimiter got a delimiter back")
    check(decode(parts).id == "nodelim", "DEALER without delimiter: id")
    s.log("DEALER without the empty delimiter: answered, reply has no delimiter")


def second_hello(s):
    """A second hello resets the image counter (not the generation)."""
    before = s.conn.ok("ping")["images"]
    h2 = s.conn.ok("hello", {"client": "thirdparty-client"})
    after = s.conn.ok("ping")["images"]
    check(after == 0, f"images after hello = {after}")
    s.summary["generation_after_second_hello"] = h2["generation"]
    s.log(
        f"second hello: ping images {before} -> {after}; generation stays "
        f"{h2['generation']} (was {s.gen})"
    )


def shutdown(s):
    """On a DEALER, with a ping pipelined behind it: only the shutdown is answered, with `ok`."""
    with open_dealer(s.ctx, s.endpoint) as dealer:
        dealer.send_multipart([b""] + encode("shutdown", "bye"))
        dealer.send_multipart([b""] + encode("ping", "after-bye"))
        replies = []
        while dealer.poll(2000 if replies else int(s.timeout_s * 1000)):
            replies.append(recv_delimited(dealer))
    check(
        [m.id for m in replies] == ["bye"],
        f"replies after shutdown: {[(m.id, m.type) for m in replies]}",
    )
    sd = replies[0]
    check(sd.type == "shutdown" and sd.get("ok") is True, f"shutdown: {sd!r}")
    s.summary["reply_after_shutdown"] = False
    extra = set(sd.fields) - {"ok"}
    s.summary["shutdown_extra_fields"] = sorted(extra)
    check(not extra, f"shutdown reply has fields besides ok: {sorted(extra)}")
    s.log(f"shutdown: {short(sd.fields)}; the ping pipelined behind it got no reply")
    if s.hb is not None:
        # the doc: "the server exits after sending it"; watch the heartbeat socket go quiet
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30 and s.hb.ping(500) is not None:
            time.sleep(0.2)
        quiet = time.monotonic() - t0
        s.summary["heartbeat_silent_after_s"] = quiet
        s.log(f"  heartbeat socket silent {quiet:.1f} s after the shutdown reply")
