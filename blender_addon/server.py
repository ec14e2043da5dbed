"""The render server's request handling: bpy-free, driven by an injected backend.

One `RenderServer.step()` serves whatever is waiting on the socket and returns; the headless
entry point calls it in a blocking loop, the Blender UI from a timer (timers never fire
headless, see ENVIRONMENT.md). `handle()` maps request frames to reply frames and never raises,
so a malformed request costs one error reply and nothing else.
"""

from __future__ import annotations

import itertools
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from protocol import wire
from protocol.space import SpaceError

from .heartbeat import Heartbeat, HeartbeatOut, heartbeat_address, split_envelope
from .render_request import RETURNABLE as RETURNABLE
from .render_request import RenderJob, RequestError
from .server_types import Backend, Limits, ServerState

SERVER_NAME = "autosim-render-server"
FEATURE_LEVEL = 2  # protocol v2: ping + heartbeat socket (docs/protocol.md 9); envelope v stays 1
# close() waits up to this long for replies still queued (the last one before shutdown or a
# recycle can be hundreds of MB); LINGER 0 would drop them as the process exits
CLOSE_LINGER_MS = 5000


class RenderServer:
    """Protocol v1 over a ZeroMQ ROUTER socket (REQ and DEALER clients both work)."""

    def __init__(
        self,
        backend: Backend,
        *,
        limits: Limits | None = None,
        on_change: Callable[[ServerState], None] | None = None,
        log: Callable[[str], None] | None = None,
        track_peers: bool = False,
        max_renders: int = 0,
    ) -> None:
        """track_peers: watch connections (a ZeroMQ socket monitor) so that the optimizer's
        name is cleared when its last connection closes (the GUI's status line)."""
        self.backend = backend
        self.track_peers = track_peers
        self._monitor = None
        self.limits = limits or Limits()
        self.state = ServerState(space=backend.space)
        self.on_change = on_change
        self.log = log or (lambda _msg: None)
        self._item_counter = itertools.count()
        self._ctx = None
        self._sock = None
        self._auth = None
        self.endpoint = ""
        # item ids unique across servers and restarts: this process's random prefix
        self._instance = uuid.uuid4().hex[:12]
        # recycle: stop after this many images (0: never), so a supervisor starts a fresh one
        self.max_renders = max_renders
        self.rendered_total = 0
        self._heartbeat: Heartbeat | HeartbeatOut | None = None
        self._connected = False
        self._rejoin = threading.Event()
        self._started = time.monotonic()

    # ---------------------------------------------------------------- socket
    def bind(self, address: str = "tcp://127.0.0.1:5555", curve: str | None = None,
             heartbeat: str | None = "auto") -> str:
        """Bind the ROUTER socket; returns the resolved endpoint (ports given as * resolved).
        curve: a key folder (protocol.curve); required on any non-loopback address.
        heartbeat: where the heartbeat socket binds ("auto": the same host, any free port;
        None: no heartbeat socket, `ping` is then answered in turn on the main socket only)."""
        import zmq

        from protocol import curve as curve_keys

        if curve is None and not curve_keys.is_loopback(address):
            raise OSError(f"refusing to serve {address} without authentication: anyone who "
                          f"can reach it could render and change psi; make keys with `autosim "
                          f"keys --out DIR` and pass --curve DIR (or bind 127.0.0.1)")
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.MAXMSGSIZE, self.limits.max_message_bytes)
        try:
            if curve is not None:
                self._auth = curve_keys.secure_server(self._sock, self._ctx, curve)
            self._sock.bind(address)
        except zmq.ZMQError as exc:
            self.close()
            raise OSError(f"cannot bind render server to {address}: {exc}") from exc
        except curve_keys.KeysError as exc:
            self.close()
            raise OSError(f"--curve: {exc}") from None
        self.endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        if heartbeat is not None:
            hb_address = heartbeat_address(address) if heartbeat == "auto" else heartbeat
            try:
                self._heartbeat = Heartbeat(self._ctx, hb_address, curve, self.status)
            except zmq.ZMQError as exc:
                self.close()
                raise OSError(f"cannot bind the heartbeat socket to {hb_address}: {exc}") from exc
            self._heartbeat.start()
        if self.track_peers:
            self._monitor = self._sock.get_monitor_socket(
                zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
        return self.endpoint

    def connect(self, address: str, curve: str | None = None, heartbeat_s: float = 2.0) -> str:
        """Protocol v2, servers join the optimizer: connect a DEALER to the optimizer's
        ROUTER (`autosim optimize --listen`), announce this server with `ready`, then serve
        what arrives over that connection. A heartbeat thread beats on a second connection
        (its own DEALER); an optimizer that does not know this server (it restarted, or
        presumed it dead) answers a beat with `rejoin`, and the next step() sends `ready`
        again. curve: here the render server is the CURVE *client* (client pair + the
        listener's server.key); required off loopback."""
        import zmq

        from protocol import curve as curve_keys

        if curve is None and not curve_keys.is_loopback(address):
            raise OSError(f"refusing to connect to {address} without authentication; make "
                          f"keys with `autosim keys --out DIR` and pass --curve DIR")
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.MAXMSGSIZE, self.limits.max_message_bytes)
        self._sock.setsockopt(zmq.IDENTITY, self._instance.encode())
        try:
            if curve is not None:
                curve_keys.secure_client(self._sock, curve)
            self._sock.connect(address)
        except zmq.ZMQError as exc:
            self.close()
            raise OSError(f"cannot connect render server to {address}: {exc}") from exc
        except curve_keys.KeysError as exc:
            self.close()
            raise OSError(f"--curve: {exc}") from None
        self.endpoint = address
        self._connected = True
        self._rejoin = threading.Event()
        self._rejoin.set()  # the first step() announces this server
        if heartbeat_s > 0:
            self._heartbeat = HeartbeatOut(self._ctx, address, curve, self.status,
                                            self._instance, heartbeat_s, self._rejoin)
            self._heartbeat.start()
        return address

    def _ready_fields(self) -> dict[str, Any]:
        return {"worker": self._instance, **self._hello_fields()}

    def _poll_peers(self) -> None:
        """Count connections; the last one closing means the optimizer left."""
        import zmq
        from zmq.utils.monitor import recv_monitor_message

        while self._monitor is not None and self._monitor.poll(0, zmq.POLLIN):
            event = recv_monitor_message(self._monitor)["event"]
            if event == zmq.EVENT_ACCEPTED:
                self.state.peers += 1
            elif event == zmq.EVENT_DISCONNECTED:
                self.state.peers = max(self.state.peers - 1, 0)
                if self.state.peers == 0 and self.state.client:
                    self.state.client = ""
                    self._changed()

    def step(self, timeout_ms: int = 0, max_messages: int = 16) -> bool:
        """Serve waiting requests (waiting up to timeout_ms for the first); False after shutdown."""
        import zmq

        if self._sock is None:
            raise RuntimeError("RenderServer.step() before bind()")
        self._poll_peers()
        if self._connected and self._rejoin.is_set():
            self._rejoin.clear()
            self._sock.send_multipart([b"", *wire.encode("ready", self._instance,
                                                         self._ready_fields())])
        for i in range(max_messages):
            if not self._sock.poll(timeout_ms if i == 0 else 0, zmq.POLLIN):
                break
            raw = self._sock.recv_multipart(copy=True)
            if self._connected:  # DEALER: [b"", *frames] from the optimizer's ROUTER
                envelope, frames = ([b""], raw[1:]) if raw and raw[0] == b"" else ([], raw)
            else:
                envelope, frames = split_envelope(raw)
            if envelope is None:
                continue  # not even a routable message
            self._sock.send_multipart(envelope + self.handle(frames))
            if self.state.shutdown_requested:
                return False
        return not self.state.shutdown_requested

    def serve_forever(self, poll_ms: int = 200) -> None:
        """Blocking loop for headless servers; returns on `shutdown`, Ctrl-C propagates."""
        while self.step(timeout_ms=poll_ms):
            pass

    @property
    def heartbeat_endpoint(self) -> str:
        return self._heartbeat.endpoint if self._heartbeat is not None else ""

    def status(self) -> dict[str, Any]:
        """The `pong` fields; read by the heartbeat thread too (plain attribute reads)."""
        st = self.state
        return {"busy": bool(st.busy), "request": st.busy, "progress": st.progress,
                "images": st.images,
                "generation": st.generation, "instance": self._instance,
                "uptime_s": round(time.monotonic() - self._started, 3)}

    def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._monitor is not None:
            self._sock.disable_monitor()
            self._monitor.close(0)
            self._monitor = None
        if self._sock is not None:
            self._sock.close(CLOSE_LINGER_MS)
            self._sock = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    # -------------------------------------------------------------- handling
    def handle(self, frames: Sequence[bytes]) -> list[bytes]:
        """Request frames -> reply frames. Never raises."""
        self.state.requests += 1
        request_id: str | None = None
        try:
            msg = wire.decode(frames, max_bytes=self.limits.max_message_bytes, expect_request=True)
            request_id = msg.id
            fields = getattr(self, f"_on_{msg.type}")(msg)
            return wire.reply(msg, fields)
        except wire.ProtocolError as exc:
            return self._error(exc.request_id or request_id, exc.code, str(exc))
        except RequestError as exc:
            return self._error(request_id, exc.code, exc.message)
        except Exception as exc:  # a bug or a renderer crash must not take the server down
            self.log(traceback.format_exc())
            return self._error(request_id, "internal", f"{type(exc).__name__}: {exc}")

    def _error(self, request_id: str | None, code: str, message: str) -> list[bytes]:
        self.state.errors += 1
        self.state.last_error = f"{code}: {message}"
        self.log(f"error reply ({code}): {message}")
        return wire.error_reply(request_id, code, message)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.state)

    def _params_fields(self) -> dict[str, Any]:
        return {
            "space": self.state.space.to_dict(),
            "psi": self.state.space.psi.tolist(),
            "generation": self.state.generation,
        }

    def _on_hello(self, msg: wire.Message) -> dict[str, Any]:
        client = msg.fields.get("client")
        self.state.new_run()
        if client:
            self.state.client = str(client)[:200]
        self._changed()
        return self._hello_fields()

    def _hello_fields(self) -> dict[str, Any]:
        return {
            "protocol": wire.PROTOCOL_VERSION,
            "server": SERVER_NAME,
            "blender": self.backend.blender_version,
            "scene": self.backend.scene,
            "classes": list(self.backend.classes),
            **self._params_fields(),
            "feature_level": FEATURE_LEVEL,
            **({"heartbeat": self.heartbeat_endpoint} if self._heartbeat is not None else {}),
            **({"description": desc.to_dict()}
               if (desc := getattr(self.backend, "description", None)) is not None else {}),
        }

    def _on_get_params(self, msg: wire.Message) -> dict[str, Any]:
        return self._params_fields()

    def _on_set_params(self, msg: wire.Message) -> dict[str, Any]:
        expected = msg.fields.get("expected_generation")
        if expected is not None and expected != self.state.generation:
            raise RequestError(
                "stale_generation",
                f"expected_generation {expected} but the server is at {self.state.generation}",
            )
        psi = np.asarray(msg.fields["psi"], dtype=np.float64).ravel()
        try:
            space = self.state.space.with_psi(psi)
        except SpaceError as exc:
            raise RequestError("bad_value", f"psi: {exc}") from exc
        self.state.space = space
        self.state.generation += 1
        self.state.updates += 1
        if msg.fields.get("client"):
            self.state.client = str(msg.fields["client"])[:200]
        if msg.fields.get("metrics"):
            self.state.metrics = {str(k): float(v) for k, v in msg.fields["metrics"].items()}
        if msg.fields.get("metric_name"):
            self.state.metric_name = str(msg.fields["metric_name"])[:64]
        self._changed()
        return {"generation": self.state.generation}

    def _on_shutdown(self, msg: wire.Message) -> dict[str, Any]:
        self.state.shutdown_requested = True
        return {}

    def _on_ping(self, msg: wire.Message) -> dict[str, Any]:
        return self.status()

    def _on_render(self, msg: wire.Message) -> dict[str, Any]:
        self.state.busy, self.state.progress = msg.id or "-", 0
        try:
            return self._render(msg)
        finally:
            self.state.busy = ""

    def _render(self, msg: wire.Message) -> dict[str, Any]:
        job = RenderJob.parse(msg.fields, self.state.space, self.limits, self.state.generation)

        def item_id() -> str:
            return f"{self._instance}-{self.state.generation}-{next(self._item_counter)}"

        def rendered_one() -> None:
            self.state.progress += 1

        items = job.run(self.state.space, self.backend, self.log, item_id,
                        self.state.generation, rendered_one)
        n = len(items)
        self.state.images += n
        self.rendered_total += n
        self._changed()
        out: dict[str, Any] = {"generation": self.state.generation, "items": items}
        if self.max_renders and self.rendered_total >= self.max_renders:
            out["recycle"] = True  # protocol v2: this server stops after this reply
            self.state.shutdown_requested = True
            self.log(f"recycling: {self.rendered_total} images rendered (--max-renders "
                     f"{self.max_renders})")
        return out
