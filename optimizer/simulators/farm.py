"""Render servers that join the optimizer (protocol v2): `autosim optimize --listen ADDR`.

The optimizer binds a ROUTER; each render server (`autosim serve --connect ADDR`) connects a
DEALER, announces itself with `ready` (the hello fields) and is then sent `render` and
`set_params` requests over that connection. Servers join and leave at any time:

* credit: at most `credit` requests in flight per server; a server gets its next chunk when it
  returns one, so faster servers (GPU nodes) get more work;
* heartbeats: every server beats on a second connection (`heartbeat`, answered here); a server
  silent for heartbeat_s * liveness, or one that beats but finishes no image in timeout_s, is
  dropped and its chunks go back to the queue (latents are explicit: they render identically
  elsewhere);
* a reply nobody waits for (its server was presumed dead, or its chunk already came back) is
  discarded by request id; a beat from a server this side does not know gets `rejoin`, and
  the server sends `ready` again.

Same interface as RemoteSimulator: space, classes, render, render_stream, set_psi, close.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import zmq

from optimizer.simulators.chunks import ChunkQueue
from optimizer.simulators.client import ServerError, ServerUnavailable
from optimizer.simulators.disconnects import Disconnects
from optimizer.simulators.remote import RemoteSimulator
from protocol import wire
from protocol.scene import from_hello
from protocol.scene_defaults import SceneDefaults
from protocol.space import ParameterSpace


@dataclasses.dataclass
class Worker:
    identity: bytes
    worker: str
    joined: float
    heard: float
    inflight: dict = dataclasses.field(default_factory=dict)  # rid -> (seq, latents, sent)
    progress: tuple = ()
    progress_at: float = 0.0
    rendered: int = 0


class FarmSimulator:
    metric_name = ""

    def __init__(self, listen: str, *, curve: str | None = None, timeout_s: float = 120.0,
                 heartbeat_s: float = 2.0, liveness: int = 3, credit: int = 2,
                 min_servers: int = 1, join_timeout_s: float = 600.0,
                 name: str = "autosim-optimizer", log=None) -> None:
        from protocol import curve as curve_keys

        if curve is None and not curve_keys.is_loopback(listen):
            raise OSError(f"refusing to listen on {listen} without authentication: anyone "
                          f"who can reach it could join as a render server; make keys with "
                          f"`autosim keys --out DIR` and pass --curve DIR (or listen on "
                          f"127.0.0.1)")
        if credit < 1 or liveness < 1 or heartbeat_s <= 0:
            raise ValueError("credit and liveness must be >= 1, heartbeat_s > 0")
        self.timeout_s, self.heartbeat_s, self.liveness = timeout_s, heartbeat_s, liveness
        self.credit, self.name = credit, name
        self.log = log or (lambda _msg: None)
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._auth = None
        try:
            if curve is not None:  # the listener is the CURVE server: servers are clients
                self._auth = curve_keys.secure_server(self._sock, self._ctx, curve)
            self._sock.bind(listen)
        except (zmq.ZMQError, curve_keys.KeysError) as exc:
            self.close()
            raise OSError(f"cannot listen on {listen}: {exc}") from exc
        self.endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._drops = Disconnects(self._sock)
        self._suspect_at: float | None = None  # a connection dropped then (disconnects.py)
        self.workers: dict[bytes, Worker] = {}
        self.left: dict[str, str] = {}  # worker -> why it was dropped
        self.dead_at: dict[str, float] = {}
        self._ids = itertools.count()
        self._queue: ChunkQueue | None = None  # the running stream's
        self.space: ParameterSpace | None = None
        self.generation = 0
        self.wait_for_servers(min_servers, join_timeout_s)

    # -------------------------------------------------------------- plumbing
    def close(self) -> None:
        if getattr(self, "_drops", None) is not None:
            self._drops.close()
            self._drops = None
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        self._ctx.term()

    def __enter__(self) -> FarmSimulator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def wait_for_servers(self, n: int, timeout_s: float) -> None:
        """Serve joins and beats until n render servers have joined."""
        deadline = time.monotonic() + timeout_s
        while len(self.workers) < n:
            if time.monotonic() > deadline:
                raise ServerUnavailable(f"{len(self.workers)} of {n} render servers joined "
                                        f"{self.endpoint} within {timeout_s:.0f} s")
            self._pump(200)

    def _send(self, identity: bytes, type_: str, fields: dict[str, Any] | None = None) -> str:
        rid = f"{self.name}-{next(self._ids)}"
        try:
            self._sock.send_multipart([identity, b"", *wire.encode(type_, rid, fields)],
                                      zmq.NOBLOCK)
        except (zmq.Again, zmq.ZMQError):  # gone (ROUTER_MANDATORY): the beat will tell
            pass
        return rid

    def _drop(self, w: Worker, why: str) -> list[tuple[int, np.ndarray]]:
        self.workers.pop(w.identity, None)
        self.left[w.worker] = why
        self.dead_at[w.worker] = time.monotonic()
        self.log(f"render server {w.worker} dropped: {why}")
        return [(seq, lat) for seq, lat, _sent in w.inflight.values()]

    def _pump(self, timeout_ms: int) -> list[tuple[str, wire.Message]]:
        """Read what arrived (joins, beats, replies) and check liveness; returns the render
        replies (rid, message) of live servers."""
        got: list[tuple[str, wire.Message]] = []
        if self._sock.poll(timeout_ms, zmq.POLLIN):
            while self._sock.poll(0, zmq.POLLIN):
                raw = self._sock.recv_multipart()
                identity, frames = raw[0], raw[2:] if len(raw) > 1 and raw[1] == b"" else raw[1:]
                try:
                    msg = wire.decode(frames)
                except wire.ProtocolError:
                    continue
                self._on_message(identity, msg, got)
        now = time.monotonic()
        if self._drops is not None and self._drops.poll() and self._suspect_at is None:
            self._suspect_at = now  # one ROUTER for all: whoever does not beat again is gone
        window = self.heartbeat_s * 1.5
        suspect = self._suspect_at is not None and now - self._suspect_at > window
        for w in list(self.workers.values()):
            silent = now - w.heard
            if suspect and w.heard < self._suspect_at:
                self._requeue(self._drop(w, f"its connection closed and no beat for "
                                            f"{silent:.1f} s"))
            elif silent > self.heartbeat_s * self.liveness:
                self._requeue(self._drop(w, f"no heartbeat for {silent:.1f} s"))
            elif w.inflight and now - max(w.progress_at, min(
                    s for _q, _l, s in w.inflight.values())) > self.timeout_s:
                self._requeue(self._drop(w, f"no image finished in {self.timeout_s:.0f} s"))
        if suspect:
            self._suspect_at = None
        return got

    def _requeue(self, items: list[tuple[int, np.ndarray]]) -> None:
        if self._queue is not None:
            self._queue.put_back(items)

    def _on_message(self, identity: bytes, msg: wire.Message, got: list) -> None:
        now = time.monotonic()
        if msg.type == "heartbeat":
            main = identity.removesuffix(b".heartbeat")
            w = self.workers.get(main)
            if w is None:
                self._send(identity, "heartbeat", {"rejoin": True})
                return
            w.heard = now
            progress = (msg.fields.get("request"), msg.fields.get("progress"))
            if progress != w.progress:
                w.progress, w.progress_at = progress, now
            self._send(identity, "heartbeat", {})
            return
        if msg.type == "ready":
            self._join(identity, msg, now)
            return
        w = self.workers.get(identity)
        if w is None:
            return  # a late reply of a server presumed dead: discarded
        w.heard = now
        if msg.id in w.inflight:
            got.append((msg.id, msg))  # anything else (set_params replies) needs nothing
        elif msg.fields.get("recycle"):  # a reply no longer waited for, but it exits now
            self._requeue(self._drop(w, "recycled (--max-renders)"))

    def _join(self, identity: bytes, msg: wire.Message, now: float) -> None:
        f = msg.fields
        if self.space is None:
            self.scene, self.classes = f["scene"], list(f["classes"])
            self.blender = f.get("blender", "")
            self.space = ParameterSpace.from_dict(f["space"])
            self.generation = int(f["generation"])
            self.description = from_hello(f)
            self.defaults = self.description.defaults if self.description else SceneDefaults()
        elif f.get("scene") != self.scene:
            self.log(f"render server {f.get('worker')} serves {f.get('scene')!r}, not "
                     f"{self.scene!r}: ignored")
            return
        worker = str(f.get("worker", identity.hex()))
        old = self.workers.get(identity)
        if old is not None and old.worker == worker:  # the same process again: its first beat
            old.heard = now  # overtook its `ready` and was answered `rejoin`; it still
            return           # renders what it holds
        if old is not None:  # a new process with the same id: what the old one had is lost
            self.workers.pop(identity)
            self._requeue([(seq, lat) for seq, lat, _s in old.inflight.values()])
        self.workers[identity] = Worker(identity, worker, joined=now, heard=now,
                                        progress_at=now)
        self.left.pop(self.workers[identity].worker, None)
        self.log(f"render server {self.workers[identity].worker} joined")
        if self.space is not None and f["psi"] != self.space.psi.tolist():
            self._send(identity, "set_params", self._psi_fields())

    # ------------------------------------------------------------- interface
    def _psi_fields(self, metrics: dict[str, float] | None = None) -> dict[str, Any]:
        fields: dict[str, Any] = {"psi": self.space.psi.tolist(), "client": self.name}
        if metrics:
            fields["metrics"] = {k: float(v) for k, v in metrics.items() if np.isfinite(v)}
        if self.metric_name:
            fields["metric_name"] = self.metric_name
        return fields

    def set_psi(self, psi: np.ndarray, metrics: dict[str, float] | None = None) -> None:
        """Send psi to every server (panels show it move); servers that join later get it
        on joining. Does not wait: a render never depends on the servers' psi."""
        self.space = self.space.with_psi(psi)
        self.generation += 1
        for identity in list(self.workers):
            self._send(identity, "set_params", self._psi_fields(metrics))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.space.sample(n, rng)

    _batch = RemoteSimulator._batch

    def render(self, latents: np.ndarray, width: int = 64, height: int = 64) -> Any:
        latents = self.space.validate_latents(latents)
        n = max(1, len(self.workers) * self.credit)
        parts = [c for c in np.array_split(latents, n) if len(c)]
        items: list[dict] = []
        for _lat, got in self._stream(parts, width, height):
            items.extend(got)
        return self._batch(latents, items)

    def render_stream(self, chunks: Iterable[np.ndarray], width: int = 64, height: int = 64,
                      depth: int | None = None) -> Iterator[Any]:
        """As RemoteSimulator.render_stream; depth (per-server credit) defaults to credit."""
        for lat, items in self._stream(chunks, width, height, depth):
            yield self._batch(lat, items)

    def _stream(self, chunks: Iterable[np.ndarray], width: int, height: int,
                depth: int | None = None) -> Iterator[tuple[np.ndarray, list[dict]]]:
        credit = depth or self.credit
        chunk_queue = ChunkQueue(chunks, self.space.validate_latents)
        self._queue = chunk_queue
        done: dict[int, tuple[np.ndarray, list[dict]]] = {}
        next_out = 0
        idle_since = time.monotonic()
        try:
            while True:
                for w in list(self.workers.values()):  # credit: top each server up
                    while len(w.inflight) < credit:
                        chunk = chunk_queue.next()
                        if chunk is None:
                            break
                        seq, lat = chunk
                        rid = self._send(w.identity, "render",
                                         {"latents": lat, "width": width, "height": height})
                        w.inflight[rid] = (seq, lat, time.monotonic())
                while next_out in done:
                    yield done.pop(next_out)
                    next_out += 1
                if chunk_queue.drained and next_out == chunk_queue.sent:
                    return
                if self.workers:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > self.timeout_s:
                    detail = "; ".join(f"{k}: {v}" for k, v in self.left.items())
                    raise ServerUnavailable(f"no render server left on {self.endpoint} for "
                                            f"{self.timeout_s:.0f} s ({detail})")
                for rid, msg in self._pump(self._wait_ms()):
                    w = next((w for w in self.workers.values() if rid in w.inflight), None)
                    if w is None:
                        continue
                    seq, lat, _sent = w.inflight.pop(rid)
                    if msg.type == "error":
                        code = str(msg.fields.get("code"))
                        if code in ("render_failed", "internal"):
                            raise ServerError(w.worker, code, str(msg.fields.get("message")))
                        chunk_queue.put_back(self._drop(w, f"{code}: {msg.fields.get('message')}"))
                        chunk_queue.put_back([(seq, lat)])
                        continue
                    w.progress_at = time.monotonic()
                    if chunk_queue.finish(seq):  # rendered twice (re-dispatched): counted once
                        w.rendered += len(lat)
                        done[seq] = (lat, msg.fields["items"])
                    if msg.fields.get("recycle"):  # it exits now: the rest goes elsewhere
                        chunk_queue.put_back(self._drop(w, "recycled (--max-renders)"))
        finally:
            self._queue = None

    def _wait_ms(self) -> int:
        return max(10, int(min(1.0, self.heartbeat_s / 4) * 1000))

    def shutdown_servers(self) -> None:
        for identity in list(self.workers):
            self._send(identity, "shutdown")
