"""Dropped connections, from ZeroMQ's socket monitor. A killed server's kernel closes its TCP
connections at once, long before its heartbeats have been missed `liveness` times; a drop only
makes the server a suspect (ZeroMQ reconnects a live one within ~0.1 s), and one that has not
been heard from within a heartbeat period after it is dead."""

from __future__ import annotations

import zmq


class Disconnects:
    """Counts EVENT_DISCONNECTED on one socket; close() before the socket is closed."""

    def __init__(self, sock: zmq.Socket) -> None:
        self._sock = sock
        self._monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)

    def poll(self) -> int:
        """Disconnections since the last call (never blocks)."""
        n = 0
        while self._monitor is not None and self._monitor.poll(0, zmq.POLLIN):
            frames = self._monitor.recv_multipart()
            n += int(int.from_bytes(frames[0][:2], "little") == zmq.EVENT_DISCONNECTED)
        return n

    def close(self) -> None:
        if self._monitor is None:
            return
        try:
            self._sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self._monitor.close(0)
        self._monitor = None
