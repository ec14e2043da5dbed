"""Fuzz the real bpy render server process with ~200 malformed and hostile messages.

Every message (tests/hostile.py) must be answered by an `error` reply whose id is what the
server could read (the oracle is protocol.wire.decode run locally on the same frames), and
afterwards the server must still render a real image.
"""

from __future__ import annotations

import importlib.util
import time

import numpy as np
import pytest
import zmq

from optimizer.simulators.local_servers import LocalServers
from protocol import wire
from tests.hostile import hostile_messages

pytestmark = [
    pytest.mark.blender,
    pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="needs the bpy module"),
]

REPLY_S = 10.0


def test_hostile_messages_corpus_is_big_and_deterministic():
    a, b = hostile_messages(), hostile_messages()
    assert len(a) >= 190
    assert [f for _, f, _, _ in a] == [f for _, f, _, _ in b]


def test_real_bpy_server_answers_every_hostile_message_with_an_error():
    cases = hostile_messages()
    t_start = time.monotonic()
    with LocalServers("clevr", threads=2, startup_timeout_s=120) as endpoints:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoints[0])

        def exchange(frames: list[bytes], what: str) -> wire.Message:
            sock.send_multipart([b"", *frames])
            if not sock.poll(int(REPLY_S * 1000)):
                pytest.fail(f"{what}: no reply within {REPLY_S} s")
            parts = sock.recv_multipart()
            assert parts[0] == b"", what
            return wire.decode(parts[1:])

        try:
            codes: dict[str, int] = {}
            for what, frames, expected_id, code in cases:
                rep = exchange(frames, what)
                assert rep.type == "error", (what, rep.fields)
                assert rep.fields["ok"] is False, what
                assert rep.id == expected_id, (what, rep.id, expected_id)
                if code is not None:
                    assert rep.fields["code"] == code, (what, rep.fields)
                codes[rep.fields["code"]] = codes.get(rep.fields["code"], 0) + 1
            assert "internal" not in codes, codes
            assert len(codes) >= 7, codes  # the corpus reaches most error codes

            hello = exchange(wire.encode("hello", "after"), "hello after fuzz")
            assert hello.type == "hello" and hello.fields["generation"] == 0
            rep = exchange(wire.encode("render", "real", {"n": 1, "seed": 4, "width": 32,
                                                         "height": 32, "return": ["image"]}),
                           "real render")
            assert rep.type == "render", rep.fields
            image = rep.fields["items"][0]["image"]
            assert image.shape == (32, 32, 3) and image.dtype == np.uint8
            assert image.std() > 1.0
        finally:
            sock.close(0)
            ctx.term()
    assert time.monotonic() - t_start < 30.0
