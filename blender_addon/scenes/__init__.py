"""Registry of the built-in scenes (bpy-free).

Each scene NAME has a parameter space `NAME.json` (format "autosim.space", see
protocol/space.py) and a bpy module `NAME.py` exposing

    build() -> SceneHandle                       build the whole scene once
    apply(handle, latent: dict) -> list[(pass_index, class_id)]

`load(name)` imports that module lazily, so this package imports without bpy.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["SCENE_NAMES", "SceneHandle", "classes", "load", "space_dict", "space_path"]

SCENE_NAMES: tuple[str, ...] = ("clevr", "placement")

_CLASSES: dict[str, tuple[str, ...]] = {
    "clevr": ("background", "sphere", "cube", "cylinder"),
    "placement": (
        "background", "cube", "sphere", "cylinder", "cone",
        "torus", "icosphere", "monkey", "slab",
    ),
}

_DIR = Path(__file__).resolve().parent


@dataclass
class SceneHandle:
    """What build() made: the bpy scene and named references into it (opaque to callers)."""

    name: str
    scene: Any  # bpy.types.Scene
    objects: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


def _check(name: str) -> str:
    if name not in SCENE_NAMES:
        raise ValueError(f"unknown scene {name!r}; known scenes: {', '.join(SCENE_NAMES)}")
    return name


def space_path(name: str) -> Path:
    """Path of the scene's parameter-space JSON."""
    return _DIR / f"{_check(name)}.json"


def space_dict(name: str) -> dict:
    """The scene's parameter space as the plain dict stored in its JSON file."""
    with open(space_path(name), encoding="utf-8") as fh:
        return json.load(fh)


def classes(name: str) -> list[str]:
    """Class names of the scene's labels; index 0 is "background"."""
    return list(_CLASSES[_check(name)])


def load(name: str) -> ModuleType:
    """Import the scene's bpy module (needs bpy)."""
    return importlib.import_module(f"{__name__}.{_check(name)}")
