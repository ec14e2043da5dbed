"""The simulator the optimizer sees: q_psi sampled here, images rendered by N servers.

Latents are sampled on the optimizer side from the shared ParameterSpace, so the score term uses
exactly the latents that were rendered, and a batch is reproducible whatever the number of servers.
Work is split across servers and requested concurrently; a server that dies or times out is
dropped (its share goes to the others) and named in the error if none is left.

Heartbeats (protocol v2, docs/protocol.md section 9): a server whose hello announces a heartbeat
socket is pinged every `heartbeat_s` on that socket (answered by a thread of its own, also while
it renders); `liveness` missed beats in a row (a SIGKILLed, SIGSTOPped or unreachable server)
mark it dead within about heartbeat_s * liveness, its work goes to the others. A server that
answers pings but makes no progress (no item finished in `timeout_s`) is dropped too. Servers
without a heartbeat socket (protocol v1) fall back on the request timeout.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import zmq

from optimizer.simulators.chunks import ChunkQueue
from optimizer.simulators.client import RenderClient, ServerError, ServerUnavailable
from optimizer.simulators.disconnects import Disconnects
from protocol import wire
from protocol.scene import from_hello
from protocol.scene_defaults import SceneDefaults
from protocol.space import ParameterSpace


@dataclasses.dataclass
class Batch:
    """Rendered samples with the latents and psi generation they came from."""

    latents: np.ndarray          # (K, latent_dim)
    images: np.ndarray           # (K, H, W, 3) uint8
    masks: np.ndarray            # (K, H, W) uint8 class ids
    instances: np.ndarray        # (K, H, W) uint16
    boxes: list[np.ndarray]      # K x (N_k, 4) float32 x0,y0,x1,y1 px
    classes: list[np.ndarray]    # K x (N_k,) int32
    item_ids: list[str]
    generation: int
    render_s: float              # summed server-side render time

    def __len__(self) -> int:
        return len(self.latents)


class RemoteSimulator:
    metric_name = ""  # what metrics["val_metric"] measures; sent so Blender panels can name it

    def __init__(self, endpoints: Sequence[str], *, timeout_s: float = 120.0,
                 name: str = "autosim-optimizer", curve: str | None = None,
                 heartbeat_s: float = 2.0, liveness: int = 3) -> None:
        if not endpoints:
            raise ValueError("RemoteSimulator needs at least one render server endpoint")
        if liveness < 1:
            raise ValueError(f"liveness must be at least 1, got {liveness}")
        self._ctx = zmq.Context()
        self.clients = [RenderClient(e, timeout_s=timeout_s, context=self._ctx, name=name,
                                     curve=curve) for e in endpoints]
        self.dead: dict[str, str] = {}
        self.heartbeat_s, self.liveness = heartbeat_s, liveness
        self.detected_s: dict[str, float] = {}  # endpoint -> silence when presumed dead
        self.dead_at: dict[str, float] = {}  # endpoint -> time.monotonic() when presumed dead
        self._beats: dict[str, _Beat] = {}
        self._watched = time.monotonic()  # last _beat(): pongs are read only while watching
        hellos = [c.request("hello", {"client": name}) for c in self.clients]
        for client, hello in zip(self.clients, hellos):
            announced = hello.fields.get("heartbeat")
            if heartbeat_s > 0 and isinstance(announced, str) and announced:
                self._beats[client.endpoint] = _Beat.connect(
                    self._ctx, _heartbeat_peer(client.endpoint, announced), curve)
        scenes = {h.fields["scene"] for h in hellos}
        if len(scenes) != 1:
            raise ValueError(f"render servers serve different scenes: {sorted(scenes)}")
        first = hellos[0].fields
        self.scene: str = first["scene"]
        self.classes: list[str] = list(first["classes"])
        self.blender: str = first["blender"]
        self.space = ParameterSpace.from_dict(first["space"])
        self.generation = int(first["generation"])
        self.description = from_hello(first)
        self.defaults = self.description.defaults if self.description else SceneDefaults()

    def close(self) -> None:
        for beat in self._beats.values():
            beat.close()
        for c in self.clients:
            c.close()
        self._ctx.term()

    # ------------------------------------------------------------ heartbeats
    def _mark_dead(self, client: RenderClient, why: str) -> None:
        if client.endpoint in self.dead:
            return
        self.dead[client.endpoint] = why
        self.dead_at[client.endpoint] = time.monotonic()
        beat = self._beats.get(client.endpoint)
        if beat is not None:
            beat.close()
        client.close()  # late replies of a server presumed dead are never read

    def _beat(self) -> None:
        """Ping due servers, read their pongs, mark the silent ones dead. Silence counts only
        while this side watches: between calls (the optimizer training) nobody reads pongs,
        so after such a gap every server gets a fresh ping and liveness - 1 intervals."""
        now = time.monotonic()
        gap = now - self._watched > self.heartbeat_s
        self._watched = now
        for client in self.alive:
            beat = self._beats.get(client.endpoint)
            if beat is None:
                continue
            beat.drain(now)
            if gap:
                beat.heard = max(beat.heard, now - self.heartbeat_s)
                beat.progress_at = max(beat.progress_at, now)
                beat.next_ping = now
            silent = now - beat.heard
            if beat.suspect_at is not None and now - beat.suspect_at > self.heartbeat_s:
                self.detected_s[client.endpoint] = silent
                self._mark_dead(client, f"its connection closed and it did not answer for "
                                        f"{now - beat.suspect_at:.1f} s")
            elif silent > self.heartbeat_s * self.liveness:
                self.detected_s[client.endpoint] = silent
                self._mark_dead(client, f"no heartbeat for {silent:.1f} s "
                                        f"({self.liveness} x {self.heartbeat_s:g} s)")
            elif now >= beat.next_ping:
                beat.ping()
                beat.next_ping = now + self.heartbeat_s

    def _wait_ms(self) -> int:
        return max(10, int(min(1.0, self.heartbeat_s / 4 if self._beats else 1.0) * 1000))

    def _request(self, client: RenderClient, type_: str,
                 fields: dict[str, Any] | None = None) -> Any:
        """One request, waiting for its reply while the server's heartbeat holds."""
        rid = client.send(type_, fields)
        deadline = time.monotonic() + client.timeout_s
        while True:
            if client.endpoint in self.dead:
                raise ServerUnavailable(self.dead[client.endpoint])
            if client.poll(self._wait_ms()):
                return client.receive(rid, timeout_s=client.timeout_s)
            self._beat()
            if time.monotonic() > deadline:
                raise ServerUnavailable(f"render server {client.endpoint} did not answer "
                                        f"within {client.timeout_s:.0f} s")

    def __enter__(self) -> RemoteSimulator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def alive(self) -> list[RenderClient]:
        return [c for c in self.clients if c.endpoint not in self.dead]

    def _require_alive(self) -> list[RenderClient]:
        alive = self.alive
        if not alive:
            detail = "; ".join(f"{e}: {why}" for e, why in self.dead.items())
            raise ServerUnavailable(f"no render server left ({detail})")
        return alive

    def set_psi(self, psi: np.ndarray, metrics: dict[str, float] | None = None) -> None:
        """Send psi to every server, so Blender panels show the distribution move."""
        self.space = self.space.with_psi(psi)
        fields: dict[str, Any] = {"psi": self.space.psi.tolist()}
        if metrics:
            fields["metrics"] = {k: float(v) for k, v in metrics.items() if np.isfinite(v)}
        if self.metric_name:
            fields["metric_name"] = self.metric_name
        generations = []
        for client in self._require_alive():
            try:
                generations.append(self._request(client, "set_params", fields)
                                   .fields["generation"])
            except (ServerUnavailable, ServerError) as exc:
                self._mark_dead(client, str(exc))
        self._require_alive()
        self.generation = max(generations) if generations else self.generation

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.space.sample(n, rng)

    def render(self, latents: np.ndarray, width: int = 64, height: int = 64) -> Batch:
        """Render explicit latents across the live servers; retries a dead server's share."""
        latents = self.space.validate_latents(latents)
        parts = [c for c in np.array_split(latents, len(self._require_alive())) if len(c)]
        items: list[dict] = []
        for _lat, got in self._stream(parts, width, height, depth=1):
            items.extend(got)
        return self._batch(latents, items)

    def _batch(self, latents: np.ndarray, ordered: list[dict]) -> Batch:
        return Batch(
            latents=latents,
            images=np.stack([it["image"] for it in ordered]),
            masks=np.stack([it["mask"] for it in ordered]),
            instances=np.stack([it["instances"] for it in ordered]),
            boxes=[np.asarray(it["boxes"], np.float32) for it in ordered],
            classes=[np.asarray(it["classes"], np.int32) for it in ordered],
            item_ids=[it["item_id"] for it in ordered],
            generation=self.generation,
            render_s=float(sum(it["render_s"] for it in ordered)),
        )

    def render_stream(self, chunks: Iterable[np.ndarray], width: int = 64, height: int = 64,
                      depth: int = 2) -> Iterator[Batch]:
        """Render a stream of latent chunks, yielding their batches in order while up to
        `depth` chunks per live server are in flight: servers render the next chunks while
        the caller writes this one, and a faster server takes more chunks. A server that
        fails or times out is dropped and its chunks go to the others (latents are explicit,
        so they render identically)."""
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        for lat, items in self._stream(chunks, width, height, depth):
            yield self._batch(lat, items)

    def _stream(self, chunks: Iterable[np.ndarray], width: int, height: int,
                depth: int) -> Iterator[tuple[np.ndarray, list[dict]]]:
        """(latents, items) per chunk, in order; the dispatcher behind render_stream."""
        chunk_queue = ChunkQueue(chunks, self.space.validate_latents)
        inflight = {c.endpoint: collections.deque() for c in self.clients}
        done: dict[int, tuple[np.ndarray, list[dict]]] = {}
        next_out = 0
        while True:
            for client in self._require_alive():  # top every live server up to `depth`
                queue = inflight[client.endpoint]
                while len(queue) < depth:
                    chunk = chunk_queue.next()
                    if chunk is None:
                        break
                    seq, lat = chunk
                    rid = client.send("render", {"latents": lat, "width": width,
                                                 "height": height})
                    queue.append((seq, lat, rid, time.monotonic()))
            while next_out in done:
                yield done.pop(next_out)
                next_out += 1
            busy = [c for c in self.alive if inflight[c.endpoint]]
            if not busy:
                if chunk_queue.drained:
                    return
                continue
            self._receive_one(busy, inflight, done, chunk_queue)

    def _receive_one(self, busy: list[RenderClient], inflight: dict, done: dict,
                     chunk_queue: ChunkQueue) -> None:
        """Wait for the oldest reply of any busy server (a server answers in order)."""
        poller = zmq.Poller()
        for c in busy:
            poller.register(c.socket, zmq.POLLIN)
        ready = {sock for sock, _ in poller.poll(timeout=self._wait_ms())}
        self._beat()
        now = time.monotonic()
        for client in busy:
            queue = inflight[client.endpoint]
            if client.endpoint in self.dead:  # heartbeat lost: its work goes to the others
                chunk_queue.put_back((q[0], q[1]) for q in queue)
                queue.clear()
                continue
            seq, lat, rid, sent = queue[0]
            if client.socket not in ready:
                beat = self._beats.get(client.endpoint)
                last = sent if beat is None else max(sent, beat.progress_at)
                if now - last > client.timeout_s:  # no reply (no item, with heartbeats)
                    self._mark_dead(client, f"no progress within {client.timeout_s:.0f} s")
                    chunk_queue.put_back((q[0], q[1]) for q in queue)
                    queue.clear()
                continue
            try:
                reply = client.receive(rid, timeout_s=client.timeout_s)
                items = reply.fields["items"]
            except (ServerUnavailable, ServerError) as exc:
                if isinstance(exc, ServerError) and exc.code in ("render_failed", "internal"):
                    raise
                self._mark_dead(client, str(exc))
                chunk_queue.put_back((q[0], q[1]) for q in queue)
                queue.clear()
                continue
            queue.popleft()
            if chunk_queue.finish(seq):
                done[seq] = (lat, items)
            if reply.fields.get("recycle"):  # it exits after this reply (--max-renders)
                self._mark_dead(client, "recycled (--max-renders)")
                chunk_queue.put_back((q[0], q[1]) for q in queue)
                queue.clear()

    def shutdown_servers(self) -> None:
        for client in self.alive:
            try:
                client.request("shutdown", timeout_s=5)
            except (ServerUnavailable, ServerError):
                pass


