"""The simulator the optimizer sees: q_psi sampled here, images rendered by N servers.

Latents are sampled on the optimizer side from the shared ParameterSpace, so the score term uses
exactly the latents that were rendered, and a batch is reproducible whatever the number of servers.
Work is split across servers and requested concurrently; a server that dies or times out is
dropped (its share goes to the others) and named in the error if none is left.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import zmq

from optimizer.simulators.client import RenderClient, ServerError, ServerUnavailable
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
                 name: str = "autosim-optimizer", curve: str | None = None) -> None:
        if not endpoints:
            raise ValueError("RemoteSimulator needs at least one render server endpoint")
        self._ctx = zmq.Context()
        self.clients = [RenderClient(e, timeout_s=timeout_s, context=self._ctx, name=name,
                                     curve=curve) for e in endpoints]
        self.dead: dict[str, str] = {}
        hellos = [c.request("hello", {"client": name}) for c in self.clients]
        scenes = {h.fields["scene"] for h in hellos}
        if len(scenes) != 1:
            raise ValueError(f"render servers serve different scenes: {sorted(scenes)}")
        first = hellos[0].fields
        self.scene: str = first["scene"]
        self.classes: list[str] = list(first["classes"])
        self.blender: str = first["blender"]
        self.space = ParameterSpace.from_dict(first["space"])
        self.generation = int(first["generation"])

    def close(self) -> None:
        for c in self.clients:
            c.close()
        self._ctx.term()

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
                generations.append(client.request("set_params", fields).fields["generation"])
            except (ServerUnavailable, ServerError) as exc:
                self.dead[client.endpoint] = str(exc)
        self._require_alive()
        self.generation = max(generations) if generations else self.generation

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.space.sample(n, rng)

    def render(self, latents: np.ndarray, width: int = 64, height: int = 64) -> Batch:
        """Render explicit latents across the live servers; retries a dead server's share."""
        latents = self.space.validate_latents(latents)
        results: dict[int, dict] = {}
        todo = list(range(len(latents)))
        while todo:
            alive = self._require_alive()
            chunks = [c for c in np.array_split(np.array(todo), len(alive)) if len(c)]
            sent = []
            for client, chunk in zip(alive, chunks):
                rid = client.send("render", {"latents": latents[chunk], "width": width,
                                             "height": height})
                sent.append((client, chunk, rid))
            todo = []
            for client, chunk, rid in sent:
                try:
                    items = client.receive(rid).fields["items"]
                except ServerUnavailable as exc:
                    self.dead[client.endpoint] = str(exc)
                    todo.extend(chunk.tolist())
                    continue
                except ServerError as exc:
                    if exc.code in ("render_failed", "internal"):
                        raise
                    self.dead[client.endpoint] = str(exc)
                    todo.extend(chunk.tolist())
                    continue
                for index, item in zip(chunk.tolist(), items):
                    results[index] = item
        return self._batch(latents, [results[i] for i in range(len(latents))])

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
        source = iter(chunks)
        retry: collections.deque = collections.deque()  # (seq, latents) to send again
        inflight = {c.endpoint: collections.deque() for c in self.clients}
        done: dict[int, Batch] = {}
        sent_seq = next_out = 0
        exhausted = False
        while True:
            for client in self._require_alive():  # top every live server up to `depth`
                queue = inflight[client.endpoint]
                while len(queue) < depth:
                    if retry:
                        seq, lat = retry.popleft()
                    elif not exhausted:
                        try:
                            lat = self.space.validate_latents(next(source))
                        except StopIteration:
                            exhausted = True
                            break
                        seq, sent_seq = sent_seq, sent_seq + 1
                    else:
                        break
                    rid = client.send("render", {"latents": lat, "width": width,
                                                 "height": height})
                    queue.append((seq, lat, rid, time.monotonic()))
            while next_out in done:
                yield done.pop(next_out)
                next_out += 1
            busy = [c for c in self.alive if inflight[c.endpoint]]
            if not busy:
                if exhausted and not retry:
                    return
                continue
            self._receive_one(busy, inflight, done, retry)

    def _receive_one(self, busy: list[RenderClient], inflight: dict, done: dict,
                     retry: collections.deque) -> None:
        """Wait for the oldest reply of any busy server (a server answers in order)."""
        poller = zmq.Poller()
        for c in busy:
            poller.register(c.socket, zmq.POLLIN)
        ready = {sock for sock, _ in poller.poll(timeout=1000)}
        now = time.monotonic()
        for client in busy:
            queue = inflight[client.endpoint]
            seq, lat, rid, sent = queue[0]
            if client.socket not in ready:
                if now - sent > client.timeout_s:  # oldest reply overdue: presume it dead
                    self.dead[client.endpoint] = f"no reply within {client.timeout_s:.0f} s"
                    retry.extend((q[0], q[1]) for q in queue)
                    queue.clear()
                continue
            try:
                items = client.receive(rid, timeout_s=client.timeout_s).fields["items"]
            except (ServerUnavailable, ServerError) as exc:
                if isinstance(exc, ServerError) and exc.code in ("render_failed", "internal"):
                    raise
                self.dead[client.endpoint] = str(exc)
                retry.extend((q[0], q[1]) for q in queue)
                queue.clear()
                continue
            queue.popleft()
            done[seq] = self._batch(lat, items)

    def shutdown_servers(self) -> None:
        for client in self.alive:
            try:
                client.request("shutdown", timeout_s=5)
            except (ServerUnavailable, ServerError):
                pass
