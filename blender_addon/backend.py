"""The real renderer behind the server: one scene built once in this bpy process.

Relative imports only: inside an installed extension this package is `bl_ext.<repo>.autosim`,
not `blender_addon`.
"""

from __future__ import annotations

from typing import Any

from protocol.space import ParameterSpace

from . import render
from .scenes import SceneHandle, load, space_dict
from .scenes import classes as scene_classes


class BpyBackend:
    """Builds `scene` into the current Blender file and renders named latents."""

    def __init__(self, scene: str, *, threads: int = 0, device: str = "CPU",
                 space: ParameterSpace | None = None, width: int = 64, height: int = 64) -> None:
        self._init(scene, space)
        self._handle = self._module.build()
        self.device = render.configure(self._handle.scene, width, height,
                                       device=device, threads=threads or None)

    def _init(self, scene: str, space: ParameterSpace | None) -> None:
        import bpy

        self.scene = scene
        self.classes = scene_classes(scene)
        self.space = space or ParameterSpace.from_dict(space_dict(scene))
        check_space_fits(scene, self.space)
        self.blender_version = bpy.app.version_string
        self._module = load(scene)

    @classmethod
    def from_handle(cls, handle: SceneHandle, *, space: ParameterSpace | None = None,
                    device: str = "") -> BpyBackend:
        """Wrap a scene that build() already made (the GUI's): no rebuild, no reconfigure.

        Renders change only what apply() and the resolution touch, so the artist's scene stays
        as it is otherwise."""
        self = cls.__new__(cls)
        self._init(handle.name, space)
        self._handle = handle
        self.device = device or str(handle.scene.cycles.device)
        return self

    @property
    def handle(self) -> SceneHandle:
        return self._handle

    def render(self, latent: dict[str, Any], width: int, height: int) -> render.RenderResult:
        render.set_resolution(self._handle.scene, width, height)
        placed = self._module.apply(self._handle, latent)
        return render.render_frame(self._handle.scene, placed)

    def close(self) -> None:
        """Nothing to release: the bpy process ends with the server."""


def check_space_fits(scene: str, space: ParameterSpace) -> None:
    """ValueError unless `space` has the scene's parameters (names and latent layout)."""
    default = ParameterSpace.from_dict(space_dict(scene))
    if space.latent_dim != default.latent_dim or space.names != default.names:
        raise ValueError(f"parameter space does not fit scene {scene!r}: expected parameters "
                         f"{default.names}, got {space.names}")
