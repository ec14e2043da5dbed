"""Bindings: one parameter of a ParameterSpace bound to one target in the user's .blend.

A target is addressed the way Blender addresses data: an ID collection of bpy.data (`data`,
e.g. "lights"), an ID name (`id`, e.g. "Key") and, for properties, an RNA data path from that ID
(`path`, e.g. "energy" or 'node_tree.nodes["Background"].inputs["Strength"].default_value').
Kinds:
  property  normal -> float/int (rounded)/vector/colour, clipped to low/high (default: the
            property's soft range); categorical -> enum (choices are enum identifiers) or a number
            (numeric choices, e.g. samples "4"/"8"); bernoulli -> bool (invert: latent True
            writes False, e.g. a "visible" switch on hide_render)
  one_of    categorical over collections: the chosen one is shown, the others hidden
  site      categorical over empties: an object (or a collection's objects) moves to the chosen
            empty's world location, plus optional jitter from a normal param (see jitter_offset)
  material  categorical over materials -> an object's material slot `slot`
  mesh      categorical over meshes -> an object's data
  count     categorical over "0", "1", ... -> the first n objects of a collection are shown
Categorical kinds map choice i to alternatives[i] (default: the choice names themselves).
Alternatives may repeat: several choices can select the same target, so one categorical over a
product (placement's config = layout x location x quality) drives each factor's targets.
numpy + stdlib only: this module runs in Blender's Python and in the optimizer without bpy.
The scene description that holds a space, its bindings and its labels is in protocol/scene.py.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, InitVar, dataclass, fields
from typing import Any

import numpy as np

from protocol.distributions import (
    BernoulliParam,
    CategoricalParam,
    NormalParam,
    Param,
    SpaceError,
    _known,
    _num,
    _vec,
)

KINDS = ("property", "one_of", "site", "material", "mesh", "count")
PROPERTY_TYPES = ("float", "int", "vector", "color", "enum", "bool")
_REQUIRED = {"property": ("data", "id", "path"), "one_of": (), "site": ("id",),
             "material": ("id",), "mesh": ("id",), "count": ("id",)}
_OPTIONAL = {"property": ("type", "low", "high", "components", "invert", "alternatives"),
             "one_of": ("data", "alternatives"), "site": ("data", "alternatives", "jitter",
                                                          "radius"),
             "material": ("data", "slot", "alternatives"), "mesh": ("data", "alternatives"),
             "count": ("data", "objects")}
_DATA = {"one_of": ("collections",), "site": ("objects", "collections"),
         "material": ("objects",), "mesh": ("objects",), "count": ("collections",)}
_PARAM_KIND = {"one_of": "categorical", "site": "categorical", "material": "categorical",
               "mesh": "categorical", "count": "categorical"}
TYPE_PARAMS = {"float": ("normal", "categorical"), "int": ("normal", "categorical"),
                "vector": ("normal",), "color": ("normal",), "enum": ("categorical",),
                "bool": ("bernoulli",)}
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_KEY = r'\[(?:"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|-?\d+)\]'
_SEGMENT = re.compile(rf"{_IDENT}(?:{_KEY})*")
_DATA_RE = re.compile(r"[a-z_][a-z0-9_]*")


class SceneError(SpaceError):
    """An invalid scene description, binding or latent; the message names the binding."""


def split_path(path: str) -> tuple[str, str]:
    """'a.b["x"].c' -> ('a.b["x"]', 'c'): the owner's path from the ID and the property name.

    The path must end in a property name (to bind components of an array use `components`)."""
    pos, starts = 0, []
    while True:
        m = _SEGMENT.match(path, pos)
        if m is None:
            raise SceneError(f"path {path!r}: not an RNA data path (at character {pos})")
        starts.append(m.start())
        pos = m.end()
        if pos == len(path):
            break
        if path[pos] != ".":
            raise SceneError(f"path {path!r}: not an RNA data path (at character {pos})")
        pos += 1
    last = path[starts[-1]:]
    if not re.fullmatch(_IDENT, last):
        raise SceneError(f"path {path!r}: must end in a property name, not an index "
                         f"(bind array components with 'components')")
    return path[:max(starts[-1] - 1, 0)], last


def id_ref(data: str, name: str) -> str:
    """lights["Key"]: an ID as Blender's Python writes it."""
    quoted = str(name).replace("\\", "\\\\").replace('"', '\\"')
    return f'{data}["{quoted}"]'


