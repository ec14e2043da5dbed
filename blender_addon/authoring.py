"""Editing a scene description the way the panel does: bpy-free, so tests run without Blender.

The panel's operators (authoring_ops.py) gather facts from Blender (a property's type, current
value and soft range; the selection) and call these functions, which decide:

  start_param()   the distribution a newly bound property starts with: centred on its current
                  value (normal with a small spread, clipped to its soft range; categorical over
                  an enum's items with the current item favoured; bernoulli leaning to the
                  current state), so binding a property changes nothing until it is sampled;
  add()           the description with one more parameter and its binding (refused when that
                  target is already bound, naming the parameter that binds it);
  remove()        the description without a parameter, its bindings, and every reference to it
                  (a site's jitter, an active_if condition);
  group_of()      which of the panel's groups (lights, quality, placement, materials) a
                  parameter belongs to, from its binding or, for unbound built-in examples, its
                  name; summary(): the one-line distribution shown in the list.
Descriptions travel as the dicts SceneDescription.to_dict() gives; the result is re-validated.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from protocol.bindings import SceneError
from protocol.distributions import LOG_STD_RANGE
from protocol.scene import FORMAT, VERSION, SceneDescription

GROUPS = ("LIGHTS", "QUALITY", "PLACEMENT", "MATERIALS", "OTHER")
UNBOUNDED = 1e9  # a soft limit this large (FLT_MAX, 1e30) means "no bound" for a distribution
FAVOUR_LOGIT = 1.0  # the current enum item's logit (others 0): p = e / (e + k - 1)
FAVOUR_BOOL = 1.0   # bernoulli logit towards the current state: p = 0.73


def empty(name: str = "scene") -> dict[str, Any]:
    """A description with nothing bound yet (what the first "Randomize" starts from)."""
    return {"format": FORMAT, "version": VERSION, "scene": "",
            "space": {"format": "autosim.space", "version": 1, "name": safe_name(name),
                      "params": []},
            "bindings": [], "classes": ["background"], "labels_for": ["masks", "boxes"]}


def safe_name(text: str) -> str:
    """An identifier-like parameter name from a label ('Key Light.energy' -> 'Key_Light_energy')."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", str(text)).strip("_") or "param"
    return f"p_{name}" if name[0].isdigit() else name


def unique_name(base: str, taken: Sequence[str]) -> str:
    """`base`, else base_2, base_3, ... (the first not in `taken`)."""
    name, n = safe_name(base), 2
    out = name
    while out in taken:
        out, n = f"{name}_{n}", n + 1
    return out


def _spread(v: float, lo: float | None, hi: float | None, is_int: bool) -> float:
    """A small standard deviation around v: 10% of |v|, else 5% of the soft range, else 0.1."""
    span = hi - lo if lo is not None and hi is not None else None
    s = 0.1 * abs(v)
    if s == 0.0:
        s = 0.05 * span if span else 0.1
    if span:
        s = min(s, 0.25 * span)
    if is_int:
        s = max(s, 0.5)
    return max(s, 1e-3)


def _bound(v: float) -> float | None:
    return float(v) if math.isfinite(v) and abs(v) < UNBOUNDED else None


