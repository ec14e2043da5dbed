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
    """Builds `scene` (a built-in example, by its builder script) into the current Blender file,
    or opens a bound .blend (`blend`, or `blend=""`: the file already open); either way renders
    named latents through the scene's bindings."""

    def __init__(self, scene: str | None = None, *, blend: str | None = None,
                 threads: int = 0, device: str = "CPU", space: ParameterSpace | None = None,
                 width: int = 64, height: int = 64) -> None:
        if blend is not None:
            from .bindings import BlendScene

            module = BlendScene(blend or None)
            self._handle = module.build()  # opens and resolves: errors name the binding
            self._setup(self._handle.name, module.classes(), module, space,
                        module.description.space)
            self.description = module.description
        else:
            if scene is None:
                raise ValueError("BpyBackend needs a scene name or a .blend")
            self._init(scene, space)
            self._handle = self._module.build()
            self.description = self._handle.data["bound"].description
        self.device = render.configure(self._handle.scene, width, height,
                                       device=device, threads=threads or None)

    def _init(self, scene: str, space: ParameterSpace | None) -> None:
        self._setup(scene, scene_classes(scene), load(scene), space,
                    ParameterSpace.from_dict(space_dict(scene)))

    description = None  # the served scene's SceneDescription (sent in hello)

    def _setup(self, scene: str, classes, module, space: ParameterSpace | None,
               default: ParameterSpace) -> None:
        import bpy

        self.scene = scene
        self.classes = list(classes)
        self.space = space or default
        check_space_fits(scene, self.space, default)
        self.blender_version = bpy.app.version_string
        self._module = module

    @classmethod
    def from_handle(cls, handle: SceneHandle, *, space: ParameterSpace | None = None,
                    device: str = "") -> BpyBackend:
        """Wrap a scene that build() already made (the GUI's): no rebuild, no reconfigure.

        Renders change only what apply() and the resolution touch, so the artist's scene stays
        as it is otherwise."""
        self = cls.__new__(cls)
        self._init(handle.name, space)
        self._handle = handle
        self.description = handle.data["bound"].description
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


def check_space_fits(scene: str, space: ParameterSpace,
                     default: ParameterSpace | None = None) -> None:
    """ValueError unless `space` has the scene's parameters (names and latent layout)."""
    default = default or ParameterSpace.from_dict(space_dict(scene))
    if space.latent_dim != default.latent_dim or space.names != default.names:
        raise ValueError(f"parameter space does not fit scene {scene!r}: expected parameters "
                         f"{default.names}, got {space.names}")
