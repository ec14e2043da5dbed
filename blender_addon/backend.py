"""The real renderer behind the server: one scene built once in this bpy process."""

from __future__ import annotations

from typing import Any

from blender_addon import render
from blender_addon.scenes import classes as scene_classes
from blender_addon.scenes import load, space_dict
from protocol.space import ParameterSpace


class BpyBackend:
    """Builds `scene` into the current Blender file and renders named latents."""

    def __init__(self, scene: str, *, threads: int = 0, device: str = "CPU",
                 space: ParameterSpace | None = None, width: int = 64, height: int = 64) -> None:
        import bpy

        self.scene = scene
        self.classes = scene_classes(scene)
        self.space = space or ParameterSpace.from_dict(space_dict(scene))
        default = ParameterSpace.from_dict(space_dict(scene))
        if self.space.latent_dim != default.latent_dim or self.space.names != default.names:
            raise ValueError(f"parameter space does not fit scene {scene!r}: expected parameters "
                             f"{default.names}")
        self.blender_version = bpy.app.version_string
        self._module = load(scene)
        self._handle = self._module.build()
        self.device = render.configure(self._handle.scene, width, height,
                                       device=device, threads=threads or None)

    def render(self, latent: dict[str, Any], width: int, height: int) -> render.RenderResult:
        render.set_resolution(self._handle.scene, width, height)
        placed = self._module.apply(self._handle, latent)
        return render.render_frame(self._handle.scene, placed)

    def close(self) -> None:
        """Nothing to release: the bpy process ends with the server."""
