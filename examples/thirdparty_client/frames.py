"""Frames (docs/protocol.md section 2): the envelope in frame 0, arrays as $nd references.

Also the one way a check fails here: ``check`` raises ``ClientError``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import zmq

PROTOCOL_V = 1
DTYPES = ("uint8", "int8", "uint16", "int16", "int32", "int64", "float32", "float64", "bool")


class ClientError(AssertionError):
    """A reply that does not match what docs/protocol.md promises."""


def check(cond, what):
    if not cond:
        raise ClientError(what)


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
        return f"Message(type={self.type!r}, id={self.id!r}, fields={short(self.fields)})"


def _array(ref, raw, used):
    """The numpy view a {"$nd", "dtype", "shape"} reference stands for."""
    check(set(ref) == {"$nd", "dtype", "shape"}, f"bad array reference {ref}")
    k, dt, shape = ref["$nd"], ref["dtype"], ref["shape"]
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
                return _array(x, raw, used)
            return {k: walk(val) for k, val in x.items()}
        if isinstance(x, list):
            return [walk(val) for val in x]
        return x

    obj = walk(obj)
    check(used == set(range(1, len(raw))), f"unreferenced frames {set(range(1, len(raw))) - used}")
    return Message(obj)


def short(x, n=300):
    """x as JSON for a log line, arrays as <dtype[shape]>, cut to n characters."""

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
