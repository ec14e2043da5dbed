"""A render-server client written only from docs/protocol.md (pyzmq + numpy + stdlib).

It does not import anything of this project: frames are built and parsed here, following
sections 2 (message layout, array references), 3 (replies, error codes), 4 (message types and
the psi / latent layouts), 7 (example exchanges) and 9 (version 2: ping and the heartbeat socket).

    python examples/thirdparty_client.py tcp://127.0.0.1:5555 [--size 32] [--count 4]
                                         [--no-shutdown] [--quiet]

``main(argv)`` runs the whole session and returns a summary dict (used by the test); every check
that fails raises ``ClientError``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
import urllib.parse

import numpy as np
import zmq

PROTOCOL_V = 1
DTYPES = ("uint8", "int8", "uint16", "int16", "int32", "int64", "float32", "float64", "bool")
ERROR_CODES = {
    "bad_json",
    "bad_version",
    "missing_field",
    "bad_type",
    "bad_frame",
    "too_large",
    "unknown_type",
    "bad_value",
    "stale_generation",
    "render_failed",
    "busy",
    "internal",
}
PING_FIELDS = {
    "busy": bool,
    "request": str,
    "progress": int,
    "images": int,
    "generation": int,
    "instance": str,
    "uptime_s": (int, float),
}


class ClientError(AssertionError):
    """A reply that does not match what docs/protocol.md promises."""


def check(cond, what):
    if not cond:
        raise ClientError(what)


# --------------------------------------------------------------------- frames (section 2)


def _reject_constant(name):
    raise ValueError(f"non-finite JSON number {name}")


def encode(type_, id_, fields=None, *, v=PROTOCOL_V):
    """Envelope + fields -> [frame0, frame1, ...]; numpy arrays become $nd references."""
    frames = [None]

    def walk(x):
        if isinstance(x, np.ndarray):
            check(x.dtype.name in DTYPES, f"dtype {x.dtype} not in the protocol")
            a = np.ascontiguousarray(x, dtype=x.dtype.newbyteorder("<"))
            frames.append(a.tobytes(order="C"))
            return {"$nd": len(frames) - 1, "dtype": x.dtype.name, "shape": list(x.shape)}
        if isinstance(x, dict):
            return {str(k): walk(val) for k, val in x.items()}
        if isinstance(x, (list, tuple)):
            return [walk(val) for val in x]
        if isinstance(x, np.generic):
            return x.item()
        return x

    env = {"v": v, "type": type_, "id": id_}
    env.update(walk(dict(fields or {})))
    frames[0] = json.dumps(env, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return frames


class Message:
    def __init__(self, obj):
        self.v = obj.pop("v")
        self.type = obj.pop("type")
        self.id = obj.pop("id")
        self.fields = obj

    def __getitem__(self, key):
        return self.fields[key]

    def __contains__(self, key):
        return key in self.fields

    def get(self, key, default=None):
        return self.fields.get(key, default)

    def __repr__(self):
        return f"Message(type={self.type!r}, id={self.id!r}, fields={_short(self.fields)})"


def decode(frames):
    """[frame0, frame1, ...] -> Message with arrays as read-only numpy views."""
    raw = [bytes(f.buffer) if isinstance(f, zmq.Frame) else bytes(f) for f in frames]
    check(len(raw) >= 1, "no frames")
    obj = json.loads(raw[0].decode("utf-8"), parse_constant=_reject_constant)
    check(isinstance(obj, dict), "frame 0 is not a JSON object")
    for key, typ in (("v", int), ("type", str), ("id", str)):
        check(
            isinstance(obj.get(key), typ) and not isinstance(obj.get(key), bool),
            f"envelope key {key!r} missing or wrong type in {raw[0][:200]!r}",
        )
    used = set()

    def walk(x):
        if isinstance(x, dict):
            if "$nd" in x:
                check(set(x) == {"$nd", "dtype", "shape"}, f"bad array reference {x}")
                k, dt, shape = x["$nd"], x["dtype"], x["shape"]
                check(isinstance(k, int) and 1 <= k < len(raw), f"$nd {k} out of range")
                check(k not in used, f"frame {k} referenced twice")
                check(dt in DTYPES, f"unknown dtype {dt!r}")
                check(
                    isinstance(shape, list)
                    and len(shape) <= 32
                    and all(isinstance(s, int) and s >= 0 for s in shape),
                    f"bad shape {shape}",
                )
                used.add(k)
                dtype = np.dtype(dt).newbyteorder("<") if dt != "bool" else np.dtype(bool)
                want = math.prod(shape) * dtype.itemsize
                check(len(raw[k]) == want, f"frame {k}: {len(raw[k])} bytes, want {want}")
                a = np.frombuffer(raw[k], dtype=dtype).reshape(shape)
                if dt == "bool":
                    check(np.isin(np.frombuffer(raw[k], np.uint8), (0, 1)).all(), "bool not 0/1")
                return a
            return {k: walk(val) for k, val in x.items()}
        if isinstance(x, list):
            return [walk(val) for val in x]
        return x

    obj = walk(obj)
    check(used == set(range(1, len(raw))), f"unreferenced frames {set(range(1, len(raw))) - used}")
    return Message(obj)


def _short(x, n=300):
    def conv(y):
        if isinstance(y, np.ndarray):
            return f"<{y.dtype}{list(y.shape)}>"
        if isinstance(y, dict):
            return {k: conv(val) for k, val in y.items()}
        if isinstance(y, list):
            return [conv(val) for val in y]
        return y

    s = json.dumps(conv(x))
    return s if len(s) <= n else s[: n - 3] + "..."


# --------------------------------------------------------------------- connection (section 1)


class Connection:
    """A REQ socket with a receive timeout that is reopened after a timeout (section 1)."""

    def __init__(self, ctx, endpoint, timeout_s=120.0):
        self.ctx, self.endpoint, self.timeout_ms = ctx, endpoint, int(timeout_s * 1000)
        self.sock = None
        self._n = 0
        self._open()

    def _open(self):
        if self.sock is not None:
            self.sock.close(linger=0)
        self.sock = self.ctx.socket(zmq.REQ)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(self.endpoint)

    def next_id(self):
        self._n += 1
        return f"tp-{self._n}"

    def send_raw(self, frames, timeout_ms=None):
        """Send frames as they are, return the decoded reply (None on timeout)."""
        self.sock.send_multipart(frames)
        if not self.sock.poll(timeout_ms or self.timeout_ms):
            self._open()
            return None
        return decode(self.sock.recv_multipart(copy=False))

    def request(self, type_, fields=None, *, id_=None, timeout_ms=None):
        id_ = self.next_id() if id_ is None else id_
        reply = self.send_raw(encode(type_, id_, fields), timeout_ms)
        check(reply is not None, f"no reply to {type_} within the timeout")
        check(reply.id == id_, f"reply id {reply.id!r} != request id {id_!r}")
        return reply

    def ok(self, type_, fields=None, **kw):
        reply = self.request(type_, fields, **kw)
        check(reply.type == type_ and reply.get("ok") is True, f"{type_} failed: {reply!r}")
        return reply

    def close(self):
        self.sock.close(linger=0)


def expect_error(reply, code, what, id_=None):
    check(reply is not None, f"{what}: no reply (expected error {code})")
    check(
        reply.type == "error" and reply.get("ok") is False,
        f"{what}: expected an error reply, got {reply!r}",
    )
    check(reply.get("code") in ERROR_CODES, f"{what}: undocumented code {reply.get('code')!r}")
    check(isinstance(reply.get("message"), str), f"{what}: no message")
    check(
        reply.get("code") == code,
        f"{what}: expected code {code!r}, got {reply.get('code')!r} ({reply.get('message')})",
    )
    if id_ is not None:
        check(reply.id == id_, f"{what}: error id {reply.id!r}, expected {id_!r}")
    return reply


# --------------------------------------------------------------------- space, psi, latents


def param_dim(p):
    kind = p["kind"]
    if kind == "normal":
        return len(p["mean"])
    if kind == "categorical":
        return len(p["choices"])
    if kind == "bernoulli":
        return 1
    raise ClientError(f"unknown parameter kind {kind!r} of {p.get('name')!r}")


def psi_size(space):
    return sum(2 * param_dim(p) if p["kind"] == "normal" else param_dim(p) for p in space["params"])


def latent_size(space):
    return sum(param_dim(p) if p["kind"] == "normal" else 1 for p in space["params"])


def _bernoulli_logit(p):
    # "The parameter space": a bernoulli's key is `logit`, one number.
    if "logit" not in p:
        raise ClientError(f"bernoulli {p['name']!r}: no 'logit' key in {sorted(p)}")
    return float(p["logit"])


def psi_from_space(space, *, overrides=None):
    """Flat psi in the section-4 layout: normal mean..log_std, categorical logits, bernoulli logit.

    ``overrides`` maps a parameter name to a dict like {"mean": [...], "log_std": [...]} or
    {"logits": [...]} / {"logit": x}.
    """
    overrides = overrides or {}
    out = []
    for p in space["params"]:
        o = overrides.get(p["name"], {})
        if p["kind"] == "normal":
            out += [float(x) for x in o.get("mean", p["mean"])]
            out += [float(x) for x in o.get("log_std", p["log_std"])]
        elif p["kind"] == "categorical":
            out += [float(x) for x in o.get("logits", p["logits"])]
        else:
            out.append(float(o.get("logit", _bernoulli_logit(p))))
    check(len(out) == psi_size(space), "psi length bookkeeping")
    return np.asarray(out, dtype=np.float64)


def unflatten_psi(space, psi):
    """Flat psi -> per-parameter dict (inverse of psi_from_space)."""
    out, i = {}, 0
    for p in space["params"]:
        d = param_dim(p)
        if p["kind"] == "normal":
            out[p["name"]] = {"mean": psi[i : i + d], "log_std": psi[i + d : i + 2 * d]}
            i += 2 * d
        elif p["kind"] == "categorical":
            out[p["name"]] = {"logits": psi[i : i + d]}
            i += d
        else:
            out[p["name"]] = {"logit": psi[i]}
            i += 1
    return out


def latent_row(space, values):
    """values: name -> list of floats (normal), choice name (categorical), bool (bernoulli)."""
    row = []
    for p in space["params"]:
        val = values[p["name"]]
        if p["kind"] == "normal":
            val = list(np.atleast_1d(val))
            check(len(val) == param_dim(p), f"{p['name']}: {len(val)} values")
            row += [float(x) for x in val]
        elif p["kind"] == "categorical":
            row.append(float(p["choices"].index(val)))
        else:
            row.append(1.0 if val else 0.0)
    return row


def named_from_row(space, row):
    """What the doc says latent_named holds for a flat latent row."""
    out, i = {}, 0
    for p in space["params"]:
        if p["kind"] == "normal":
            d = param_dim(p)
            # observed: a normal of dimension 1 is a bare float, d > 1 a list of floats
            vals = [float(x) for x in row[i : i + d]]
            out[p["name"]] = vals[0] if d == 1 else vals
            i += d
        elif p["kind"] == "categorical":
            out[p["name"]] = p["choices"][int(row[i])]
            i += 1
        else:
            out[p["name"]] = bool(row[i])
            i += 1
    return out


def sample_like_server(space, psi, n, seed):
    """The doc's "Seeded sampling" recipe, implemented independently."""
    rng = np.random.default_rng(seed)
    params = unflatten_psi(space, np.asarray(psi, dtype=np.float64))
    cols = []
    for p in space["params"]:
        q = params[p["name"]]
        if p["kind"] == "normal":
            d = param_dim(p)
            z = rng.standard_normal((n, d))
            cols.append(z * np.exp(q["log_std"]) + q["mean"])
        elif p["kind"] == "categorical":
            lg = np.asarray(q["logits"], dtype=np.float64)
            pr = np.exp(lg - lg.max())
            pr /= pr.sum()
            u = rng.random(n)
            cols.append(np.searchsorted(np.cumsum(pr), u, side="right")[:, None].astype(float))
        else:
            u = rng.random(n)
            cols.append((u < 1.0 / (1.0 + np.exp(-q["logit"])))[:, None].astype(float))
    return np.concatenate(cols, axis=1)