def jitter_offset(values: Sequence[float], radius: float) -> tuple[float, ...]:
    """radius * (2 Phi(v) - 1) per axis: uniform on [-radius, radius] when v ~ N(0, 1), and still
    a smooth function of a learnable normal param (so the score-function gradient covers it)."""
    return tuple(radius * math.erf(float(v) / math.sqrt(2.0)) for v in values)


def _scene_error(check: Any, *args: Any) -> Any:
    """The distributions' number checks, raising SceneError (callers catch one error type)."""
    try:
        return check(*args)
    except SceneError:
        raise
    except SpaceError as e:
        raise SceneError(str(e)) from None


def with_article(word: str) -> str:
    """'a float', 'an enum': for messages."""
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def _listed(v: Any) -> str:
    return "" if v is None else str(list(v) if isinstance(v, list | tuple) else v)


def _strs(v: Any, path: str, what: str, repeats: bool = False) -> tuple[str, ...]:
    if not isinstance(v, list | tuple) or not v:
        raise SceneError(f"{path}: expected a non-empty list of {what}, got {v!r}")
    for i, s in enumerate(v):
        if not isinstance(s, str) or not s:
            raise SceneError(f"{path}[{i}]: expected a non-empty string, got {s!r}")
        if not repeats and s in v[:i]:
            raise SceneError(f"{path}[{i}]: duplicate {s!r}")
    return tuple(v)


