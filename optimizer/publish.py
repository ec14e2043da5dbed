"""`--publish tcp://ADDR:PORT`: the optimizer publishes every psi update and its metric.

A PUB socket that binds (loopback by default; any other address needs `--curve DIR`, and the
socket is then a CURVE server with the farm's key folder, so only authorized watchers decode
anything). Per iteration one multipart message, JSON only (no pickle):

    [b"autosim.run", {"version": 1, "run", "scene", "metric_name", "iteration",
                      "images_rendered", "val_metric", "psi": [...], "space": {...} | absent,
                      "final": bool}]

`space` (ParameterSpace.to_dict() at that psi) rides on the first message and every
SPACE_EVERY-th one, so a watcher that subscribes late can still decode psi. `final` is true on
the run's last iteration. A PUB drops messages nobody subscribed to yet (ZeroMQ's slow
joiner): the socket waits SETTLE_S after binding for watchers that were already dialling.
The add-on's "Watch a run" (blender_addon/watch.py) is the subscriber.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from optimizer.errors import CliError
from protocol import curve as curve_keys

TOPIC = b"autosim.run"
VERSION = 1
SPACE_EVERY = 10
SETTLE_S = 0.3
LINGER_MS = 2000


def check(endpoint: str | None, curve: str | None) -> None:
    """Refuse, before anything starts, a non-loopback --publish without --curve keys."""
    if endpoint and not curve and not curve_keys.is_loopback(endpoint):
        raise CliError(f"--publish {endpoint} is not a loopback address: anyone could watch "
                       f"the run; give --curve DIR (autosim keys) or publish on 127.0.0.1")


def message(run: str, scene: str, metric_name: str, record: dict[str, Any],
            space: dict[str, Any] | None, final: bool) -> list[bytes]:
    """The two frames of one update (a pure function: tests and third parties build them)."""
    from optimizer.run import strict_json

    body: dict[str, Any] = {
        "version": VERSION, "run": run, "scene": scene, "metric_name": metric_name,
        "iteration": int(record["iteration"]), "images_rendered": int(record["images_rendered"]),
        "val_metric": record.get("val_metric"), "psi": list(record["psi"]), "final": bool(final)}
    if space is not None:
        body["space"] = space
    return [TOPIC, json.dumps(strict_json(body), allow_nan=False).encode()]


class Publisher:
    """A bound PUB socket; `hook(...)` makes a Runner on_iteration callback."""

    def __init__(self, endpoint: str, *, run: str, scene: str, metric_name: str,
                 curve: str | None = None, space_every: int = SPACE_EVERY,
                 settle_s: float = SETTLE_S) -> None:
        import zmq

        check(endpoint, curve)
        self.run, self.scene, self.metric_name = run, scene, metric_name
        self.space_every = max(1, int(space_every))
        self.sent = 0
        self._ctx = zmq.Context()
        self._auth = None
        self._sock = self._ctx.socket(zmq.PUB)
        self._sock.setsockopt(zmq.LINGER, LINGER_MS)
        try:
            if curve:
                try:
                    self._auth = curve_keys.secure_server(self._sock, self._ctx, curve)
                except curve_keys.KeysError as exc:
                    raise CliError(f"--curve: {exc}") from None
            try:
                self._sock.bind(endpoint)
            except zmq.ZMQError as exc:
                raise CliError(f"--publish {endpoint}: cannot bind ({exc})") from None
        except BaseException:
            self.close()
            raise
        self.endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        if settle_s > 0:
            time.sleep(settle_s)

    def publish(self, record: dict[str, Any], space: Callable[[], dict[str, Any]],
                final: bool = False) -> None:
        """Send one update; `space()` is called only for the messages that carry it."""
        with_space = self.sent % self.space_every == 0
        self._sock.send_multipart(message(self.run, self.scene, self.metric_name, record,
                                          space() if with_space else None, final))
        self.sent += 1

    def hook(self, algo: Any, budget_images: int,
             then: Callable[[dict[str, Any]], None] | None = None
             ) -> Callable[[dict[str, Any]], None]:
        """on_iteration for a Runner of `algo` under `budget_images` (final: no step fits)."""
        def on_iteration(record: dict[str, Any]) -> None:
            final = algo.budget.images + algo.images_per_step > budget_images
            self.publish(record, algo.space.to_dict, final)
            if then is not None:
                then(record)
        return on_iteration

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()  # lingers LINGER_MS for the last messages
            self._sock = None
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        self._ctx.term()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