# --------------------------------------------------------------------- item checks


def check_item(
    item,
    *,
    index,
    request_seed,
    generation,
    width,
    height,
    returned,
    classes,
    sent_latent=None,
    space=None,
):
    where = f"item {index}"
    check(isinstance(item["item_id"], str) and item["item_id"], f"{where}: item_id")
    check(item["index"] == index, f"{where}: index {item['index']}")
    check(item["seed"] == request_seed, f"{where}: seed {item['seed']!r} != {request_seed!r}")
    check(item["generation"] == generation, f"{where}: generation {item['generation']}")
    check(item["width"] == width and item["height"] == height, f"{where}: size")
    check(
        isinstance(item["render_s"], (int, float)) and item["render_s"] >= 0, f"{where}: render_s"
    )
    check(
        isinstance(item["extract_s"], (int, float)) and item["extract_s"] >= 0,
        f"{where}: extract_s",
    )
    latent = item["latent"]
    check(isinstance(latent, list) and len(latent) == latent_size(space), f"{where}: latent size")
    if sent_latent is not None:
        check(
            np.allclose(latent, sent_latent, rtol=0, atol=1e-12),
            f"{where}: latent {latent} != sent {list(sent_latent)}",
        )
    check(
        item["latent_named"] == named_from_row(space, latent),
        f"{where}: latent_named {item['latent_named']} != {named_from_row(space, latent)}",
    )
    arrays = {"image", "mask", "instances", "boxes", "classes"}
    want = set(returned) | ({"classes"} if "boxes" in returned else set())
    present = {k for k in arrays if k in item}
    check(present == want, f"{where}: arrays {sorted(present)}, asked for {sorted(want)}")
    H, W = height, width
    if "image" in item:
        img = item["image"]
        check(
            img.dtype == np.uint8 and img.shape == (H, W, 3),
            f"{where}: image {img.dtype}{img.shape}",
        )
    if "mask" in item:
        m = item["mask"]
        check(m.dtype == np.uint8 and m.shape == (H, W), f"{where}: mask {m.dtype}{m.shape}")
        check(
            int(m.max(initial=0)) < len(classes), f"{where}: mask class {m.max()} >= {len(classes)}"
        )
    if "instances" in item:
        ins = item["instances"]
        check(
            ins.dtype == np.uint16 and ins.shape == (H, W),
            f"{where}: instances {ins.dtype}{ins.shape}",
        )
    if "boxes" in item:
        b, c = item["boxes"], item["classes"]
        check(
            b.dtype == np.float32 and b.ndim == 2 and b.shape[1] == 4,
            f"{where}: boxes {b.dtype}{b.shape}",
        )
        check(
            c.dtype == np.int32 and c.shape == (b.shape[0],), f"{where}: classes {c.dtype}{c.shape}"
        )
        check(((c >= 1) & (c < len(classes))).all(), f"{where}: box classes {c}")
        if "instances" in item:
            ids = [int(i) for i in np.unique(item["instances"]) if i != 0]
            check(
                len(ids) == b.shape[0], f"{where}: {len(ids)} instance ids but {b.shape[0]} boxes"
            )
            for j, iid in enumerate(ids):
                ys, xs = np.nonzero(item["instances"] == iid)
                tight = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
                check(
                    np.allclose(b[j], tight), f"{where}: box {j} {b[j].tolist()} vs pixels {tight}"
                )
                if "mask" in item:
                    cls = np.unique(item["mask"][item["instances"] == iid])
                    check(
                        cls.tolist() == [int(c[j])],
                        f"{where}: instance {iid} mask classes {cls} vs box class {int(c[j])}",
                    )