def start_param(name: str, ptype: str, value: Any, *, soft_min: float = -math.inf,
                soft_max: float = math.inf, items: Sequence[str] = (), doc: str = "") -> dict:
    """The parameter dict a property of type `ptype` (float, int, vector, color, enum, bool)
    starts with, centred on its current `value`. SceneError when it cannot be randomised."""
    if ptype in ("float", "int", "vector", "color"):
        vals = [float(v) for v in (value if ptype in ("vector", "color") else [value])]
        if not vals or not all(math.isfinite(v) for v in vals):
            raise SceneError(f"current value {value!r} is not a finite number")
        lo, hi = _bound(soft_min), _bound(soft_max)
        if lo is not None and hi is not None and not lo < hi:
            lo = hi = None
        p: dict[str, Any] = {"name": name, "kind": "normal", "mean": vals,
                             "log_std": [min(max(math.log(_spread(v, lo, hi, ptype == "int")),
                                                 LOG_STD_RANGE[0]), LOG_STD_RANGE[1])
                                         for v in vals]}
        if lo is not None:
            p["low"] = [lo] * len(vals)
        if hi is not None:
            p["high"] = [hi] * len(vals)
    elif ptype == "enum":
        items = list(items)
        if len(items) < 2:
            raise SceneError(f"an enum with {len(items)} listed item(s) has nothing to choose "
                             f"from")
        if value not in items:
            raise SceneError(f"current item {value!r} is not among {items}")
        p = {"name": name, "kind": "categorical", "choices": items,
             "logits": [FAVOUR_LOGIT if it == value else 0.0 for it in items]}
    elif ptype == "bool":
        p = {"name": name, "kind": "bernoulli", "logit": FAVOUR_BOOL if value else -FAVOUR_BOOL}
    else:
        raise SceneError(f"a {ptype or 'non-numeric'} property cannot be randomised (numbers, "
                         f"vectors, colours, enums and booleans can)")
    if doc:
        p["doc"] = doc
    return p


def _choice_values(desc: Mapping, b: Mapping) -> list[str]:
    if b.get("alternatives"):
        return list(b["alternatives"])
    p = next((p for p in desc["space"]["params"] if p["name"] == b["param"]), {})
    return list(p.get("choices", []))


def bound_by(desc: Mapping | None, binding: Mapping) -> str | None:
    """The parameter that already writes `binding`'s target, or None."""
    if not desc:
        return None
    kind, data = binding.get("kind", "property"), binding.get("data", "")
    for b in desc["bindings"]:
        bkind = b.get("kind", "property")
        if kind == "property" and bkind == "property":
            same = (b["data"], b["id"], b["path"]) == (data, binding["id"], binding["path"])
            c1, c2 = b.get("components"), binding.get("components")
            if same and (c1 is None or c2 is None or set(c1) & set(c2)):
                return b["param"]
        elif kind == "one_of" and bkind == "one_of":
            if set(_choice_values(desc, b)) & set(binding.get("alternatives") or []):
                return b["param"]
        elif kind == bkind and kind != "property" and b.get("id") == binding.get("id") \
                and b.get("data", data) == data and b.get("slot", 0) == binding.get("slot", 0):
            return b["param"]
    return None


def add(desc: Mapping | None, param: Mapping, binding: Mapping) -> SceneDescription:
    """`desc` (a dict, or None for a file without one) plus one parameter and its binding.

    SceneError (and no change) when the target is already bound or the result is invalid."""
    base = dict(desc) if desc else empty()
    other = bound_by(base, binding)
    if other is not None:
        raise SceneError(f"already bound: parameter {other!r} drives this target (remove it in "
                         f"the AutoSim panel first)")
    names = [p["name"] for p in base["space"]["params"]]
    if param["name"] in names:
        raise SceneError(f"a parameter named {param['name']!r} already exists")
    space = dict(base["space"], params=[*base["space"]["params"], dict(param)])
    return SceneDescription.from_dict(dict(base, space=space,
                                           bindings=[*base["bindings"], dict(binding)]))


def remove(desc: Mapping, name: str) -> SceneDescription:
    """`desc` without parameter `name`: its bindings go, a site that used it as jitter loses
    its jitter, and active_if conditions on it are dropped."""
    params = [dict(p) for p in desc["space"]["params"] if p["name"] != name]
    if len(params) == len(desc["space"]["params"]):
        raise SceneError(f"no parameter named {name!r}")
    for p in params:
        cond = {k: v for k, v in (p.get("active_if") or {}).items() if k != name}
        if "active_if" in p:
            if cond:
                p["active_if"] = cond
            else:
                del p["active_if"]
    bindings = []
    for b in desc["bindings"]:
        if b["param"] == name:
            continue
        if b.get("jitter") == name:
            b = {k: v for k, v in b.items() if k not in ("jitter", "radius")}
        bindings.append(b)
    presets = {k: {n: v for n, v in named.items() if n != name}
               for k, named in (desc["space"].get("presets") or {}).items()}
    space = dict(desc["space"], params=params)
    if presets:
        space["presets"] = presets
    return SceneDescription.from_dict(dict(desc, space=space, bindings=bindings))


