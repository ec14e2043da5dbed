"""What building a scene made: the one value every scene source (a built-in example, a bound
.blend) hands to the backend, bpy-free so both can import it without importing each other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SceneHandle:
    """What build() made: the bpy scene and named references into it (opaque to callers)."""

    name: str
    scene: Any  # bpy.types.Scene
    objects: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