@dataclass(frozen=True)
class Binding:
    """One parameter -> one target; see the module docstring for the kinds and their fields."""

    param: str
    kind: str = "property"
    data: str = ""
    id: str = ""
    path: str = ""
    type: str = ""
    low: Sequence[float] | float | None = None
    high: Sequence[float] | float | None = None
    components: Sequence[int] | None = None
    invert: bool = False
    alternatives: Sequence[str] | None = None
    slot: int = 0
    objects: Sequence[str] | None = None
    jitter: str = ""
    radius: float = 0.0
    _path: InitVar[str] = ""

    def __post_init__(self, _path: str) -> None:
        pre = f"{_path or 'binding'}"
        if not isinstance(self.param, str) or not self.param:
            raise SceneError(f"{pre}.param: expected a parameter name, got {self.param!r}")
        if self.kind not in KINDS:
            raise SceneError(f"{pre}.kind: unknown binding kind {self.kind!r} "
                             f"(known: {_known(KINDS)})")
        if not self.data and self.kind in _DATA:
            object.__setattr__(self, "data", _DATA[self.kind][0])
        pre = f"{_path or 'binding'} ({self.label})"
        allowed = ("param", "kind") + _REQUIRED[self.kind] + _OPTIONAL[self.kind]
        for f in fields(self):
            if f.name not in allowed and getattr(self, f.name) != f.default:
                raise SceneError(f"{pre}.{f.name}: not a field of a {self.kind!r} binding "
                                 f"(allowed: {_known(allowed)})")
        for k in _REQUIRED[self.kind]:
            if not isinstance(getattr(self, k), str) or not getattr(self, k):
                raise SceneError(f"{pre}.{k}: expected a non-empty string, "
                                 f"got {getattr(self, k)!r}")
        if not isinstance(self.data, str) or not _DATA_RE.fullmatch(self.data):
            raise SceneError(f"{pre}.data: expected a bpy.data collection name such as "
                             f"'objects' or 'lights', got {self.data!r}")
        if self.kind in _DATA and self.data not in _DATA[self.kind]:
            raise SceneError(f"{pre}.data: a {self.kind!r} binding targets "
                             f"{' or '.join(_DATA[self.kind])}, got {self.data!r}")
        if not isinstance(self.id, str):
            raise SceneError(f"{pre}.id: expected a string, got {self.id!r}")
        if self.kind == "property":
            try:
                split_path(self.path)
            except SceneError as e:
                raise SceneError(f"{pre}.{e}") from None
        if self.type and self.type not in PROPERTY_TYPES:
            raise SceneError(f"{pre}.type: unknown property type {self.type!r} "
                             f"(known: {_known(PROPERTY_TYPES)})")
        for k in ("low", "high"):
            if getattr(self, k) is not None:
                object.__setattr__(self, k, _scene_error(_vec, getattr(self, k), f"{pre}.{k}"))
        if self.components is not None:
            comps = self.components
            if (not isinstance(comps, list | tuple) or not comps
                    or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in comps)
                    or len(set(comps)) != len(comps)):
                raise SceneError(f"{pre}.components: expected distinct array indices >= 0, "
                                 f"got {comps!r}")
            object.__setattr__(self, "components", tuple(comps))
        if not isinstance(self.invert, bool):
            raise SceneError(f"{pre}.invert: expected true/false, got {self.invert!r}")
        for k, what in (("alternatives", "names"), ("objects", "object names")):
            if getattr(self, k) is not None:
                object.__setattr__(self, k, _strs(getattr(self, k), f"{pre}.{k}", what,
                                                  repeats=k == "alternatives"))
        if isinstance(self.slot, bool) or not isinstance(self.slot, int) or self.slot < 0:
            raise SceneError(f"{pre}.slot: expected a material slot index >= 0, got {self.slot!r}")
        if not isinstance(self.jitter, str):
            raise SceneError(f"{pre}.jitter: expected a parameter name, got {self.jitter!r}")
        radius = _scene_error(_num, self.radius, f"{pre}.radius")
        if bool(self.jitter) != (radius > 0):
            raise SceneError(f"{pre}.radius: jitter needs both a normal param and a radius > 0 "
                             f"(got jitter={self.jitter!r}, radius={self.radius!r})")
        object.__setattr__(self, "radius", radius)

    @property
    def target(self) -> str:
        """The target as Blender's Python spells it, e.g. lights["Key"].energy."""
        ref = id_ref(self.data, self.id)
        if self.kind == "property":
            return f"{ref}.{self.path}{_listed(self.components)}"
        if self.kind == "one_of":
            return "the shown collection" + (f" of {_listed(self.alternatives)}"
                                             if self.alternatives else "")
        return {"site": f"{ref} site", "material": f"{ref}.material_slots[{self.slot}]",
                "mesh": f"{ref}.data", "count": f"{ref} count"}[self.kind]

    @property
    def label(self) -> str:
        return f"{self.param!r} -> {self.target}"

    def values(self, param: CategoricalParam) -> tuple[str, ...]:
        """What each choice of `param` selects: alternatives, else the choice names."""
        return tuple(self.alternatives) if self.alternatives is not None else param.choices

    def check(self, params: Mapping[str, Param], pre: str) -> None:
        """SceneError unless this binding fits its parameter (everything knowable without bpy)."""
        if self.param not in params:
            raise SceneError(f"{pre}: unknown parameter {self.param!r} "
                             f"(known: {_known(list(params))})")
        p = params[self.param]
        want = _PARAM_KIND.get(self.kind) or (TYPE_PARAMS[self.type] if self.type else None)
        if want and p.kind not in want:
            what = f"{with_article(self.type)} property" if self.kind == "property" else \
                f"a {self.kind!r} binding"
            raise SceneError(f"{pre}: parameter is {p.kind} but the target is {what} "
                             f"(needs {' or '.join(want) if isinstance(want, tuple) else want})")
        if (self.low is not None or self.high is not None or self.components is not None) \
                and not isinstance(p, NormalParam):
            raise SceneError(f"{pre}: low/high/components need a normal parameter, got {p.kind}")
        if self.invert and not isinstance(p, BernoulliParam):
            raise SceneError(f"{pre}.invert: needs a bernoulli parameter, got {p.kind}")
        if isinstance(p, NormalParam):
            self._check_normal(p, pre)
        if isinstance(p, CategoricalParam):
            self._check_categorical(p, pre)
        elif self.alternatives is not None:
            raise SceneError(f"{pre}.alternatives: needs a categorical parameter, got {p.kind}")
        if self.jitter:
            j = params.get(self.jitter)
            if not isinstance(j, NormalParam) or j.dim not in (2, 3) or j is p:
                raise SceneError(f"{pre}.jitter: expected another normal parameter of "
                                 f"dimension 2 (x, y) or 3, got {self.jitter!r} "
                                 f"({'unknown' if j is None else j.kind})")

    def _check_normal(self, p: NormalParam, pre: str) -> None:
        n = p.dim
        if self.components is not None and len(self.components) != n:
            raise SceneError(f"{pre}.components: {len(self.components)} components for a "
                             f"parameter of dimension {n}")
        if self.type in ("float", "int") and (n != 1 or self.components is not None):
            raise SceneError(f"{pre}: parameter has dimension {n} but the target is a "
                             f"scalar {self.type} property")
        for k in ("low", "high"):
            v = getattr(self, k)
            if v is not None and len(v) not in (1, n):
                raise SceneError(f"{pre}.{k}: expected 1 or {n} values, got {len(v)}")
        if self.low is not None and self.high is not None:
            lo, hi = (v * (n // len(v)) for v in (self.low, self.high))
            for i in range(n):
                if not lo[i] < hi[i]:
                    raise SceneError(f"{pre}.low[{i}]: must be < high[{i}], "
                                     f"got low={lo[i]} high={hi[i]}")

    def _check_categorical(self, p: CategoricalParam, pre: str) -> None:
        vals = self.values(p)
        if len(vals) != len(p.choices):
            raise SceneError(f"{pre}.alternatives: {len(vals)} alternatives for "
                             f"{len(p.choices)} choices {list(p.choices)} (one per choice)")
        numeric = self.kind == "count" or self.type in ("float", "int")
        for c, v in zip(p.choices, vals):
            try:
                x = float(v)
            except ValueError:
                x = math.nan
            if numeric and not math.isfinite(x):
                what = "a count" if self.kind == "count" else f"{with_article(self.type)} property"
                raise SceneError(f"{pre}: parameter is categorical but the target is {what}: "
                                 f"choice {c!r} selects {v!r}, not a number (a categorical "
                                 f"drives a number only through numeric choices)")
            if (self.kind == "count" or self.type == "int") and numeric and x != round(x):
                raise SceneError(f"{pre}: choice {c!r} selects {v!r}, not an integer")
            if self.kind == "count" and (x < 0 or (self.objects is not None
                                                    and x > len(self.objects))):
                raise SceneError(f"{pre}: choice {c!r} shows {v} objects; the count must be in "
                                 f"0..{'n' if self.objects is None else len(self.objects)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: param and kind, then only the fields that differ from their defaults."""
        d: dict[str, Any] = {"param": self.param, "kind": self.kind}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in d or f.default is MISSING or v == f.default:
                continue
            if f.name == "data" and self.kind in _DATA and v == _DATA[self.kind][0]:
                continue
            d[f.name] = list(v) if isinstance(v, tuple) else v
        return d

    @classmethod
    def from_dict(cls, d: Any, path: str = "binding") -> Binding:
        if not isinstance(d, Mapping):
            raise SceneError(f"{path}: expected an object, got {type(d).__name__}")
        allowed = [f.name for f in fields(cls)]
        for k in d:
            if k not in allowed:
                raise SceneError(f"{path}.{k}: unknown key (allowed: {_known(allowed)})")
        if "param" not in d:
            raise SceneError(f"{path}.param: missing required field")
        return cls(**d, _path=path)


def check_latent(params: Sequence[Param], latent: Any) -> dict[str, Any]:
    """A named latent (as ParameterSpace.unpack_latent gives it) -> checked, normalised values:
    normal -> tuple of floats, categorical -> a choice name, bernoulli -> bool. Every parameter
    must be present, no other key; an unknown choice is an error, never a silent default."""
    if not isinstance(latent, Mapping):
        raise SceneError(f"latent: expected an object, got {type(latent).__name__}")
    names = [p.name for p in params]
    extra = [k for k in latent if k not in names]
    if extra:
        raise SceneError(f"latent: unknown parameters {extra} (known: {_known(names)})")
    missing = [n for n in names if n not in latent]
    if missing:
        raise SceneError(f"latent: missing parameters {missing}")
    out: dict[str, Any] = {}
    for p in params:
        v, path = latent[p.name], f"latent.{p.name}"
        if isinstance(p, NormalParam):
            out[p.name] = _scene_error(_vec, v, path, p.dim)
        elif isinstance(p, CategoricalParam):
            if not isinstance(v, str) or v not in p.choices:
                raise SceneError(f"{path}: unknown choice {v!r} (known: {list(p.choices)})")
            out[p.name] = v
        elif isinstance(v, bool | np.bool_):
            out[p.name] = bool(v)
        else:
            raise SceneError(f"{path}: expected true/false, got {v!r}")
    return out
