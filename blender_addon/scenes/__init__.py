"""Registry of the built-in example scenes (bpy-free to import).

Each example NAME is a builder script `NAME.py` that makes the scene's objects with bpy and
returns its SceneDescription (protocol/scene.py), declared through the same public bindings API
a user's own .blend uses; a parameter space `NAME.json` (format "autosim.space") and
`NAME.scene.json` (its classes, what it labels for, and its own defaults: task, fixed
parameters, method settings) that the description carries. There is no per-scene apply code:
`load(name)` gives the scene-module interface callers use,

    build() -> SceneHandle                       run the builder into the current file, once
    apply(handle, latent: dict) -> list[(pass_index, class_id)]   through its BoundScene

and `python blender_addon/scenes/NAME.py --out NAME.blend` saves the example as a .blend a
user can open, serve (`autosim serve --blend NAME.blend`) and edit.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from protocol.bindings import Binding
from protocol.scene import SceneDescription
from protocol.scene_defaults import SceneDefaults
from protocol.space import ParameterSpace

from ..handle import SceneHandle

__all__ = ["SCENE_NAMES", "BuiltinScene", "SceneHandle", "classes", "defaults", "describe",
           "labels_for", "load", "main", "run_as_script", "space_dict", "space_path"]

SCENE_NAMES: tuple[str, ...] = ("clevr", "placement")

_DIR = Path(__file__).resolve().parent


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


def _scene_file(name: str) -> dict[str, Any]:
    with open(_DIR / f"{_check(name)}.scene.json", encoding="utf-8") as fh:
        return json.load(fh)


def classes(name: str) -> list[str]:
    """Class names of the scene's labels; index 0 is "background"."""
    return list(_scene_file(name)["classes"])


def labels_for(name: str) -> tuple[str, ...]:
    """What the example labels for (masks, boxes)."""
    return tuple(_scene_file(name)["labels_for"])


def defaults(name: str) -> SceneDefaults:
    """The example's own defaults (task, fixed parameters, method settings), read bpy-free so
    the optimizer knows them before any server starts; the built file carries the same."""
    return SceneDefaults.from_dict(_scene_file(name).get("defaults", {}))


def describe(name: str, bindings: list[Binding], scene_name: str) -> SceneDescription:
    """A builder's description of example `name`: NAME.json's space, the builder's bindings,
    and NAME.scene.json's classes, labels_for and defaults; scene_name: the Blender scene's."""
    return SceneDescription(ParameterSpace.from_dict(space_dict(name)), bindings, classes(name),
                            labels_for=labels_for(name), scene=scene_name, defaults=defaults(name))


def realise(name: str) -> Any:
    """Run example `name`'s builder into the current file (emptying it first), store its
    description in the file, resolve it and apply the builder's REST latent (what the file shows
    when opened). Returns the BoundScene (bpy)."""
    import bpy

    from ..bindings import resolve, store

    builder = importlib.import_module(f"{__name__}.{_check(name)}")
    description = builder.build()
    store(description, bpy.data)
    bound = resolve(description, bpy.data)
    bound.apply(builder.REST)
    return bound


class BuiltinScene:
    """A built-in example behind the scene-module interface backend.py and the add-on use."""

    def __init__(self, name: str) -> None:
        self.name = _check(name)

    def build(self) -> SceneHandle:
        """Build the example into the current file; errors name the binding."""
        bound = realise(self.name)
        objects = {n: bound.scene.objects[n] for n in bound.labels if n in bound.scene.objects}
        return SceneHandle(self.name, bound.scene, objects=objects, data={"bound": bound})

    @staticmethod
    def apply(handle: SceneHandle, latent: dict[str, Any]) -> list[tuple[int, int]]:
        """Write a whole named latent through the bindings (an unknown choice or a missing
        parameter is a SceneError and changes nothing); returns the visible labelled objects."""
        return handle.data["bound"].apply(latent)

    def __repr__(self) -> str:
        return f"BuiltinScene({self.name!r})"


def load(name: str) -> BuiltinScene:
    """The example's build()/apply() interface (build() needs bpy)."""
    return BuiltinScene(name)


def main(name: str, argv: list[str] | None = None) -> int:
    """`NAME.py --out NAME.blend`: build example `name` and save it as a .blend."""
    if argv is None:
        argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    ap = argparse.ArgumentParser(prog=f"{name}.py",
                                 description=f"Build autosim's {name!r} example as a .blend.")
    ap.add_argument("--out", required=True, help="the .blend to write")
    args = ap.parse_args(argv)
    import bpy

    bound = realise(name)
    bpy.ops.wm.save_as_mainfile(filepath=os.path.abspath(args.out))
    desc = bound.description
    print(f"wrote {args.out}: scene {bound.scene.name!r}, {len(desc.space.params)} parameters, "
          f"{len(desc.bindings)} bindings, classes {', '.join(desc.classes[1:])}")
    return 0


def run_as_script(path: str) -> NoReturn:
    """A builder started as a file (`python .../NAME.py --out x`, `blender -P .../NAME.py`)
    runs again as the module blender_addon.scenes.NAME, so that its relative imports work, and
    exits."""
    import runpy

    runpy.run_module(f"{__name__}.{Path(path).stem}", run_name="__main__")
    raise SystemExit(0)
