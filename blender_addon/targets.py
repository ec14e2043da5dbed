"""One binding checked against the open .blend, and the writes a latent value makes (bpy).

bindings.resolve() builds one Resolved per binding: the checks that need the file (ID exists,
data path resolves to a writable property of the right type and size, enum items, collections,
empties, materials and meshes exist) happen in its constructor, and plan() turns a checked
latent value into writes on a shared Plan without touching the file.
"""

from __future__ import annotations

import math
from typing import Any

import bpy

from protocol.bindings import (
    TYPE_PARAMS,
    Binding,
    SceneError,
    id_ref,
    jitter_offset,
    split_path,
    with_article,
)
from protocol.distributions import BernoulliParam, CategoricalParam, NormalParam, Param


class Plan:
    """Writes planned for one latent, merged per (owner, property): two bindings writing
    different components of one array see each other's values."""

    def __init__(self) -> None:
        self.writes: dict[tuple[int, int, str], list] = {}

    def get(self, owner: Any, attr: str) -> Any:
        w = self.writes.get(identity(owner, attr))
        return copy_value(getattr(owner, attr)) if w is None else w[2]

    def set(self, owner: Any, attr: str, value: Any) -> None:
        self.writes[identity(owner, attr)] = [owner, attr, value]


def identity(owner: Any, attr: str) -> tuple[int, int, str]:
    """Which property this is, however its path was spelled (inputs[1] or inputs["Strength"]).
    Material slots are not real structs: their pointer is only unique within their ID."""
    return owner.id_data.as_pointer(), owner.as_pointer(), attr


def _target(idb: Any, attr: str) -> tuple[str, tuple[int, int, str], None]:
    data = "collections" if isinstance(idb, bpy.types.Collection) else "objects"
    return f"{id_ref(data, idb.name)}.{attr}", identity(idb, attr), None


def copy_value(v: Any) -> Any:
    """A value read from bpy, detached (arrays become tuples; IDs stay references)."""
    if isinstance(v, str | bool | int | float) or v is None or isinstance(v, bpy.types.ID):
        return v
    return tuple(v)


def fail(b: Binding, i: int, msg: str) -> SceneError:
    return SceneError(f"bindings[{i}] ({b.label}): {msg}")


def _prop_type(prop: Any) -> tuple[str, int]:
    """RNA property -> (float|int|vector|color|enum|bool, array size), or ('', 0)."""
    if prop.type in ("FLOAT", "INT"):
        if not prop.is_array:
            return ("float" if prop.type == "FLOAT" else "int"), 0
        if prop.array_dimensions[1] == 0:
            color = prop.type == "FLOAT" and prop.subtype in ("COLOR", "COLOR_GAMMA")
            return ("color" if color else "vector"), prop.array_length
    if prop.type == "BOOLEAN" and not prop.is_array:
        return "bool", 0
    if prop.type == "ENUM" and not prop.is_enum_flag:
        return "enum", 0
    return "", 0