# --------------------------------------------------------------------- heartbeat (section 9.1)


def heartbeat_endpoint(announced, main_endpoint):
    """Announced endpoint, with the host replaced by the one we reached the server by."""
    port = urllib.parse.urlsplit(announced).port
    host = urllib.parse.urlsplit(main_endpoint).hostname
    check(port is not None and host is not None, f"heartbeat endpoint {announced!r}")
    if ":" in host:
        host = f"[{host}]"
    return f"tcp://{host}:{port}"


class Heartbeat:
    """A DEALER on the heartbeat socket: empty delimiter first, replies matched by id."""

    def __init__(self, ctx, endpoint):
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self._n = 0

    def send(self, type_="ping", fields=None):
        self._n += 1
        id_ = f"hb-{self._n}"
        self.sock.send_multipart([b""] + encode(type_, id_, fields))
        return id_

    def recv(self, timeout_ms):
        if not self.sock.poll(timeout_ms):
            return None
        parts = self.sock.recv_multipart(copy=False)
        check(parts[0].bytes == b"", "DEALER reply without the empty delimiter")
        return decode(parts[1:])

    def ping(self, timeout_ms=2000):
        id_ = self.send()
        while True:
            r = self.recv(timeout_ms)
            if r is None or r.id == id_:
                return r

    def close(self):
        self.sock.close(linger=0)