@dataclasses.dataclass
class _Beat:
    """One server's heartbeat socket (a DEALER to its heartbeat ROUTER) and what it said."""

    sock: zmq.Socket
    heard: float                 # last pong (or connection) time, monotonic
    next_ping: float = 0.0
    progress: tuple = ()         # (request, progress) of the last pong
    progress_at: float = 0.0     # when that last changed
    ids: Any = dataclasses.field(default_factory=itertools.count)
    drops: Disconnects | None = None
    suspect_at: float | None = None  # its connection dropped then (disconnects.py)
    suspect_ping: int = 0        # only the answer to a ping sent after the drop clears it
    sent: int = 0

    @classmethod
    def connect(cls, ctx: zmq.Context, endpoint: str, curve: str | None) -> _Beat:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 4)  # pings to a stopped server are not worth queueing
        if curve is not None:
            from protocol.curve import secure_client

            secure_client(sock, curve)
        drops = Disconnects(sock)
        sock.connect(endpoint)
        now = time.monotonic()
        return cls(sock, heard=now, progress_at=now, drops=drops)

    def close(self) -> None:
        if self.drops is not None:
            self.drops.close()
        self.sock.close(0)

    def ping(self) -> None:
        self.sent = next(self.ids)
        try:
            self.sock.send_multipart([b"", *wire.encode("ping", f"hb-{self.sent}")],
                                     zmq.NOBLOCK)
        except zmq.Again:
            pass  # not connected (yet, or any more): silence is what counts

    def drain(self, now: float) -> None:
        if self.drops is not None and self.drops.poll() and self.suspect_at is None:
            self.suspect_at = now
            self.ping()  # a live server's reconnect carries it
            self.suspect_ping = self.sent
        while self.sock.poll(0, zmq.POLLIN):
            frames = self.sock.recv_multipart()
            try:
                msg = wire.decode(frames[1:] if frames and frames[0] == b"" else frames)
            except wire.ProtocolError:
                continue
            if msg.type != "ping":
                continue
            self.heard = now
            if self.suspect_at is not None and _ping_number(msg.id) >= self.suspect_ping:
                self.suspect_at = None  # answered after the drop: it reconnected
            progress = (msg.fields.get("request"), msg.fields.get("progress"))
            if progress != self.progress:
                self.progress, self.progress_at = progress, now


def _ping_number(request_id: str) -> int:
    try:
        return int(request_id.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def _heartbeat_peer(endpoint: str, announced: str) -> str:
    """Where to reach a server's heartbeat socket: the host we reached it by, its port (it
    may announce tcp://0.0.0.0:PORT)."""
    if endpoint.startswith("tcp://") and announced.startswith("tcp://"):
        return endpoint.rsplit(":", 1)[0] + ":" + announced.rsplit(":", 1)[1]
    return announced
