"""The render server's heartbeat sockets (protocol v2) and ROUTER framing, bpy-free.

Each runs in a thread with its own ZeroMQ socket that shares nothing with the backend (bpy):
the main thread renders synchronously, so only a separate socket can answer while Cycles
renders. Heartbeat answers pings on a bound ROUTER (the optimizer connects: --server);
HeartbeatOut beats to a listening optimizer (--connect) and watches for `rejoin`.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from protocol import wire

HEARTBEAT_MAX_BYTES = 64 * 1024  # a ping is ~50 bytes; the heartbeat socket takes no more

class Heartbeat(threading.Thread):
    """Answers `ping` with `pong` on its own ROUTER socket, from a thread that shares nothing
    with the backend (bpy): the main thread renders synchronously, so a ping queued on the
    main socket would wait for the render; this one answers while Cycles renders (Blender
    releases the GIL then, measured). A SIGKILLed or SIGSTOPped process answers nothing."""

    def __init__(self, ctx, address: str, curve: str | None,
                 status: Callable[[], dict[str, Any]]) -> None:
        import zmq

        super().__init__(name="autosim-heartbeat", daemon=True)
        self._status = status
        self._stop_flag = False
        self._sock = ctx.socket(zmq.ROUTER)  # made here, used only by the thread after start
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.MAXMSGSIZE, HEARTBEAT_MAX_BYTES)
        if curve is not None:  # the same keys; the context's authenticator admits the same
            from protocol.curve import server_keys  # clients

            server_keys(self._sock, curve)
        try:
            self._sock.bind(address)
        except zmq.ZMQError:
            self._sock.close(0)
            raise
        self.endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def run(self) -> None:
        import zmq

        try:
            while not self._stop_flag:
                if not self._sock.poll(100, zmq.POLLIN):
                    continue
                envelope, frames = split_envelope(self._sock.recv_multipart())
                if envelope is None:
                    continue
                try:
                    out = self._answer(frames)
                except wire.ProtocolError as exc:
                    out = wire.error_reply(exc.request_id, exc.code, str(exc))
                self._sock.send_multipart(envelope + out)
        except zmq.ZMQError:
            pass  # the context is going away
        finally:
            self._sock.close(0)

    def _answer(self, frames: list[bytes]) -> list[bytes]:
        """A ping's reply; any other request type is refused without listing the main
        socket's types: bad_value for those, unknown_type for a type no socket knows."""
        msg = wire.decode(frames, max_bytes=HEARTBEAT_MAX_BYTES)
        if msg.type != "ping":
            known = msg.type in wire.REQUEST_TYPES
            raise (wire.BadValueError if known else wire.UnknownTypeError)(
                f"the heartbeat socket answers only ping, not {wire._short(msg.type)}"
                + ("" if known else " (not a request type)"), msg.id)
        wire.validate_request(msg.type, msg.fields)
        return wire.reply(msg, self._status())

    def stop(self) -> None:
        self._stop_flag = True
        self.join(timeout=2.0)


class HeartbeatOut(threading.Thread):
    """Connect mode: beats `heartbeat` (with the pong fields) to the optimizer's ROUTER every
    heartbeat_s on its own DEALER; a `rejoin` answer sets the event the main loop watches."""

    def __init__(self, ctx, address: str, curve: str | None,
                 status: Callable[[], dict[str, Any]], worker: str, heartbeat_s: float,
                 rejoin: threading.Event) -> None:
        import zmq

        super().__init__(name="autosim-heartbeat", daemon=True)
        self._status, self._worker, self._every, self._rejoin = status, worker, heartbeat_s, rejoin
        self._stop_flag = False
        self._sock = ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SNDHWM, 4)
        self._sock.setsockopt(zmq.IDENTITY, f"{worker}.heartbeat".encode())
        if curve is not None:
            from protocol.curve import secure_client

            secure_client(self._sock, curve)
        self._sock.connect(address)
        self.endpoint = address

    def run(self) -> None:
        import zmq

        beats = itertools.count()
        next_beat = 0.0
        try:
            while not self._stop_flag:
                now = time.monotonic()
                if now >= next_beat:
                    fields = {"worker": self._worker, **self._status()}
                    try:
                        self._sock.send_multipart(
                            [b"", *wire.encode("heartbeat", f"b{next(beats)}", fields)],
                            zmq.NOBLOCK)
                    except zmq.Again:
                        pass
                    next_beat = now + self._every
                if self._sock.poll(min(100, int(self._every * 1000)), zmq.POLLIN):
                    raw = self._sock.recv_multipart()
                    try:
                        msg = wire.decode(raw[1:] if raw and raw[0] == b"" else raw,
                                          max_bytes=HEARTBEAT_MAX_BYTES)
                    except wire.ProtocolError:
                        continue
                    if msg.fields.get("rejoin"):
                        self._rejoin.set()
        except zmq.ZMQError:
            pass
        finally:
            self._sock.close(0)

    def stop(self) -> None:
        self._stop_flag = True
        self.join(timeout=2.0)


def heartbeat_address(address: str) -> str:
    """The heartbeat socket's address for a main socket's: same host, any free port."""
    if address.startswith("tcp://"):
        return address.rsplit(":", 1)[0] + ":*"
    if address.startswith("ipc://"):
        return address + ".heartbeat"
    return address + "-heartbeat"  # inproc


def split_envelope(raw: list[bytes]) -> tuple[list[bytes] | None, list[bytes]]:
    """ROUTER frames: [identity, (b"" delimiter,) *payload]; REQ peers always send the delimiter."""
    if len(raw) < 2:
        return None, []
    if raw[1] == b"":
        return raw[:2], raw[2:]
    return raw[:1], raw[1:]
