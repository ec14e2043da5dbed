"""What the render server is given (a Backend, its Limits) and what it shows (ServerState):
bpy-free, like the server itself (blender_addon.server)."""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from protocol import wire
from protocol.space import ParameterSpace


class Backend(Protocol):
    """What the server needs from a renderer (the bpy backend, or a fake in tests)."""

    scene: str
    classes: list[str]
    blender_version: str
    space: ParameterSpace

    def render(self, latent: dict[str, Any], width: int, height: int) -> Any:
        """Render one clipped, named latent; returns an object with image, mask, instances,
        boxes, classes (numpy arrays) and render_s."""
        ...


@dataclasses.dataclass(frozen=True)
class Limits:
    """Refuse absurd requests before they cost minutes or gigabytes."""

    max_n: int = 512
    max_side: int = 2048
    max_pixels_per_request: int = 64 * 1024 * 1024
    max_message_bytes: int = wire.DEFAULT_MAX_BYTES
    default_width: int = 64
    default_height: int = 64


@dataclasses.dataclass
class ServerState:
    """What the UI shows: the current distribution and who is steering it."""

    space: ParameterSpace
    generation: int = 0
    client: str = ""
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    metric_name: str = ""  # what val_metric measures (e.g. "mIoU"), when the optimizer says
    requests: int = 0
    errors: int = 0
    images: int = 0
    updates: int = 0  # set_params received since the last hello
    last_error: str = ""
    shutdown_requested: bool = False
    peers: int = 0  # connected clients (track_peers only)
    busy: str = ""  # id of the render request in progress ("" when idle)
    progress: int = 0  # items rendered so far in that request

    def new_run(self) -> None:
        """A hello starts a run: the counters and metrics shown for the last one go."""
        self.requests, self.errors, self.images, self.updates = 1, 0, 0, 0
        self.metrics, self.metric_name, self.last_error = {}, "", ""
