"""Error vocabulary of the autosim render protocol, shared by wire.py and schema.py.

wire.py (the message format) and schema.py (the request fields) both raise these errors and
describe the offending value the same way, so this module holds what both need: the error
codes with one ProtocolError subclass per code, the helpers that name a received value in an
error message, and DTYPES (an array is named by its wire dtype). It imports neither of them,
which keeps wire.py -> schema.py free of an import cycle. wire.py re-exports every public name.
numpy + stdlib only (this module also runs inside Blender's Python).
"""

from __future__ import annotations

from typing import Any

import numpy as np

_INT64_MAX = 2**63 - 1

DTYPES: dict[str, np.dtype] = {
    name: np.dtype(spec)
    for name, spec in (
        ("uint8", "<u1"), ("int8", "<i1"), ("uint16", "<u2"), ("int16", "<i2"),
        ("int32", "<i4"), ("int64", "<i8"), ("float32", "<f4"), ("float64", "<f8"),
        ("bool", "|b1"),
    )
}
_DTYPE_NAMES = {(dt.kind, dt.itemsize): name for name, dt in DTYPES.items()}

ERROR_CODES: dict[str, str] = {
    "bad_json": "frame 0 is not UTF-8, not JSON, not an object, or holds NaN/Infinity",
    "bad_version": "the envelope's 'v' is not a protocol version the receiver speaks",
    "missing_field": "a required field is absent",
    "bad_type": "a field has the wrong JSON type",
    "bad_frame": "array frames and $nd references do not match (index, dtype, shape, size)",
    "too_large": "the message is larger than the receiver's byte limit",
    "unknown_type": "the request type is not one of the request types",
    "bad_value": "a field has the right type but a value out of range or inconsistent",
    "stale_generation": "the request names a psi generation the server is no longer at",
    "render_failed": "the renderer raised while rendering; the server keeps serving",
    "busy": "the server cannot take the request now; retry later or elsewhere",
    "internal": "an unexpected server error; the server keeps serving",
}


class ProtocolError(Exception):
    """A message that cannot be accepted. ``code`` is machine readable (see ERROR_CODES)."""

    code = "internal"

    def __init__(self, message: str, request_id: str | None = None):
        super().__init__(message)
        self.message = message
        self.request_id = request_id


class NotJSONError(ProtocolError):
    code = "bad_json"


class VersionError(ProtocolError):
    code = "bad_version"


class MissingFieldError(ProtocolError):
    code = "missing_field"


class FieldTypeError(ProtocolError):
    code = "bad_type"


class FrameError(ProtocolError):
    code = "bad_frame"


class TooLargeError(ProtocolError):
    code = "too_large"


class UnknownTypeError(ProtocolError):
    code = "unknown_type"


class BadValueError(ProtocolError):
    code = "bad_value"


# ----------------------------------------------------------------------------- helpers


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short(value: Any, limit: int = 60) -> str:
    return _clip(repr(value), limit)


def _json_type(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"binary array ({_DTYPE_NAMES.get((value.dtype.kind, value.dtype.itemsize))}" \
               f" {list(value.shape)})"
    names = {type(None): "null", bool: "boolean", int: "integer", float: "number",
             str: "string", list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)
