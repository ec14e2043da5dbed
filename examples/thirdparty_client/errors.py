"""Step: malformed messages and the documented errors (sections 2, 3 and 7).

Each case is data: (label, frames, expected code, expected reply id). ``malformed_messages``
sends them all, then a few unusual messages that must be accepted, then a few for which the doc
names no code (what comes back is recorded, not checked).
"""

from __future__ import annotations

import json

import numpy as np

from .connection import expect_error
from .frames import check, encode
from .space import first_slot, psi_slots

REF = {"$nd": 1, "dtype": "bool", "shape": [1]}  # a bool array of one element in frame 1
SMALL = {"width": 4, "height": 4, "return": ["mask"]}


def _get_params_with(id_, **fields):
    """Frame 0 of a get_params with extra (unknown) fields, as they are."""
    return json.dumps({"v": 1, "type": "get_params", "id": id_, **fields}).encode()


def _nested(id_, depth):
    """A get_params whose unknown field x is a list nested depth levels deep."""
    head = b'{"v":1,"type":"get_params","id":"' + id_.encode() + b'","x":'
    return [head + b"[" * depth + b"]" * depth + b"}"]


def refused_cases(s):
    """The messages the server must answer with an error: (label, frames, code, reply id)."""
    L, psi, one = s.L, s.psi, s.latents[:1]
    oob, half, nan, big = one.copy(), one.copy(), one.copy(), psi.copy()
    oob[0, first_slot(s.space, "categorical")] = 99.0
    half[0, first_slot(s.space, "categorical")] = 0.5
    nan[0, 0] = np.nan
    big[psi_slots(s.space).index("log_std")] = 6.0
    f11 = encode("render", "e11", {"latents": one})
    f12 = encode("render", "e12", {"latents": one})
    nd2 = (b'{"v":1,"type":"render","id":"e13","latents":{"$nd":2,"dtype":"float64",'
           b'"shape":[1,1]}}')

    def render(id_, **fields):
        return encode("render", id_, fields)

    return [
        ("frame 0 not JSON", [b"not json"], "bad_json", ""),
        ("NaN in JSON", [b'{"v":1,"type":"render","id":"e1","n":NaN,"seed":1}'], "bad_json", ""),
        ("top level not an object", [b"[1,2]"], "bad_json", ""),
        ("v = 99", encode("hello", "e2", v=99), "bad_version", "e2"),
        ("no id", [b'{"v":1,"type":"get_params"}'], "missing_field", ""),
        ("id not a string", [b'{"v":1,"type":"get_params","id":7}'], "bad_type", ""),
        ("unknown type", encode("frobnicate", "e3"), "unknown_type", "e3"),
        ("render n=0 (section 7)", render("e4", n=0, seed=1), "bad_value", "e4"),
        ("render n=true", render("e5", n=True, seed=1), "bad_type", "e5"),
        ("render n without seed", render("e6", n=1), "missing_field", "e6"),
        ("render neither n nor latents", render("e7"), "missing_field", "e7"),
        ("render both n and latents", render("e8", n=1, seed=1, latents=one), "bad_value", "e8"),
        ("render latents with wrong L", render("e9", latents=np.zeros((1, L + 1))), "bad_value",
         "e9"),
        ("render categorical index out of support",
         render("e10", latents=oob, width=8, height=8), "bad_value", "e10"),
        ("extra unreferenced frame", f11 + [b"xx"], "bad_frame", "e11"),
        ("frame shorter than prod(shape)*itemsize", [f12[0], f12[1][:-8]], "bad_frame", "e12"),
        ("$nd out of range", [nd2, b"\0" * 8], "bad_frame", "e13"),
        ("set_params psi wrong length", encode("set_params", "e15", {"psi": psi[:-1]}),
         "bad_value", "e15"),
        ("set_params log_std = 6 (> 5)", encode("set_params", "e16", {"psi": big}), "bad_value",
         "e16"),
        ("render stale generation", render("e17", n=1, seed=1, generation=s.gen - 1),
         "stale_generation", "e17"),
        ("render width 0", render("e18", n=1, seed=1, width=0), "bad_value", "e18"),
        ("render n = 513 (limit 512)", render("e19", n=513, seed=1, width=1, height=1),
         "bad_value", "e19"),
        ("render seed with latents", render("e30", latents=one, seed=1, **SMALL), "bad_value",
         "e30"),
        ("render categorical index 0.5", render("e31", latents=half, **SMALL), "bad_value", "e31"),
        ("render NaN inside the latents array", render("e32", latents=nan, **SMALL), "bad_value",
         "e32"),
        ("render K = 0 rows", render("e33", latents=np.zeros((0, L)), **SMALL), "bad_value",
         "e33"),
        ("render width 2049 (limit 2048)", render("e34", n=1, seed=1, width=2049, height=1),
         "bad_value", "e34"),
        ("render seed = -1", render("e35", n=1, seed=-1), "bad_value", "e35"),
        ("render n = 1.0 (float)", render("e36", n=1.0, seed=1), "bad_type", "e36"),
        ("bool array byte 0x02 (unknown field)", [_get_params_with("e37", x=REF), b"\x02"],
         "bad_frame", "e37"),
        ("dtype spelled 'float'",
         [_get_params_with("e38", x={**REF, "dtype": "float"}), b"\0" * 8], "bad_frame", "e38"),
        ("frame referenced twice", [_get_params_with("e39", x=REF, y=REF), b"\0"], "bad_frame",
         "e39"),
        ("JSON nested 65 levels", _nested("e40", 65), "bad_json", "e40"),
        ("number 1e400", [b'{"v":1,"type":"get_params","id":"e41","x":1e400}'], "bad_json", ""),
        ("UTF-8 byte order mark", [b'\xef\xbb\xbf{"v":1,"type":"get_params","id":"e42"}'],
         "bad_json", ""),
        ("envelope without v", [b'{"type":"get_params","id":"e43"}'], "missing_field", "e43"),
        ('envelope v = "1" (string)', [b'{"v":"1","type":"get_params","id":"e44"}'], "bad_type",
         "e44"),
        ("envelope without type", [b'{"v":1,"id":"e45"}'], "missing_field", "e45"),
        ("set_params psi NaN (array)", encode("set_params", "e46", {"psi": np.full(s.D, np.nan)}),
         "bad_value", "e46"),
        ("set_params metrics value a string",
         encode("set_params", "e47", {"psi": psi, "metrics": {"val_metric": "x"}}), "bad_type",
         "e47"),
    ]


