"""Tests for protocol/wire.py: a real ZeroMQ exchange (ROUTER server, REQ and DEALER clients)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from protocol.wire import ProtocolError, decode, encode, error_reply, reply

# ----------------------------------------------------------------------------- real ZeroMQ


def test_zmq_router_with_req_and_dealer_clients():
    zmq = pytest.importorskip("zmq")
    ctx = zmq.Context()
    sockets = []

    def socket(kind):
        sock = ctx.socket(kind)
        sock.linger = 0
        sockets.append(sock)
        return sock

    router = socket(zmq.ROUTER)
    router.bind("tcp://127.0.0.1:*")
    endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
    stop, failures = threading.Event(), []

    def serve():  # the minimal server loop: decode, answer, keep serving
        try:
            while not stop.is_set():
                if not router.poll(20):
                    continue
                parts = router.recv_multipart(copy=False)
                delim = next((i for i, p in enumerate(parts) if not p.bytes), None)
                if delim is None:
                    continue  # a peer that forgot the empty delimiter frame
                try:
                    msg = decode(parts[delim + 1:], expect_request=True)
                    out = reply(msg, {"echo": msg.fields})
                except ProtocolError as exc:
                    out = error_reply(exc.request_id, exc.code, exc.message)
                router.send_multipart([p.bytes for p in parts[:delim + 1]] + out)
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(exc)

    def receive(sock) -> list:
        assert sock.poll(5000), "no reply within 5 s"
        return sock.recv_multipart(copy=False)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        latents = np.arange(6, dtype=np.float64).reshape(2, 3)
        client = socket(zmq.REQ)
        client.connect(endpoint)
        client.send_multipart(encode("hello", "req-1", {"client": "pytest"}))
        msg = decode(receive(client))  # zmq.Frame objects go straight into decode
        assert (msg.type, msg.id, msg.fields) == ("hello", "req-1",
                                                  {"ok": True, "echo": {"client": "pytest"}})
        client.send_multipart(encode("render", "req-2", {"latents": latents}))
        msg = decode(receive(client))
        np.testing.assert_array_equal(msg.fields["echo"]["latents"], latents)
        client.send_multipart(encode("render", "req-3", {"n": 0, "seed": 1}))
        msg = decode(receive(client))
        assert (msg.type, msg.id, msg.fields["code"]) == ("error", "req-3", "bad_value")

        dealer = socket(zmq.DEALER)
        dealer.connect(endpoint)
        dealer.send_multipart([b""] + encode("render", "d-1", {"n": 2, "seed": 5}))
        dealer.send_multipart([b""] + encode("render", "d-2", {"latents": latents}))
        dealer.send_multipart([b"", b"not json"])
        replies = {}
        for _ in range(3):
            parts = receive(dealer)
            assert parts[0].bytes == b""
            msg = decode(parts[1:])
            replies[msg.id] = msg
        assert replies["d-1"].fields["echo"] == {"n": 2, "seed": 5}
        np.testing.assert_array_equal(replies["d-2"].fields["echo"]["latents"], latents)
        assert replies[""].type == "error" and replies[""].fields["code"] == "bad_json"
    finally:
        stop.set()
        thread.join(5)
        for sock in sockets:
            sock.close(0)
        ctx.term()
    assert not thread.is_alive() and not failures
