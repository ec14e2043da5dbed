"""Protocol v1 client for one render server, with timeouts that never hang.

A DEALER socket (with the REQ-style empty delimiter) instead of REQ: after a timeout a REQ socket
is stuck, a DEALER just drops the late reply, recognised by its request id.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from typing import Any

import zmq

from protocol import wire


class ServerError(RuntimeError):
    """The server answered with an `error` reply."""

    def __init__(self, endpoint: str, code: str, message: str) -> None:
        super().__init__(f"render server {endpoint} answered {code}: {message}")
        self.endpoint = endpoint
        self.code = code


class ServerUnavailable(RuntimeError):
    """No answer within the timeout: the server is down, busy or unreachable."""


class RenderClient:
    def __init__(self, endpoint: str, *, timeout_s: float = 60.0,
                 context: zmq.Context | None = None, name: str = "autosim-optimizer",
                 curve: str | None = None) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.name = name
        self._ctx = context or zmq.Context.instance()
        self._ids = itertools.count()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SNDTIMEO, int(timeout_s * 1000))
        if curve is not None:  # CURVE keys (protocol.curve): before connect
            from protocol.curve import secure_client

            secure_client(self._sock, curve)
        self._sock.connect(endpoint)
        self.pending: str | None = None

    def close(self) -> None:
        self._sock.close(0)

    def send(self, type_: str, fields: Mapping[str, Any] | None = None) -> str:
        """Send one request without waiting; returns its id (see `receive`)."""
        request_id = f"{self.name}-{next(self._ids)}"
        try:  # SNDTIMEO: a DEALER with no usable peer (e.g. a refused CURVE handshake) blocks
            self._sock.send_multipart([b"", *wire.encode(type_, request_id, fields)])
        except zmq.Again:
            raise ServerUnavailable(f"render server {self.endpoint}: cannot send (no "
                                    f"connection within {self.timeout_s:.0f} s)") from None
        self.pending = request_id
        return request_id

    def receive(self, request_id: str, timeout_s: float | None = None) -> wire.Message:
        """Wait for the reply to `request_id`; drop late replies to earlier requests."""
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while True:
            left_ms = int(max(0.0, deadline - time.monotonic()) * 1000)
            if not self._sock.poll(left_ms, zmq.POLLIN):
                raise ServerUnavailable(
                    f"render server {self.endpoint} did not answer within "
                    f"{self.timeout_s if timeout_s is None else timeout_s:.0f} s"
                )
            frames = self._sock.recv_multipart()
            if frames and frames[0] == b"":
                frames = frames[1:]
            try:
                msg = wire.decode(frames)
            except wire.ProtocolError as exc:
                raise ServerError(self.endpoint, exc.code, f"undecodable reply: {exc}") from exc
            if msg.id != request_id:
                continue
            self.pending = None
            if msg.type == "error":
                raise ServerError(self.endpoint, str(msg.fields.get("code")),
                                  str(msg.fields.get("message")))
            return msg

    @property
    def socket(self) -> zmq.Socket:
        """The DEALER socket, for polling many clients at once (zmq.Poller)."""
        return self._sock

    def poll(self, timeout_ms: int = 0) -> bool:
        return bool(self._sock.poll(timeout_ms, zmq.POLLIN))

    def request(self, type_: str, fields: Mapping[str, Any] | None = None,
                timeout_s: float | None = None) -> wire.Message:
        return self.receive(self.send(type_, fields), timeout_s)