def with_classes(desc: Mapping, found: Sequence[str]) -> dict[str, Any]:
    """`desc` whose classes also hold every class name found on the file's objects and
    collections (appended in order; existing ids never move)."""
    classes = list(desc.get("classes") or ["background"])
    for c in found:
        if c and c not in classes:
            classes.append(c)
    return dict(desc, classes=classes)


# ---------------------------------------------------------------------------------- display

_QUALITY_PATHS = ("cycles.", "render.", "eevee.", "view_settings.", "display_settings.")
_PLACEMENT_PATHS = ("location", "rotation_euler", "rotation_quaternion", "scale",
                    "delta_location", "delta_rotation_euler", "dimensions")


def group_of(binding: Mapping | None, name: str = "") -> str:
    """LIGHTS, QUALITY, PLACEMENT, MATERIALS or OTHER: from the binding when there is one."""
    if binding:
        kind, data, path = (binding.get("kind", "property"), binding.get("data", ""),
                            binding.get("path", ""))
        if kind in ("site", "count", "one_of"):
            return "PLACEMENT"
        if kind == "material" or data == "materials":
            return "MATERIALS"
        if data in ("lights", "worlds"):
            return "LIGHTS"
        if data == "scenes" and path.startswith(_QUALITY_PATHS):
            return "QUALITY"
        if data == "objects" and path.startswith(_PLACEMENT_PATHS):
            return "PLACEMENT"
        return "OTHER"
    n = name.lower()
    for group, words in (("LIGHTS", ("light", "sun", "lamp", "world", "ambient")),
                         ("QUALITY", ("sample", "bounce", "quality")),
                         ("MATERIALS", ("material", "color", "colour", "rough", "texture")),
                         ("PLACEMENT", ("xy", "loc", "pos", "count", "num_", "layout", "site",
                                        "place", "shape", "rot"))):
        if any(w in n for w in words):
            return group
    return "OTHER"


def short_number(v: float) -> str:
    """About 3 significant digits without exponents where they fit: 1000, 3.14, 0.05."""
    a = abs(v)
    if a == 0.0:
        return "0"
    if not 1e-3 <= a < 1e5:
        return f"{v:.2g}"
    digits = max(0, 2 - math.floor(math.log10(a)))
    text = f"{v:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def summary(kind: str, means: Sequence[float] = (), stds: Sequence[float] = (),
            choices: Sequence[tuple[str, float]] = (), p: float = 0.5) -> str:
    """A few characters for the list's row: '1000±100', '3D±0.1', 'WIRE 62%', 'on 73%'."""
    if kind == "normal":
        if len(means) == 1:
            return f"{short_number(means[0])}±{short_number(stds[0])}"
        return f"{len(means)}D±{short_number(max(stds))}"
    if kind == "categorical":
        if not choices:
            return "categorical"
        top, q = max(choices, key=lambda c: c[1])
        return f"{top} {round(100 * q)}%"
    return f"on {round(100 * p)}%"


def short_target(binding: Mapping) -> str:
    """What a binding drives, short enough for the sidebar: 'Light.energy', 'Floor > Roughness',
    'Cube > site'."""
    kind, name = binding.get("kind", "property"), binding.get("id", "")
    if kind == "property":
        path = binding.get("path", "")
        m = re.search(r'inputs\["((?:[^"\\]|\\.)*)"\]\.default_value$', path)
        tail = m.group(1) if m else path
        comps = binding.get("components")
        xyz = "".join("xyzw"[c] if c < 4 else str(c) for c in comps) if comps else ""
        return f"{name} > {tail}" if m else f"{name}.{tail}{f' ({xyz})' if xyz else ''}"
    if kind == "one_of":
        return "collection shown"
    return {"site": f"{name} > site", "material": f"{name} > slot {binding.get('slot', 0)}",
            "mesh": f"{name} > mesh", "count": f"{name} > how many"}.get(kind, kind)
