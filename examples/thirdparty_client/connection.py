"""Sockets: the main REQ connection (section 1), error replies (section 3), and the heartbeat
socket of version 2 (section 9.1) with the ping reply it answers."""

from __future__ import annotations

import contextlib
import urllib.parse

import zmq

from .frames import check, decode, encode

ERROR_CODES = {
    "bad_json",
    "bad_version",
    "missing_field",
    "bad_type",
    "bad_frame",
    "too_large",
    "unknown_type",
    "bad_value",
    "stale_generation",
    "render_failed",
    "busy",
    "internal",
}
PING_FIELDS = {
    "busy": bool,
    "request": str,
    "progress": int,
    "images": int,
    "generation": int,
    "instance": str,
    "uptime_s": (int, float),
}


class Connection:
    """A REQ socket with a receive timeout that is reopened after a timeout (section 1)."""

    def __init__(self, ctx, endpoint, timeout_s=120.0):
        self.ctx, self.endpoint, self.timeout_ms = ctx, endpoint, int(timeout_s * 1000)
        self.sock = None
        self._n = 0
        self._open()

    def _open(self):
        if self.sock is not None:
            self.sock.close(linger=0)
        self.sock = self.ctx.socket(zmq.REQ)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(self.endpoint)

    def next_id(self):
        self._n += 1
        return f"tp-{self._n}"

    def send_raw(self, frames, timeout_ms=None):
        """Send frames as they are, return the decoded reply (None on timeout)."""
        self.sock.send_multipart(frames)
        if not self.sock.poll(timeout_ms or self.timeout_ms):
            self._open()
            return None
        return decode(self.sock.recv_multipart(copy=False))

    def request(self, type_, fields=None, *, id_=None, timeout_ms=None):
        id_ = self.next_id() if id_ is None else id_
        reply = self.send_raw(encode(type_, id_, fields), timeout_ms)
        check(reply is not None, f"no reply to {type_} within the timeout")
        check(reply.id == id_, f"reply id {reply.id!r} != request id {id_!r}")
        return reply

    def ok(self, type_, fields=None, **kw):
        reply = self.request(type_, fields, **kw)
        check(reply.type == type_ and reply.get("ok") is True, f"{type_} failed: {reply!r}")
        return reply

    def close(self):
        self.sock.close(linger=0)


def expect_error(reply, code, what, id_=None):
    check(reply is not None, f"{what}: no reply (expected error {code})")
    check(
        reply.type == "error" and reply.get("ok") is False,
        f"{what}: expected an error reply, got {reply!r}",
    )
    check(reply.get("code") in ERROR_CODES, f"{what}: undocumented code {reply.get('code')!r}")
    check(isinstance(reply.get("message"), str), f"{what}: no message")
    check(
        reply.get("code") == code,
        f"{what}: expected code {code!r}, got {reply.get('code')!r} ({reply.get('message')})",
    )
    if id_ is not None:
        check(reply.id == id_, f"{what}: error id {reply.id!r}, expected {id_!r}")
    return reply


def dealer(ctx, endpoint):
    """A DEALER connected to endpoint, with no linger."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


@contextlib.contextmanager
def open_dealer(ctx, endpoint):
    """A DEALER connected to endpoint, closed on leaving the block."""
    sock = dealer(ctx, endpoint)
    try:
        yield sock
    finally:
        sock.close(linger=0)


def recv_delimited(sock, what="DEALER reply without delimiter"):
    """One reply on a DEALER: the empty delimiter, then the message."""
    parts = sock.recv_multipart(copy=False)
    check(parts[0].bytes == b"", what)
    return decode(parts[1:])


def heartbeat_endpoint(announced, main_endpoint):
    """Announced endpoint, with the host replaced by the one we reached the server by."""
    port = urllib.parse.urlsplit(announced).port
    host = urllib.parse.urlsplit(main_endpoint).hostname
    check(port is not None and host is not None, f"heartbeat endpoint {announced!r}")
    if ":" in host:
        host = f"[{host}]"
    return f"tcp://{host}:{port}"


class Heartbeat:
    """A DEALER on the heartbeat socket: empty delimiter first, replies matched by id."""

    def __init__(self, ctx, endpoint):
        self.sock = dealer(ctx, endpoint)
        self._n = 0

    def send(self, type_="ping", fields=None):
        self._n += 1
        id_ = f"hb-{self._n}"
        self.sock.send_multipart([b""] + encode(type_, id_, fields))
        return id_

    def recv(self, timeout_ms):
        if not self.sock.poll(timeout_ms):
            return None
        return recv_delimited(self.sock, "DEALER reply without the empty delimiter")

    def ping(self, timeout_ms=2000):
        id_ = self.send()
        while True:
            r = self.recv(timeout_ms)
            if r is None or r.id == id_:
                return r

    def close(self):
        self.sock.close(linger=0)


def check_ping(reply, what):
    check(reply is not None, f"{what}: no reply")
    check(reply.type == "ping" and reply.get("ok") is True, f"{what}: {reply!r}")
    for key, typ in PING_FIELDS.items():
        val = reply.get(key)
        check(
            isinstance(val, typ) and (typ is bool or not isinstance(val, bool)),
            f"{what}: field {key!r} = {val!r}",
        )
    return reply
