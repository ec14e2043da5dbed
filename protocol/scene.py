"""A scene description: everything autosim knows about a scene, in one bpy-free value.

Its parameter space, the bindings that connect each parameter to the .blend (bindings.py), the
class names (index 0 is background), which objects carry which class, what it labels for (masks,
boxes), and the scene's own defaults (protocol/scene_defaults.py: task, fixed parameters,
per-method settings, judging protocol, bench budgets). The server sends it in `hello`, and the
optimizer reads it there or from a file, so nothing downstream branches on a scene's name.

JSON form (format "autosim.scene", version 1):
  {"format": "autosim.scene", "version": 1, "space": {...autosim.space...},
   "bindings": [{"param": "key", "kind": "property", "data": "lights", "id": "Key",
                 "path": "energy"}, ...],
   "classes": ["background", "cube"], "labels": {"Cube": "cube"},
   "labels_for": ["masks", "boxes"], "scene": "", "defaults": {}}
numpy + stdlib only (runs inside Blender's Python and in the optimizer).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from protocol.bindings import Binding, SceneError, check_latent
from protocol.distributions import _known, strict_json_loads
from protocol.scene_defaults import SceneDefaults
from protocol.space import ParameterSpace

FORMAT = "autosim.scene"
VERSION = 1
LABELS_FOR = ("masks", "boxes")
BACKGROUND = "background"
_KEYS = ("format", "version", "space", "bindings", "classes", "labels", "labels_for", "scene",
         "defaults")


@dataclass(frozen=True)
class SceneDescription:
    """A validated scene: construction checks every binding against the space (not the .blend;
    blender_addon.bindings.resolve does that) and raises SceneError naming the binding."""

    space: ParameterSpace
    bindings: Sequence[Binding]
    classes: Sequence[str] = (BACKGROUND,)
    labels: Mapping[str, str] = field(default_factory=dict)
    labels_for: Sequence[str] = LABELS_FOR
    scene: str = ""
    defaults: SceneDefaults = field(default_factory=SceneDefaults)

    def __post_init__(self) -> None:
        if not isinstance(self.space, ParameterSpace):
            raise SceneError(f"space: expected a ParameterSpace, got {type(self.space).__name__}")
        if not isinstance(self.bindings, list | tuple):
            raise SceneError(f"bindings: expected a list, got {type(self.bindings).__name__}")
        params = {p.name: p for p in self.space.params}
        seen: dict[tuple[str, str, str], int] = {}
        for i, b in enumerate(self.bindings):
            if not isinstance(b, Binding):
                raise SceneError(f"bindings[{i}]: expected a Binding, got {type(b).__name__}")
            b.check(params, f"bindings[{i}] ({b.label})")
            if b.kind == "property":
                key = (b.data, b.id, b.path)
                if key in seen and (b.components is None or
                                    self.bindings[seen[key]].components is None or
                                    set(b.components) & set(self.bindings[seen[key]].components)):
                    raise SceneError(f"bindings[{i}] ({b.label}): bindings[{seen[key]}] "
                                     f"already writes this target")
                seen[key] = i
        object.__setattr__(self, "bindings", tuple(self.bindings))
        classes = self.classes
        if not isinstance(classes, list | tuple) or not classes or classes[0] != BACKGROUND:
            raise SceneError(f"classes: expected a list of class names starting with "
                             f"{BACKGROUND!r}, got {classes!r}")
        for i, c in enumerate(classes):
            if not isinstance(c, str) or not c or c in classes[:i]:
                raise SceneError(f"classes[{i}]: expected a new non-empty name, got {c!r}")
        object.__setattr__(self, "classes", tuple(classes))
        if not isinstance(self.labels, Mapping):
            raise SceneError(f"labels: expected an object (object name -> class name), "
                             f"got {type(self.labels).__name__}")
        for obj, c in self.labels.items():
            if not isinstance(obj, str) or not obj:
                raise SceneError(f"labels: object names must be non-empty strings, got {obj!r}")
            if c not in self.classes:
                raise SceneError(f"labels[{obj!r}]: unknown class {c!r} "
                                 f"(classes: {_known(list(self.classes))})")
        object.__setattr__(self, "labels", dict(self.labels))
        lf = self.labels_for
        if (not isinstance(lf, list | tuple) or not lf or len(set(lf)) != len(lf)
                or any(x not in LABELS_FOR for x in lf)):
            raise SceneError(f"labels_for: expected a non-empty subset of {list(LABELS_FOR)}, "
                             f"got {lf!r}")
        object.__setattr__(self, "labels_for", tuple(lf))
        if not isinstance(self.scene, str):
            raise SceneError(f"scene: expected a scene name (or \"\" for the active scene), "
                             f"got {self.scene!r}")
        defaults = self.defaults
        if isinstance(defaults, Mapping):
            defaults = SceneDefaults.from_dict(defaults)
        if not isinstance(defaults, SceneDefaults):
            raise SceneError(f"defaults: expected an object, got {type(defaults).__name__}")
        object.__setattr__(self, "defaults", defaults)

    __hash__ = None  # type: ignore[assignment]

    @property
    def name(self) -> str:
        return self.space.name

    def class_id(self, name: str) -> int:
        """Index of a class name (0 = background)."""
        if name not in self.classes:
            raise SceneError(f"unknown class {name!r} (classes: {_known(list(self.classes))})")
        return self.classes.index(name)

    @property
    def unbound(self) -> list[str]:
        """Parameters no binding writes (allowed: e.g. read by a driver; they render nothing)."""
        used = {b.param for b in self.bindings} | {b.jitter for b in self.bindings if b.jitter}
        return [n for n in self.space.names if n not in used]

    def check_latent(self, latent: Any) -> dict[str, Any]:
        """Checked, normalised named latent (see protocol.bindings.check_latent)."""
        return check_latent(self.space.params, latent)

    def with_space(self, space: ParameterSpace) -> SceneDescription:
        """The same scene under another space (e.g. at a new psi), re-validated."""
        return SceneDescription(space, self.bindings, self.classes, self.labels,
                                self.labels_for, self.scene, self.defaults)

    # ---- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; from_dict(to_dict()) gives an equal description."""
        return {"format": FORMAT, "version": VERSION, "space": self.space.to_dict(),
                "bindings": [b.to_dict() for b in self.bindings], "classes": list(self.classes),
                "labels": dict(self.labels), "labels_for": list(self.labels_for),
                "scene": self.scene, "defaults": self.defaults.to_dict()}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SceneDescription) and self.to_dict() == other.to_dict()

    @classmethod
    def from_dict(cls, d: Any) -> SceneDescription:
        """Validate and build; SceneError names the offending field or binding."""
        if not isinstance(d, Mapping):
            raise SceneError(f"scene description: expected an object, got {type(d).__name__}")
        for k in d:
            if k not in _KEYS:
                raise SceneError(f"{k}: unknown key (allowed: {_known(_KEYS)})")
        if d.get("format") != FORMAT:
            raise SceneError(f"format: expected {FORMAT!r}, got {d.get('format')!r}")
        v = d.get("version")
        if isinstance(v, bool) or v != VERSION:
            raise SceneError(f"version: expected {VERSION}, got {v!r}")
        for k in ("space", "bindings"):
            if k not in d:
                raise SceneError(f"{k}: missing required field")
        try:
            space = ParameterSpace.from_dict(d["space"])
        except SceneError:
            raise
        except ValueError as e:
            raise SceneError(f"space: {e}") from None
        if not isinstance(d["bindings"], list):
            raise SceneError(f"bindings: expected a list, got {type(d['bindings']).__name__}")
        bindings = [Binding.from_dict(b, f"bindings[{i}]") for i, b in enumerate(d["bindings"])]
        opt = {k: d[k] for k in ("classes", "labels", "labels_for", "scene", "defaults") if k in d}
        return cls(space, bindings, **opt)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> SceneDescription:
        """Parse and validate; malformed JSON and NaN/Infinity raise SceneError."""
        return cls.from_dict(strict_json_loads(text, SceneError))


def from_hello(fields: Mapping[str, Any]) -> SceneDescription | None:
    """The description a server's hello (or ready) carries; None from a server without one."""
    d = fields.get("description")
    return None if d is None else SceneDescription.from_dict(d)


def load(path: str | os.PathLike[str]) -> SceneDescription:
    """Read a description file; every problem is a SceneError that starts with the path."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as e:
        raise SceneError(f"{os.fspath(path)}: cannot read: {e.strerror or e}") from None
    try:
        return SceneDescription.from_json(text)
    except SceneError as e:
        raise SceneError(f"{os.fspath(path)}: {e}") from None


def save(description: SceneDescription, path: str | os.PathLike[str]) -> None:
    """Write a description file (UTF-8 JSON, one trailing newline)."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(description.to_json() + "\n")
