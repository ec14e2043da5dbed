"""Steps: hello, get_params, and installing a psi of my own with set_params (section 4)."""

from __future__ import annotations

import numpy as np

from .connection import expect_error
from .frames import check
from .space import param_dim, psi_from_space

HELLO_FIELDS = (
    ("protocol", int),
    ("server", str),
    ("blender", str),
    ("scene", str),
    ("space", dict),
    ("psi", list),
    ("generation", int),
    ("classes", list),
)


def hello(s):
    hello = s.conn.ok("hello", {"client": "thirdparty-client"})
    for key, typ in HELLO_FIELDS:
        check(isinstance(hello.get(key), typ), f"hello field {key!r}: {hello.get(key)!r}")
    s.hello, s.space, s.classes = hello, hello["space"], hello["classes"]
    space, classes = s.space, s.classes
    check(hello["protocol"] == 1, f"protocol {hello['protocol']}")
    check(
        space.get("format") == "autosim.space" and space.get("version") == 1,
        f"space format {space.get('format')!r} v{space.get('version')}",
    )
    check(classes[0] == "background", f"classes[0] = {classes[0]!r}")
    D, L = s.D, s.L
    check(len(hello["psi"]) == D, f"hello psi has {len(hello['psi'])} entries, space says {D}")
    feature_level = hello.get("feature_level", 1)
    _log_hello(s, feature_level)
    if "description" in hello:
        desc = hello["description"]
        check(desc.get("format") == "autosim.scene", f"description format {desc.get('format')!r}")
        s.log(f"  description: keys={sorted(desc)}")
    s.summary.update(
        scene=hello["scene"],
        classes=classes,
        psi_size=D,
        latent_size=L,
        feature_level=feature_level,
        server=hello["server"],
    )


def _log_hello(s, feature_level):
    hello, space = s.hello, s.space
    s.log(
        f"hello: server={hello['server']!r} blender={hello['blender']!r} "
        f"scene={hello['scene']!r} protocol={hello['protocol']} feature_level={feature_level} "
        f"heartbeat={hello.get('heartbeat')!r} generation={hello['generation']}"
    )
    s.log(f"  classes={s.classes}")
    n = len(space["params"])
    s.log(f"  space {space.get('name')!r}: {n} params, psi D={s.D}, latent L={s.L}")
    for p in space["params"]:
        extra = f" active_if={p['active_if']}" if "active_if" in p else ""
        if p["kind"] == "categorical":
            extra = f" choices={p['choices']}" + extra
        s.log(f"    {p['name']:<12} {p['kind']:<11} dim={param_dim(p)}{extra}")


def get_params_agrees(s):
    gp = s.conn.ok("get_params")
    check(
        gp["psi"] == s.hello["psi"]
        and gp["generation"] == s.hello["generation"]
        and gp["space"] == s.space,
        "get_params disagrees with hello",
    )
    s.gen0 = gp["generation"]


def own_psi(space):
    """A psi built from the space: lights at mid-range, narrow normals, first choices favoured."""
    over = {}
    for p in space["params"]:
        if p["kind"] == "normal":
            over[p["name"]] = {
                "mean": [
                    0.5 * (lo + hi) if p["name"].endswith("_light") else m
                    for m, lo, hi in zip(p["mean"], p["low"], p["high"])
                ],
                "log_std": [-1.5] * param_dim(p),
            }
        elif p["kind"] == "categorical":
            lg = [0.0] * param_dim(p)
            lg[0] = 1.0
            over[p["name"]] = {"logits": lg}
    return psi_from_space(space, overrides=over)


def set_params(s):
    """Install own_psi as an array, compare-and-set on the generation; get_params returns it."""
    psi, gen0 = own_psi(s.space), s.gen0
    sp = s.conn.ok(
        "set_params",
        {
            "psi": psi,
            "client": "thirdparty-client",
            "metrics": {"val_metric": 0.5},
            "metric_name": "mIoU",
            "expected_generation": gen0,
        },
    )
    check(sp["generation"] == gen0 + 1, f"set_params generation {sp['generation']} != {gen0 + 1}")
    s.psi, s.gen = psi, sp["generation"]
    gp = s.conn.ok("get_params")
    check(gp["generation"] == s.gen, "get_params generation after set_params")
    check(np.allclose(gp["psi"], psi, rtol=0, atol=1e-12), "get_params psi != the psi I set")
    s.log(
        f"set_params: psi as array<float64>[{s.D}] -> generation {gen0} -> {s.gen}; "
        "get_params returns it"
    )


def set_params_stale(s):
    """The same psi as a JSON list: refused on a stale generation, taken on the current one."""
    r = s.conn.request("set_params", {"psi": s.psi.tolist(), "expected_generation": s.gen0})
    expect_error(r, "stale_generation", "set_params with a stale expected_generation", r.id)
    s.summary["errors"]["stale set_params"] = (r["code"], r["message"])
    sp = s.conn.ok("set_params", {"psi": s.psi.tolist(), "expected_generation": s.gen})
    check(sp["generation"] == s.gen + 1, "set_params as list")
    s.gen = sp["generation"]
    s.log(
        f"set_params: psi as JSON list -> generation {s.gen}; stale expected_generation -> "
        f"{r['code']}: {r['message']}"
    )