def accepted_cases():
    """Unusual but valid: a 0-d and an empty array in an unknown field, JSON 64 levels deep."""
    return [
        ("0-d and empty arrays in an unknown field",
         encode("get_params", "e50", {"x": np.float64(1.0).reshape(()), "y": np.zeros(0)})),
        ("JSON nested 64 levels (unknown field)", _nested("e51", 64)),
    ]


def undocumented_cases(s):
    """Messages the doc names no code for."""
    one = s.latents[:1]
    return [
        ("optional field null (generation: null)",
         [b'{"v":1,"type":"render","id":"e20","n":1,"seed":1,"generation":null,'
          b'"width":4,"height":4,"return":["mask"]}']),
        ("unknown return name", encode("render", "e21", {"n": 1, "seed": 1, "return": ["depth"]})),
        ("latents of dtype int32",
         encode("render", "e14", {"latents": one.astype(np.int32), **SMALL})),
        ("latents as a 1-d array [L]", encode("render", "e22", {"latents": s.latents[0], **SMALL})),
    ]


def malformed_messages(s):
    s.log("errors:")
    for what, frames, code, id_ in refused_cases(s):
        r = s.conn.send_raw(frames)
        expect_error(r, code, what, id_)
        s.summary["errors"][what] = (r["code"], r["message"])
        s.log(f"  {what:<44} -> {r['code']} (id {r.id!r}): {r['message']}")
    for what, frames in accepted_cases():
        r = s.conn.send_raw(frames)
        check(r is not None and r.type == "get_params" and r.get("ok") is True, f"{what}: {r!r}")
        s.log(f"  {what:<44} -> accepted")
    for what, frames in undocumented_cases(s):
        r = s.conn.send_raw(frames)
        check(r is not None, f"{what}: no reply")
        got = (r.get("code"), r.get("message")) if r.type == "error" else ("ok", "")
        s.summary["errors"][what] = got
        s.log(f"  {what:<44} -> {got[0]} (id {r.id!r}): {got[1]}")
    # the server keeps serving after errors
    s.conn.ok("get_params")
