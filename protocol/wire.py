"""Message envelope of the autosim render protocol: ZeroMQ frames <-> messages.

numpy + stdlib only (this module also runs inside Blender's Python); no socket code here.
A message is a list of frames. Frame 0 is a UTF-8 JSON object
``{"v": 1, "type": ..., "id": ..., **fields}``; frames 1..N are raw little-endian C-order array
bytes, each referenced exactly once from the JSON tree by ``{"$nd": i, "dtype": d, "shape": s}``.
No pickle, no eval: nothing received is ever executed. See docs/protocol.md.

``decode`` is total: for any input it returns a ``Message`` or raises a ``ProtocolError``
subclass whose ``code`` goes straight into an error reply. The error classes live in errors.py
and the per-request-type field checks in schema.py; both are re-exported here.
"""

from __future__ import annotations

import builtins
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from protocol.errors import (  # noqa: F401  (re-exported: the public API lives here)
    _DTYPE_NAMES,
    _INT64_MAX,
    DTYPES,
    ERROR_CODES,
    BadValueError,
    FieldTypeError,
    FrameError,
    MissingFieldError,
    NotJSONError,
    ProtocolError,
    TooLargeError,
    UnknownTypeError,
    VersionError,
    _clip,
    _json_type,
    _short,
)
from protocol.schema import (  # noqa: F401  (re-exported: the public API lives here)
    REQUEST_FIELDS,
    REQUEST_TYPES,
    REQUIRED_FIELDS,
    RETURN_KINDS,
    validate_request,
)

PROTOCOL_VERSION = 1
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
MAX_DEPTH = 64  # JSON nesting limit below the envelope object
MAX_NDIM = 32
ENVELOPE_KEYS = ("v", "type", "id")
_PEEK_LIMIT = 64 * 1024  # frame 0 size up to which a too-large message still yields its id


@dataclass
class Message:
    """A decoded message; ``fields`` holds every JSON key but v/type/id, arrays substituted."""

    type: str
    id: str
    fields: dict[str, Any] = field(default_factory=dict)
    v: int = PROTOCOL_VERSION


# ----------------------------------------------------------------------------- helpers


def _fmt_path(path: tuple) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = part if len(part) <= 40 else part[:37] + "..."
            out += ("." if out else "") + key
    return repr(out) if out else "the top level"


# ----------------------------------------------------------------------------- encode


def _array_ref(value: np.ndarray, frames: list[bytes], where: str) -> dict:
    value = np.asarray(value)
    dt = value.dtype
    name = _DTYPE_NAMES.get((dt.kind, dt.itemsize)) if dt.fields is None else None
    if name is None:
        raise TypeError(f"array at {where} has dtype {dt}; allowed: {', '.join(DTYPES)}")
    data = value.astype(DTYPES[name], copy=False).tobytes(order="C")
    frames.append(data)
    return {"$nd": len(frames) - 1, "dtype": name, "shape": [int(d) for d in value.shape]}


def _to_json(value: Any, frames: list[bytes], path: tuple, depth: int) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"non-finite number {number} at {_fmt_path(path)}: JSON has no "
                             "NaN/Infinity (send it inside an array)")
        return number
    if isinstance(value, np.ndarray):
        return _array_ref(value, frames, _fmt_path(path))
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (Mapping, list, tuple)) and depth > MAX_DEPTH:
        raise ValueError(f"fields nested deeper than {MAX_DEPTH} levels at {_fmt_path(path)} "
                         "(a reference cycle?)")
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"object key {_short(key)} at {_fmt_path(path)} is not a str")
            out[str(key)] = _to_json(item, frames, path + (key,), depth + 1)
        if "$nd" in out:
            raise ValueError(f"key '$nd' at {_fmt_path(path)} is reserved for array references")
        return out
    if isinstance(value, (list, tuple)):
        return [_to_json(item, frames, path + (i,), depth + 1) for i, item in enumerate(value)]
    raise TypeError(f"cannot encode {type(value).__name__} at {_fmt_path(path)}")