class Resolved:
    """One binding checked against the file; plan() turns its latent value into writes."""

    def __init__(self, b: Binding, i: int, p: Param, data: Any, scene: Any) -> None:
        self.b, self.i, self.p = b, i, p
        # (target as written in messages, identity(), array component or None): for conflicts
        self.writes: list[tuple[str, tuple[int, int, str], int | None]] = []
        self.reads: list[tuple[str, tuple[int, int, str], int | None]] = []
        getattr(self, f"_resolve_{b.kind}")(data, scene)

    def fail(self, msg: str) -> SceneError:
        return fail(self.b, self.i, msg)

    def _id(self, data: Any, coll: str, name: str, what: str = "") -> Any:
        ids = getattr(data, coll, None)
        if not isinstance(ids, bpy.types.bpy_prop_collection):
            raise self.fail(f"bpy.data has no ID collection {coll!r}")
        found = ids.get(name)
        if found is None:
            raise self.fail(f"{what or id_ref(coll, name)} does not exist in this .blend")
        return found

    def _alternatives(self, data: Any, coll: str) -> dict[str, Any]:
        assert isinstance(self.p, CategoricalParam)
        return {c: self._id(data, coll, v) for c, v in zip(self.p.choices, self.b.values(self.p))}

    # ---- property -------------------------------------------------------------------------
    def _resolve_property(self, data: Any, scene: Any) -> None:
        b, p = self.b, self.p
        self.owner_id = self._id(data, b.data, b.id)
        self.owner_path, self.attr = split_path(b.path)
        owner = self._owner()
        prop = owner.bl_rna.properties.get(self.attr)
        if prop is None:
            what = "is not an RNA property" if hasattr(owner, self.attr) else "does not exist"
            raise self.fail(f"{owner.bl_rna.identifier}.{self.attr} {what}")
        ptype, size = _prop_type(prop)
        if not ptype:
            raise self.fail(f"{owner.bl_rna.identifier}.{self.attr} is a {prop.type.lower()} "
                            f"property; bindings write numbers, vectors, colours, enums and "
                            f"booleans")
        if prop.is_readonly:
            raise self.fail(f"{owner.bl_rna.identifier}.{self.attr} is read-only")
        if b.type and b.type != ptype:
            raise self.fail(f"declared type {b.type!r} but the target is {ptype!r}")
        allowed = TYPE_PARAMS[ptype]
        if p.kind not in allowed:
            raise self.fail(f"parameter is {p.kind} but the target is {with_article(ptype)} "
                            f"property (needs {' or '.join(allowed)})")
        self.ptype, self.size, self.is_int = ptype, size, prop.type == "INT"
        self.comps = b.components
        base = f"{id_ref(b.data, b.id)}.{b.path}"
        self.writes = [(base, identity(owner, self.attr), c) for c in self.comps or (None,)]
        if isinstance(p, NormalParam):
            self._resolve_number(p, prop)
        elif isinstance(p, CategoricalParam):
            self._resolve_choices(p, prop)

    def _owner(self) -> Any:
        if not self.owner_path:
            return self.owner_id
        try:
            owner = self.owner_id.path_resolve(self.owner_path)
        except ValueError:
            raise self.fail(f"{self.owner_path!r} does not resolve from "
                            f"{id_ref(self.b.data, self.b.id)}") from None
        if not isinstance(owner, bpy.types.bpy_struct):
            raise self.fail(f"{self.owner_path!r} is a value, not a struct with properties")
        return owner

    def _resolve_number(self, p: NormalParam, prop: Any) -> None:
        b, n = self.b, p.dim
        if self.size == 0 and n != 1:
            raise self.fail(f"parameter has dimension {n} but the target is a scalar "
                            f"{self.ptype} property")
        if self.size and self.comps is None and n != self.size:
            raise self.fail(f"parameter has dimension {n} but the target has {self.size} "
                            f"components (bind some of them with 'components')")
        if self.comps and max(self.comps) >= self.size:
            raise self.fail(f"components {list(self.comps)}: the target has {self.size}")
        lo = list(b.low) * (n // len(b.low)) if b.low is not None else [prop.soft_min] * n
        hi = list(b.high) * (n // len(b.high)) if b.high is not None else [prop.soft_max] * n
        for k, v in (("low", lo), ("high", hi)):
            if min(v) < prop.hard_min or max(v) > prop.hard_max:
                raise self.fail(f"{k} {v} is outside the property's range "
                                f"[{prop.hard_min:g}, {prop.hard_max:g}]")
        if self.is_int:
            lo, hi = [math.ceil(x) for x in lo], [math.floor(x) for x in hi]
        if any(a > z for a, z in zip(lo, hi)):
            raise self.fail(f"empty range low={lo} high={hi}")
        self.lo, self.hi = lo, hi

    def _resolve_choices(self, p: CategoricalParam, prop: Any) -> None:
        vals = self.b.values(p)
        if self.ptype == "enum":
            items = [it.identifier for it in prop.enum_items]
            for c, v in zip(p.choices, vals):
                if v not in items:
                    raise self.fail(f"choice {c!r} selects {v!r}, not an item of the enum "
                                    f"(items: {', '.join(items) or 'none listed'})")
            self.mapping = dict(zip(p.choices, vals))
            return
        self.mapping = {}
        for c, v in zip(p.choices, vals):
            try:
                x = float(v)
            except ValueError:
                x = math.nan
            if not math.isfinite(x) or (self.is_int and x != round(x)):
                raise self.fail(f"parameter is categorical but the target is "
                                f"{with_article(self.ptype)} property: choice {c!r} selects "
                                f"{v!r}, not {'an integer' if self.is_int else 'a number'}")
            if not prop.hard_min <= x <= prop.hard_max:
                raise self.fail(f"choice {c!r} selects {v}, outside the property's range "
                                f"[{prop.hard_min:g}, {prop.hard_max:g}]")
            self.mapping[c] = int(x) if self.is_int else x

    def _plan_property(self, v: Any, latent: dict, plan: Plan) -> None:
        owner = self._owner()
        if isinstance(self.p, CategoricalParam):
            value = self.mapping[v]
        elif isinstance(self.p, BernoulliParam):
            value = v != self.b.invert
        else:
            xs = [min(max(round(x) if self.is_int else x, lo), hi)
                  for x, lo, hi in zip(v, self.lo, self.hi)]
            if self.size == 0:
                value = xs[0]
            elif self.comps is None:
                value = tuple(xs)
            else:
                full = list(plan.get(owner, self.attr))
                for c, x in zip(self.comps, xs):
                    full[c] = x
                value = tuple(full)
        plan.set(owner, self.attr, value)

    # ---- one of these collections -----------------------------------------------------------
    def _resolve_one_of(self, data: Any, scene: Any) -> None:
        self.colls = self._alternatives(data, "collections")
        # alternatives may repeat (several choices show one collection): each is written once
        self.distinct = list({c.as_pointer(): c for c in self.colls.values()}.values())
        inside = {c.as_pointer() for c in scene.collection.children_recursive}
        for coll in self.distinct:
            if coll.as_pointer() not in inside:
                raise self.fail(f"collection {coll.name!r} is not in scene {scene.name!r}")
        self.writes = [_target(c, a) for c in self.distinct
                       for a in ("hide_render", "hide_viewport")]

    def _plan_one_of(self, v: Any, latent: dict, plan: Plan) -> None:
        shown = self.colls[v].as_pointer()
        for coll in self.distinct:
            plan.set(coll, "hide_render", coll.as_pointer() != shown)
            plan.set(coll, "hide_viewport", coll.as_pointer() != shown)

    # ---- site --------------------------------------------------------------------------------
    def _resolve_site(self, data: Any, scene: Any) -> None:
        b = self.b
        self.sites = self._alternatives(data, "objects")
        for name, site in self.sites.items():
            if site.type != "EMPTY":
                raise self.fail(f"site {name!r}: object {site.name!r} is a {site.type.lower()}, "
                                f"not an empty")
        self.reads = [_target(s, "location") for s in self.sites.values()]
        target = self._id(data, b.data, b.id)
        if b.data == "objects":
            if target.parent is not None:
                raise self.fail(f"object {target.name!r} has a parent; bind the parent instead")
            self.coll, self.roots = None, [(target, (0.0, 0.0, 0.0))]
        else:
            members = {o.as_pointer() for o in target.all_objects}
            roots = [o for o in target.all_objects if o.parent is None]
            for o in target.all_objects:
                if o.parent is not None and o.parent.as_pointer() not in members:
                    raise self.fail(f"object {o.name!r} is parented outside collection "
                                    f"{target.name!r}")
            base = tuple(target.instance_offset)
            self.coll = target
            self.roots = [(o, tuple(a - z for a, z in zip(o.location, base)))
                          for o in sorted(roots, key=lambda o: o.name)]
            self.writes = [_target(target, "instance_offset")]
        self.writes += [_target(o, "location") for o, _ in self.roots]

    def _plan_site(self, v: Any, latent: dict, plan: Plan) -> None:
        site = self.sites[v]
        if site.parent is None and not site.constraints:
            at = list(site.location)
        else:  # evaluated by Blender's depsgraph
            at = list(site.matrix_world.translation)
        if self.b.jitter:
            for k, d in enumerate(jitter_offset(latent[self.b.jitter], self.b.radius)):
                at[k] += d
        if self.coll is not None:
            plan.set(self.coll, "instance_offset", tuple(at))
        for obj, off in self.roots:
            plan.set(obj, "location", tuple(a + o for a, o in zip(at, off)))

    # ---- material, mesh, count ----------------------------------------------------------------
    def _resolve_material(self, data: Any, scene: Any) -> None:
        self.obj = self._id(data, "objects", self.b.id)
        if self.b.slot >= len(self.obj.material_slots):
            raise self.fail(f"object {self.obj.name!r} has {len(self.obj.material_slots)} "
                            f"material slots, no slot {self.b.slot}")
        self.mats = self._alternatives(data, "materials")
        slot = self.obj.material_slots[self.b.slot]
        self.writes = [(self.b.target, identity(slot, "material"), None)]

    def _plan_material(self, v: Any, latent: dict, plan: Plan) -> None:
        slot = self.obj.material_slots[self.b.slot]
        plan.set(slot, "link", "OBJECT")  # the object's own slot: a mesh swap keeps it
        plan.set(slot, "material", self.mats[v])

    def _resolve_mesh(self, data: Any, scene: Any) -> None:
        self.obj = self._id(data, "objects", self.b.id)
        if self.obj.type != "MESH":
            raise self.fail(f"object {self.obj.name!r} is a {self.obj.type.lower()}, not a mesh")
        self.meshes = self._alternatives(data, "meshes")
        self.writes = [_target(self.obj, "data")]

    def _plan_mesh(self, v: Any, latent: dict, plan: Plan) -> None:
        plan.set(self.obj, "data", self.meshes[v])

    def _resolve_count(self, data: Any, scene: Any) -> None:
        coll = self._id(data, "collections", self.b.id)
        if self.b.objects is None:
            self.objs = sorted(coll.objects, key=lambda o: o.name)
        else:
            inside = {o.name for o in coll.objects}
            for name in self.b.objects:
                if name not in inside:
                    raise self.fail(f"object {name!r} is not in collection {coll.name!r}")
            self.objs = [coll.objects[name] for name in self.b.objects]
        assert isinstance(self.p, CategoricalParam)
        for c in self.p.choices:
            if int(c) > len(self.objs):
                raise self.fail(f"choice {c!r}: collection {coll.name!r} has only "
                                f"{len(self.objs)} objects")
        self.writes = [_target(o, a) for o in self.objs for a in ("hide_render", "hide_viewport")]

    def _plan_count(self, v: Any, latent: dict, plan: Plan) -> None:
        for k, obj in enumerate(self.objs):
            plan.set(obj, "hide_render", k >= int(v))
            plan.set(obj, "hide_viewport", k >= int(v))

    def plan(self, latent: dict, plan: Plan) -> None:
        getattr(self, f"_plan_{self.b.kind}")(latent[self.b.param], latent, plan)