def check_ping(reply, what):
    check(reply is not None, f"{what}: no reply")
    check(reply.type == "ping" and reply.get("ok") is True, f"{what}: {reply!r}")
    for key, typ in PING_FIELDS.items():
        val = reply.get(key)
        check(
            isinstance(val, typ) and (typ is bool or not isinstance(val, bool)),
            f"{what}: field {key!r} = {val!r}",
        )
    return reply


# --------------------------------------------------------------------- the session


def run(endpoint, *, size=32, count=4, shutdown=True, log=print, timeout_s=120.0):
    ctx = zmq.Context()
    conn = Connection(ctx, endpoint, timeout_s)
    hb = None
    summary = {"endpoint": endpoint, "errors": {}, "notes": []}
    try:
        # ---- hello
        hello = conn.ok("hello", {"client": "thirdparty-client"})
        for key, typ in (
            ("protocol", int),
            ("server", str),
            ("blender", str),
            ("scene", str),
            ("space", dict),
            ("psi", list),
            ("generation", int),
            ("classes", list),
        ):
            check(isinstance(hello.get(key), typ), f"hello field {key!r}: {hello.get(key)!r}")
        space, classes = hello["space"], hello["classes"]
        check(hello["protocol"] == 1, f"protocol {hello['protocol']}")
        check(
            space.get("format") == "autosim.space" and space.get("version") == 1,
            f"space format {space.get('format')!r} v{space.get('version')}",
        )
        check(classes[0] == "background", f"classes[0] = {classes[0]!r}")
        D, L = psi_size(space), latent_size(space)
        check(len(hello["psi"]) == D, f"hello psi has {len(hello['psi'])} entries, space says {D}")
        feature_level = hello.get("feature_level", 1)
        log(
            f"hello: server={hello['server']!r} blender={hello['blender']!r} "
            f"scene={hello['scene']!r} protocol={hello['protocol']} feature_level={feature_level} "
            f"heartbeat={hello.get('heartbeat')!r} generation={hello['generation']}"
        )
        log(f"  classes={classes}")
        log(
            f"  space {space.get('name')!r}: {len(space['params'])} params, psi D={D}, latent L={L}"
        )
        for p in space["params"]:
            extra = f" active_if={p['active_if']}" if "active_if" in p else ""
            if p["kind"] == "categorical":
                extra = f" choices={p['choices']}" + extra
            log(f"    {p['name']:<12} {p['kind']:<11} dim={param_dim(p)}{extra}")
        if "description" in hello:
            desc = hello["description"]
            check(
                desc.get("format") == "autosim.scene", f"description format {desc.get('format')!r}"
            )
            log(f"  description: keys={sorted(desc)}")
        summary.update(
            scene=hello["scene"],
            classes=classes,
            psi_size=D,
            latent_size=L,
            feature_level=feature_level,
            server=hello["server"],
        )

        # ---- get_params agrees with hello
        gp = conn.ok("get_params")
        check(
            gp["psi"] == hello["psi"]
            and gp["generation"] == hello["generation"]
            and gp["space"] == space,
            "get_params disagrees with hello",
        )
        gen0 = gp["generation"]

        # ---- build my own psi from the space and install it
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
        psi = psi_from_space(space, overrides=over)
        sp = conn.ok(
            "set_params",
            {
                "psi": psi,
                "client": "thirdparty-client",
                "metrics": {"val_metric": 0.5},
                "metric_name": "mIoU",
                "expected_generation": gen0,
            },
        )
        check(
            sp["generation"] == gen0 + 1, f"set_params generation {sp['generation']} != {gen0 + 1}"
        )
        gen = sp["generation"]
        gp = conn.ok("get_params")
        check(gp["generation"] == gen, "get_params generation after set_params")
        check(np.allclose(gp["psi"], psi, rtol=0, atol=1e-12), "get_params psi != the psi I set")
        log(
            f"set_params: psi as array<float64>[{D}] -> generation {gen0} -> {gen}; "
            "get_params returns it"
        )
        # the same psi as a JSON list, compare-and-set against a stale generation
        r = conn.request("set_params", {"psi": psi.tolist(), "expected_generation": gen0})
        expect_error(r, "stale_generation", "set_params with a stale expected_generation", r.id)
        summary["errors"]["stale set_params"] = (r["code"], r["message"])
        sp = conn.ok("set_params", {"psi": psi.tolist(), "expected_generation": gen})
        check(sp["generation"] == gen + 1, "set_params as list")
        gen = sp["generation"]
        log(
            f"set_params: psi as JSON list -> generation {gen}; stale expected_generation -> "
            f"{r['code']}: {r['message']}"
        )

        # ---- explicit latents, built by hand in the documented layout
        rows = []
        for k in range(count):
            vals = {}
            for p in space["params"]:
                name = p["name"]
                if p["kind"] == "normal":
                    lo, hi = np.asarray(p["low"], float), np.asarray(p["high"], float)
                    if name.startswith("obj") and name.endswith("_xy"):
                        slot = int(name[3])
                        ang = 2 * math.pi * (slot / 5 + k / 7)
                        vals[name] = [1.8 * math.cos(ang), 1.8 * math.sin(ang)]
                    elif name == "bounces":
                        vals[name] = [1.0]
                    else:
                        vals[name] = list(lo + (0.3 + 0.1 * k) * (hi - lo))
                elif p["kind"] == "categorical":
                    ch = p["choices"]
                    vals[name] = ch[0] if name == "samples" else ch[(k + 1) % len(ch)]
                else:
                    vals[name] = bool(k % 2)
            rows.append(latent_row(space, vals))
        latents = np.asarray(rows, dtype=np.float64)
        check(latents.shape == (count, L), "latent shape")
        t0 = time.monotonic()
        rr = conn.ok(
            "render",
            {
                "latents": latents,
                "width": size,
                "height": size,
                "return": ["image", "mask", "instances", "boxes"],
                "generation": gen,
            },
        )
        wall = time.monotonic() - t0
        check(rr["generation"] == gen, "render generation")
        items = rr["items"]
        check(len(items) == count, f"{len(items)} items for {count} latents")
        for k, item in enumerate(items):
            check_item(
                item,
                index=k,
                request_seed=None,
                generation=gen,
                width=size,
                height=size,
                returned=["image", "mask", "instances", "boxes"],
                classes=classes,
                sent_latent=latents[k],
                space=space,
            )
        ids = [it["item_id"] for it in items]
        check(len(set(ids)) == len(ids), f"item ids not unique: {ids}")
        log(
            f"render: {count} explicit latents (array<float64>[{count},{L}]) at {size}x{size} "
            f"in {wall:.2f} s, generation {rr['generation']}"
        )
        for it in items:
            ncls = {classes[c]: int((it["mask"] == c).sum()) for c in np.unique(it["mask"])}
            log(
                f"  item {it['index']} id={it['item_id']} seed={it['seed']} "
                f"render_s={it['render_s']:.3f} extract_s={it['extract_s']:.4f} "
                f"image mean={it['image'].mean():.1f} mask px={ncls} "
                f"instances={sorted(int(i) for i in np.unique(it['instances']) if i)} "
                f"boxes={it['boxes'].round(1).tolist()} classes={it['classes'].tolist()} "
                f"num_objects={it['latent_named'].get('num_objects')!r}"
            )
        summary["items"] = [
            {
                "item_id": it["item_id"],
                "index": it["index"],
                "image_shape": it["image"].shape,
                "mask_shape": it["mask"].shape,
                "n_boxes": int(it["boxes"].shape[0]),
                "latent_named": it["latent_named"],
            }
            for it in items
        ]
        summary["render_wall_s"] = wall

        # ---- list-of-lists latents, only a mask back, float32 would also do
        rr2 = conn.ok(
            "render", {"latents": latents[:2].tolist(), "width": 8, "height": 6, "return": ["mask"]}
        )
        check(len(rr2["items"]) == 2, "list latents: item count")
        for k, item in enumerate(rr2["items"]):
            check_item(
                item,
                index=k,
                request_seed=None,
                generation=gen,
                width=8,
                height=6,
                returned=["mask"],
                classes=classes,
                sent_latent=latents[k],
                space=space,
            )
        log(
            "render: latents as JSON lists, return=['mask'], 8x6 -> only masks "
            f"{[it['mask'].shape for it in rr2['items']]}"
        )

        # ---- seeded sampling (n + seed), compared with the doc's recipe
        rr3 = conn.ok(
            "render", {"n": 3, "seed": 1234, "width": 8, "height": 8, "return": ["boxes"]}
        )
        mine = sample_like_server(space, psi, 3, 1234)
        for k, item in enumerate(rr3["items"]):
            check_item(
                item,
                index=k,
                request_seed=1234,
                generation=gen,
                width=8,
                height=8,
                returned=["boxes"],
                classes=classes,
                space=space,
            )
        got = np.asarray([it["latent"] for it in rr3["items"]])
        same = bool(np.allclose(got, mine, rtol=0, atol=1e-9))
        summary["seeded_matches_doc"] = same
        log(
            f"render: n=3 seed=1234 -> latents {'MATCH' if same else 'DIFFER FROM'} the doc's "
            "seeded-sampling recipe"
        )
        if not same:
            log(f"  server row 0: {np.round(got[0], 4).tolist()}")
            log(f"  mine   row 0: {np.round(mine[0], 4).tolist()}")
        all_ids = ids + [it["item_id"] for it in rr2["items"] + rr3["items"]]
        check(len(set(all_ids)) == len(all_ids), "item ids repeat across requests")

        # ---- malformed messages and the documented errors
        def bad(what, code, frames, id_):
            r = conn.send_raw(frames)
            expect_error(r, code, what, id_)
            summary["errors"][what] = (r["code"], r["message"])
            log(f"  {what:<44} -> {r['code']} (id {r.id!r}): {r['message']}")

        log("errors:")
        bad("frame 0 not JSON", "bad_json", [b"not json"], "")
        bad("NaN in JSON", "bad_json", [b'{"v":1,"type":"render","id":"e1","n":NaN,"seed":1}'], "")
        bad("top level not an object", "bad_json", [b"[1,2]"], "")
        bad("v = 99", "bad_version", encode("hello", "e2", v=99), "e2")
        bad("no id", "missing_field", [b'{"v":1,"type":"get_params"}'], "")
        bad("id not a string", "bad_type", [b'{"v":1,"type":"get_params","id":7}'], "")
        bad("unknown type", "unknown_type", encode("frobnicate", "e3"), "e3")
        bad(
            "render n=0 (section 7)", "bad_value", encode("render", "e4", {"n": 0, "seed": 1}), "e4"
        )
        bad("render n=true", "bad_type", encode("render", "e5", {"n": True, "seed": 1}), "e5")
        bad("render n without seed", "missing_field", encode("render", "e6", {"n": 1}), "e6")
        bad("render neither n nor latents", "missing_field", encode("render", "e7", {}), "e7")
        bad(
            "render both n and latents",
            "bad_value",
            encode("render", "e8", {"n": 1, "seed": 1, "latents": latents[:1]}),
            "e8",
        )
        bad(
            "render latents with wrong L",
            "bad_value",
            encode("render", "e9", {"latents": np.zeros((1, L + 1))}),
            "e9",
        )
        oob = latents[:1].copy()
        oob[0, [i for i, p in enumerate(_slots(space)) if p["kind"] == "categorical"][0]] = 99.0
        bad(
            "render categorical index out of support",
            "bad_value",
            encode("render", "e10", {"latents": oob, "width": 8, "height": 8}),
            "e10",
        )
        f = encode("render", "e11", {"latents": latents[:1]})
        bad("extra unreferenced frame", "bad_frame", f + [b"xx"], "e11")
        f = encode("render", "e12", {"latents": latents[:1]})
        bad("frame shorter than prod(shape)*itemsize", "bad_frame", [f[0], f[1][:-8]], "e12")
        bad(
            "$nd out of range",
            "bad_frame",
            [
                b'{"v":1,"type":"render","id":"e13","latents":{"$nd":2,"dtype":"float64",'
                b'"shape":[1,1]}}',
                b"\0" * 8,
            ],
            "e13",
        )
        bad(
            "set_params psi wrong length",
            "bad_value",
            encode("set_params", "e15", {"psi": psi[:-1]}),
            "e15",
        )
        big = psi.copy()
        big[[i for i, x in enumerate(_psi_slots(space)) if x == "log_std"][0]] = 6.0
        bad(
            "set_params log_std = 6 (> 5)",
            "bad_value",
            encode("set_params", "e16", {"psi": big}),
            "e16",
        )
        bad(
            "render stale generation",
            "stale_generation",
            encode("render", "e17", {"n": 1, "seed": 1, "generation": gen - 1}),
            "e17",
        )
        bad(
            "render width 0",
            "bad_value",
            encode("render", "e18", {"n": 1, "seed": 1, "width": 0}),
            "e18",
        )
        bad(
            "render n = 513 (limit 512)",
            "bad_value",
            encode("render", "e19", {"n": 513, "seed": 1, "width": 1, "height": 1}),
            "e19",
        )
        one = latents[:1]
        small = {"width": 4, "height": 4, "return": ["mask"]}
        half = one.copy()
        half[0, _first_slot(space, "categorical")] = 0.5
        nan = one.copy()
        nan[0, 0] = np.nan
        ref = {"$nd": 1, "dtype": "bool", "shape": [1]}
        for what, code, frames, id_ in (
            (
                "render seed with latents",
                "bad_value",
                encode("render", "e30", {"latents": one, "seed": 1, **small}),
                "e30",
            ),
            (
                "render categorical index 0.5",
                "bad_value",
                encode("render", "e31", {"latents": half, **small}),
                "e31",
            ),
            (
                "render NaN inside the latents array",
                "bad_value",
                encode("render", "e32", {"latents": nan, **small}),
                "e32",
            ),
            (
                "render K = 0 rows",
                "bad_value",
                encode("render", "e33", {"latents": np.zeros((0, L)), **small}),
                "e33",
            ),
            (
                "render width 2049 (limit 2048)",
                "bad_value",
                encode("render", "e34", {"n": 1, "seed": 1, "width": 2049, "height": 1}),
                "e34",
            ),
            ("render seed = -1", "bad_value", encode("render", "e35", {"n": 1, "seed": -1}), "e35"),
            (
                "render n = 1.0 (float)",
                "bad_type",
                encode("render", "e36", {"n": 1.0, "seed": 1}),
                "e36",
            ),
            (
                "bool array byte 0x02 (unknown field)",
                "bad_frame",
                [
                    json.dumps({"v": 1, "type": "get_params", "id": "e37", "x": ref}).encode(),
                    b"\x02",
                ],
                "e37",
            ),
            (
                "dtype spelled 'float'",
                "bad_frame",
                [
                    json.dumps(
                        {"v": 1, "type": "get_params", "id": "e38", "x": {**ref, "dtype": "float"}}
                    ).encode(),
                    b"\0" * 8,
                ],
                "e38",
            ),
            (
                "frame referenced twice",
                "bad_frame",
                [
                    json.dumps(
                        {"v": 1, "type": "get_params", "id": "e39", "x": ref, "y": ref}
                    ).encode(),
                    b"\0",
                ],
                "e39",
            ),
            (
                "JSON nested 65 levels",
                "bad_json",
                [b'{"v":1,"type":"get_params","id":"e40","x":' + b"[" * 65 + b"]" * 65 + b"}"],
                "e40",
            ),
            ("number 1e400", "bad_json", [b'{"v":1,"type":"get_params","id":"e41","x":1e400}'], ""),
            (
                "UTF-8 byte order mark",
                "bad_json",
                [b'\xef\xbb\xbf{"v":1,"type":"get_params","id":"e42"}'],
                "",
            ),
            ("envelope without v", "missing_field", [b'{"type":"get_params","id":"e43"}'], "e43"),
            (
                'envelope v = "1" (string)',
                "bad_type",
                [b'{"v":"1","type":"get_params","id":"e44"}'],
                "e44",
            ),
            ("envelope without type", "missing_field", [b'{"v":1,"id":"e45"}'], "e45"),
            (
                "set_params psi NaN (array)",
                "bad_value",
                encode("set_params", "e46", {"psi": np.full(D, np.nan)}),
                "e46",
            ),
            (
                "set_params metrics value a string",
                "bad_type",
                encode("set_params", "e47", {"psi": psi, "metrics": {"val_metric": "x"}}),
                "e47",
            ),
        ):
            bad(what, code, frames, id_)
        # accepted although unusual: a 0-d and an empty array in an unknown field, 64 levels
        for what, frames in (
            (
                "0-d and empty arrays in an unknown field",
                encode("get_params", "e50", {"x": np.float64(1.0).reshape(()), "y": np.zeros(0)}),
            ),
            (
                "JSON nested 64 levels (unknown field)",
                [b'{"v":1,"type":"get_params","id":"e51","x":' + b"[" * 64 + b"]" * 64 + b"}"],
            ),
        ):
            r = conn.send_raw(frames)
            check(
                r is not None and r.type == "get_params" and r.get("ok") is True, f"{what}: {r!r}"
            )
            log(f"  {what:<44} -> accepted")
        # the doc names no code for these two: record what comes back
        for what, frames in (
            (
                "optional field null (generation: null)",
                [
                    b'{"v":1,"type":"render","id":"e20","n":1,"seed":1,"generation":null,'
                    b'"width":4,"height":4,"return":["mask"]}'
                ],
            ),
            (
                "unknown return name",
                encode("render", "e21", {"n": 1, "seed": 1, "return": ["depth"]}),
            ),
            (
                "latents of dtype int32",
                encode(
                    "render",
                    "e14",
                    {
                        "latents": latents[:1].astype(np.int32),
                        "width": 4,
                        "height": 4,
                        "return": ["mask"],
                    },
                ),
            ),
            (
                "latents as a 1-d array [L]",
                encode(
                    "render",
                    "e22",
                    {"latents": latents[0], "width": 4, "height": 4, "return": ["mask"]},
                ),
            ),
        ):
            r = conn.send_raw(frames)
            check(r is not None, f"{what}: no reply")
            got = (r.get("code"), r.get("message")) if r.type == "error" else ("ok", "")
            summary["errors"][what] = got
            log(f"  {what:<44} -> {got[0]} (id {r.id!r}): {got[1]}")
        # the server keeps serving after errors
        conn.ok("get_params")

        # ---- version 2: ping on the main socket and on the heartbeat socket
        ping = check_ping(conn.ok("ping"), "ping on the main socket")
        check(not ping["busy"] and ping["request"] == "", f"idle ping {ping!r}")
        check(ping["generation"] == gen, "ping generation")
        # images since hello: count explicit + 2 + 3 (error requests render nothing)
        summary["ping_images"] = ping["images"]
        summary["ping_main"] = dict(ping.fields)
        log(f"ping (main socket): {_short(ping.fields)}")
        check(
            all(i.startswith(ping["instance"] + "-") for i in all_ids),
            f"item ids {all_ids[:2]} do not start with instance {ping['instance']!r}",
        )
        check(
            all(re.fullmatch(re.escape(ping["instance"]) + r"-\d+-\d+", i) for i in all_ids),
            "item ids are not <instance>-<generation>-<n>",
        )
        if "heartbeat" in hello:
            hb_ep = heartbeat_endpoint(hello["heartbeat"], endpoint)
            hb = Heartbeat(ctx, hb_ep)
            p2 = check_ping(hb.ping(), "ping on the heartbeat socket")
            check(p2["instance"] == ping["instance"], "heartbeat instance differs")
            log(f"ping (heartbeat socket {hb_ep}): {_short(p2.fields)}")
            id_ = hb.send("get_params")
            r = hb.recv(2000)
            expect_error(r, "bad_value", "get_params on the heartbeat socket", id_)
            summary["errors"]["get_params on heartbeat socket"] = (r["code"], r["message"])
            log(f"  get_params on the heartbeat socket -> {r['code']}: {r['message']}")
            # ping while a render is in progress: the heartbeat socket answers at once
            dealer = ctx.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            dealer.connect(endpoint)
            many = np.repeat(latents[:1], 16, axis=0)
            dealer.send_multipart(
                [b""]
                + encode(
                    "render",
                    "long-1",
                    {"latents": many, "width": size, "height": size, "return": ["mask"]},
                )
            )
            # pipelined behind it on the same DEALER: a ping, answered in order
            dealer.send_multipart([b""] + encode("ping", "after-1"))
            seen, lat, order = [], [], []
            t0 = time.monotonic()
            while len(order) < 2 and time.monotonic() - t0 < timeout_s:
                t1 = time.monotonic()
                p = hb.ping(2000)
                lat.append(time.monotonic() - t1)
                if p is not None:
                    seen.append((p["busy"], p["request"], p["progress"]))
                while dealer.poll(0):
                    parts = dealer.recv_multipart(copy=False)
                    check(parts[0].bytes == b"", "DEALER reply without delimiter")
                    order.append(decode(parts[1:]))
                time.sleep(0.05)
            check(
                [m.id for m in order] == ["long-1", "after-1"],
                f"pipelined replies out of order: {[m.id for m in order]}",
            )
            check(len(order[0]["items"]) == 16, "long render items")
            busy = [s for s in seen if s[0]]
            check(
                busy and all(s[1] == "long-1" for s in busy),
                f"heartbeat pings during the render never said busy: {seen}",
            )
            check(check_ping(order[1], "pipelined ping")["busy"] is False, "ping after render busy")
            dealer.close(linger=0)
            summary["busy_pings"] = len(busy)
            summary["max_ping_latency_s"] = max(lat)
            log(
                f"ping (heartbeat) during a 16-image render: {len(seen)} pings, {len(busy)} busy, "
                f"progress seen {sorted({s[2] for s in busy})}, "
                f"slowest answer {max(lat) * 1e3:.0f} ms;"
                " pipelined main-socket ping answered after the render"
            )
        else:
            summary["notes"].append("no heartbeat in hello: version-1 server")

        # ---- framing: a DEALER that omits the delimiter is answered without one
        raw = ctx.socket(zmq.DEALER)
        raw.setsockopt(zmq.LINGER, 0)
        raw.connect(endpoint)
        raw.send_multipart(encode("ping", "nodelim"))
        check(raw.poll(int(timeout_s * 1000)), "DEALER without delimiter: no reply")
        parts = raw.recv_multipart(copy=False)
        raw.close(linger=0)
        check(parts[0].bytes != b"", "DEALER without delimiter got a delimiter back")
        check(decode(parts).id == "nodelim", "DEALER without delimiter: id")
        log("DEALER without the empty delimiter: answered, reply has no delimiter")

        # ---- a second hello resets the image counter (not the generation)
        before = conn.ok("ping")["images"]
        h2 = conn.ok("hello", {"client": "thirdparty-client"})
        after = conn.ok("ping")["images"]
        check(after == 0, f"images after hello = {after}")
        summary["generation_after_second_hello"] = h2["generation"]
        log(
            f"second hello: ping images {before} -> {after}; generation stays "
            f"{h2['generation']} (was {gen})"
        )

        # ---- shutdown
        if shutdown:
            # on a DEALER, with a ping pipelined behind it: that ping must get no reply
            dealer = ctx.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            dealer.connect(endpoint)
            dealer.send_multipart([b""] + encode("shutdown", "bye"))
            dealer.send_multipart([b""] + encode("ping", "after-bye"))
            replies = []
            while dealer.poll(2000 if replies else int(timeout_s * 1000)):
                parts = dealer.recv_multipart(copy=False)
                check(parts[0].bytes == b"", "DEALER reply without delimiter")
                replies.append(decode(parts[1:]))
            dealer.close(linger=0)
            check(
                [m.id for m in replies] == ["bye"],
                f"replies after shutdown: {[(m.id, m.type) for m in replies]}",
            )
            sd = replies[0]
            check(sd.type == "shutdown" and sd.get("ok") is True, f"shutdown: {sd!r}")
            summary["reply_after_shutdown"] = False
            extra = set(sd.fields) - {"ok"}
            summary["shutdown_extra_fields"] = sorted(extra)
            check(not extra, f"shutdown reply has fields besides ok: {sorted(extra)}")
            log(f"shutdown: {_short(sd.fields)}; the ping pipelined behind it got no reply")
            if hb is not None:
                # the doc: "the server exits after sending it"; watch the heartbeat socket go quiet
                t0 = time.monotonic()
                while time.monotonic() - t0 < 30 and hb.ping(500) is not None:
                    time.sleep(0.2)
                quiet = time.monotonic() - t0
                summary["heartbeat_silent_after_s"] = quiet
                log(f"  heartbeat socket silent {quiet:.1f} s after the shutdown reply")
        return summary
    finally:
        if hb is not None:
            hb.close()
        conn.close()
        ctx.term()


def _slots(space):
    """The parameter each latent slot belongs to."""
    out = []
    for p in space["params"]:
        out += [p] * (param_dim(p) if p["kind"] == "normal" else 1)
    return out


def _first_slot(space, kind):
    return next(i for i, p in enumerate(_slots(space)) if p["kind"] == kind)


def _psi_slots(space):
    """The role ("mean", "log_std", "logits", "logit") of each psi entry."""
    out = []
    for p in space["params"]:
        d = param_dim(p)
        out += (
            (["mean"] * d + ["log_std"] * d)
            if p["kind"] == "normal"
            else (["logits"] * d if p["kind"] == "categorical" else ["logit"])
        )
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("endpoint", help="e.g. tcp://127.0.0.1:5555")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--count", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    ap.add_argument("--no-shutdown", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    return run(
        a.endpoint,
        size=a.size,
        count=a.count,
        shutdown=not a.no_shutdown,
        log=(lambda *_: None) if a.quiet else print,
        timeout_s=a.timeout,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