def _dumps(header: dict) -> bytes:
    try:
        text = json.dumps(header, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: \u-escape them, still valid UTF-8 JSON
        return json.dumps(header, allow_nan=False, separators=(",", ":")).encode("ascii")


def encode(type: str, id: str, fields: Mapping[str, Any] | None = None) -> list[bytes]:
    """Build the frames of one message. ndarrays (anywhere in ``fields``) become array frames,
    numpy scalars Python numbers. Raises TypeError for unsupported objects or dtypes and
    ValueError for NaN/inf floats outside arrays, reserved keys and over-deep nesting."""
    if not isinstance(type, str) or not isinstance(id, str):
        raise TypeError("message type and id must be str")
    header: dict[str, Any] = {"v": PROTOCOL_VERSION, "type": type, "id": id}
    frames: list[bytes] = [b""]
    if fields is not None:
        if not isinstance(fields, Mapping):
            raise TypeError(f"fields must be a mapping, not {builtins.type(fields).__name__}")
        for key, value in fields.items():
            if not isinstance(key, str):
                raise TypeError(f"field name {_short(key)} is not a str")
            if key in ENVELOPE_KEYS:
                raise ValueError(f"field name {key!r} is reserved for the envelope")
            header[key] = _to_json(value, frames, (key,), 1)
        if "$nd" in header:
            raise ValueError("field name '$nd' is reserved for array references")
    frames[0] = _dumps(header)
    return frames


def error_reply(request_id: str | None, code: str, message: str) -> list[bytes]:
    """Frames of an error reply: type "error", ``ok`` false, ``code`` and ``message``."""
    return encode("error", request_id or "", {"ok": False, "code": str(code),
                                              "message": str(message)})


def reply(request: Message, fields: Mapping[str, Any] | None = None) -> list[bytes]:
    """Frames of a successful reply: the request's type and id, ``ok`` true, plus ``fields``."""
    fields = dict(fields or {})
    if "ok" in fields:
        raise ValueError("field 'ok' is set by reply() itself")
    return encode(request.type, request.id, {"ok": True, **fields})


# ----------------------------------------------------------------------------- decode


def _frame_views(frames: Any) -> list[memoryview]:
    if not isinstance(frames, (str, bytes, bytearray, memoryview)):
        try:
            return [_frame_view(i, frame) for i, frame in enumerate(frames)]
        except ProtocolError:
            raise
        except Exception:  # not iterable, or an iterable that raises anything at all
            pass
    raise FrameError(f"a message is a sequence of frames, not {type(frames).__name__}")


def _frame_view(i: int, frame: Any) -> memoryview:
    try:
        view = memoryview(frame)
    except (TypeError, ValueError, BufferError):
        try:
            data = getattr(frame, "bytes", None)  # a zmq.Frame-like object
        except Exception:
            data = None
        if not isinstance(data, (bytes, bytearray)):
            raise FrameError(f"frame {i} is a {type(frame).__name__}, not bytes") from None
        view = memoryview(data)
    try:
        if not view.c_contiguous:
            raise FrameError(f"frame {i} is not a contiguous buffer")
        return view if view.ndim == 1 and view.format == "B" else view.cast("B")
    except (TypeError, ValueError) as exc:
        raise FrameError(f"frame {i} is not a plain byte buffer ({exc})") from None


def _parse_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise NotJSONError(f"frame 0: number {text[:40]} overflows a 64-bit float")
    return number


def _reject_constant(name: str) -> Any:
    raise NotJSONError(f"frame 0: {name} is not valid JSON (send non-finite values in arrays)")


def _parse_header(view: memoryview) -> dict:
    try:
        text = str(view, "utf-8")
    except UnicodeDecodeError as exc:
        raise NotJSONError(f"frame 0 is not valid UTF-8 ({exc.reason} at byte {exc.start})"
                           ) from None
    try:
        obj = json.loads(text, parse_float=_parse_float, parse_constant=_reject_constant)
    except RecursionError:
        raise NotJSONError("frame 0: JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, or an integer with too many digits
        raise NotJSONError(f"frame 0 is not valid JSON: {_clip(str(exc))}") from None
    if not isinstance(obj, dict):
        raise NotJSONError(f"frame 0 must be a JSON object, got {_json_type(obj)}")
    return obj


def _peek_id(view: memoryview) -> str | None:
    if view.nbytes > _PEEK_LIMIT:
        return None
    try:
        rid = _parse_header(view).get("id")
    except (ProtocolError, RecursionError):
        return None
    return rid if isinstance(rid, str) else None


def _envelope(header: dict) -> tuple[int, str, str]:
    for key, kind in (("v", int), ("type", str), ("id", str)):
        if key not in header:
            raise MissingFieldError(f"missing envelope field {key!r}")
        if type(header[key]) is not kind:
            want = "an integer" if kind is int else "a string"
            raise FieldTypeError(f"envelope field {key!r} must be {want}, "
                                 f"got {_json_type(header[key])}")
        if key == "v" and header["v"] != PROTOCOL_VERSION:
            raise VersionError(f"protocol version {_short(header['v'])} is not supported "
                               f"(this side speaks version {PROTOCOL_VERSION})")
    return header["v"], header["type"], header["id"]


def _array_from_ref(ref: dict, where: str, views: list[memoryview], used: dict) -> np.ndarray:
    if set(ref) != {"$nd", "dtype", "shape"}:
        raise FrameError(f"array reference at {where} must have exactly the keys $nd, dtype, "
                         f"shape; got {_short(sorted(ref))}")
    idx, name, shape = ref["$nd"], ref["dtype"], ref["shape"]
    if type(idx) is not int:
        raise FrameError(f"array reference at {where}: $nd must be an integer frame index, "
                         f"got {_json_type(idx)}")
    if not 1 <= idx < len(views):
        have = f"frames 1..{len(views) - 1}" if len(views) > 1 else "no array frames"
        raise FrameError(f"array reference at {where} points to frame {_short(idx)}, "
                         f"but the message has {have}")
    if idx in used:
        raise FrameError(f"frame {idx} is referenced twice (at {used[idx]} and {where})")
    if type(name) is not str or name not in DTYPES:
        raise FrameError(f"array reference at {where} (frame {idx}): unsupported dtype "
                         f"{_short(name)}; allowed: {', '.join(DTYPES)}")
    if type(shape) is not list or len(shape) > MAX_NDIM or any(
            type(d) is not int or d < 0 for d in shape):
        raise FrameError(f"array reference at {where} (frame {idx}): shape must be a list of at "
                         f"most {MAX_NDIM} non-negative integers, got {_short(shape)}")
    dtype = DTYPES[name]
    count = nonzero = 1
    for d in shape:
        count *= d
        nonzero *= d or 1
    if nonzero * dtype.itemsize > _INT64_MAX:
        raise FrameError(f"array reference at {where} (frame {idx}): shape {_short(shape)} "
                         "is too large")
    need, view = count * dtype.itemsize, views[idx]
    if need != view.nbytes:
        raise FrameError(f"frame {idx} (array at {where}) holds {view.nbytes} bytes, but dtype "
                         f"{name} with shape {shape} needs {need} bytes")
    try:
        if need and name == "bool" and np.frombuffer(view, np.uint8).max() > 1:
            raise FrameError(f"frame {idx} (bool array at {where}) holds bytes other than 0 and 1")
        array = np.frombuffer(view, dtype) if need else np.empty(0, dtype)
        array = array.reshape(shape)
    except (ValueError, TypeError, OverflowError) as exc:
        raise FrameError(f"frame {idx} (array at {where}): {exc}") from None
    used[idx] = where
    return array


def _substitute(node: Any, path: tuple, depth: int, views: list[memoryview], used: dict) -> Any:
    if depth > MAX_DEPTH:
        raise NotJSONError(f"frame 0: JSON nested deeper than {MAX_DEPTH} levels at "
                           f"{_fmt_path(path)}")
    if isinstance(node, dict):
        if "$nd" in node:
            return _array_from_ref(node, _fmt_path(path), views, used)
        items = node.items()
    else:
        items = enumerate(node)
    for key, value in items:
        if isinstance(value, (dict, list)):
            node[key] = _substitute(value, path + (key,), depth + 1, views, used)
    return node


def decode(frames: Sequence[Any], *, max_bytes: int = DEFAULT_MAX_BYTES,
           expect_request: bool = False) -> Message:
    """Parse the frames of one message (bytes, bytearray, memoryview or zmq.Frame).

    Total: returns a Message or raises a ProtocolError subclass, nothing else. Arrays are
    read-only views on the frame buffers (copy them to write). With ``expect_request`` the type
    must be a request type and its fields are checked against the request table."""
    try:
        return _decode(frames, max_bytes, expect_request)
    except RecursionError:
        raise NotJSONError("message nested too deeply") from None
    except MemoryError:
        raise TooLargeError("message too large to decode (out of memory)") from None


def _decode(frames: Any, max_bytes: int, expect_request: bool) -> Message:
    views = _frame_views(frames)
    if not views:
        raise FrameError("message has no frames (frame 0 must be the JSON header)")
    total = sum(view.nbytes for view in views)
    if total > max_bytes:
        raise TooLargeError(f"message is {total} bytes, over the limit of {max_bytes} bytes",
                            _peek_id(views[0]))
    header = _parse_header(views[0])
    rid = header.get("id")
    try:
        version, mtype, mid = _envelope(header)
        fields = {k: val for k, val in header.items() if k not in ENVELOPE_KEYS}
        if "$nd" in header:
            raise FrameError("frame 0 itself cannot be an array reference ('$nd' at top level)")
        used: dict[int, str] = {}
        _substitute(fields, (), 0, views, used)
        unused = [i for i in range(1, len(views)) if i not in used]
        if unused:
            listed = ", ".join(map(str, unused[:10])) + (", ..." if len(unused) > 10 else "")
            raise FrameError(f"frame(s) {listed} not referenced by any $nd in frame 0")
        if expect_request:
            validate_request(mtype, fields)
    except ProtocolError as exc:
        if exc.request_id is None and isinstance(rid, str):
            exc.request_id = rid
        raise
    return Message(type=mtype, id=mid, fields=fields, v=version)
