"""Request fields of the autosim render protocol: which fields each request type carries and
which values are valid.

wire.decode accepts any well-formed message; with ``expect_request=True`` it hands the decoded
type and fields to ``validate_request``, which says whether they make sense as a request (see
docs/protocol.md section 4). REQUEST_FIELDS maps each request type to the checks of its known
fields (unknown fields are ignored, for forward compatibility); REQUIRED_FIELDS names the
fields that must be present. Integers must be JSON integers that fit in int64 (n, width and
height >= 1, seed >= 0); psi, metrics and latents hold finite numbers only (JSON numbers or a
float32/float64 array); ``return`` lists kinds from RETURN_KINDS; a render takes either n with
seed or latents. A wrong JSON type raises FieldTypeError, a value out of range or inconsistent
BadValueError, an absent field MissingFieldError, an unknown type UnknownTypeError. Limits that
depend on the server (psi length, latent width, caps on n and image size) are the server's.
numpy + stdlib only (this module also runs inside Blender's Python).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from protocol.errors import (
    _INT64_MAX,
    BadValueError,
    FieldTypeError,
    MissingFieldError,
    UnknownTypeError,
    _json_type,
    _short,
)

REQUEST_TYPES = ("hello", "get_params", "set_params", "render", "shutdown", "ping")
RETURN_KINDS = ("image", "mask", "instances", "boxes")


def _check_int(name: str, value: Any, minimum: int | None = None) -> None:
    if type(value) is not int:
        raise FieldTypeError(f"field {name!r} must be an integer, got {_json_type(value)}")
    if minimum is not None and value < minimum:
        raise BadValueError(f"field {name!r} must be >= {minimum}, got {_short(value)}")
    if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
        raise BadValueError(f"field {name!r} does not fit in a signed 64-bit integer")


def _check_number(name: str, value: Any) -> None:
    if type(value) not in (int, float):
        raise FieldTypeError(f"{name} must be a number, got {_json_type(value)}")
    try:
        finite = math.isfinite(value)
    except OverflowError:
        finite = False
    if not finite:
        raise BadValueError(f"{name} is not a finite 64-bit float")


def _check_float_array(name: str, value: np.ndarray, ndim: int) -> None:
    if value.dtype.kind != "f" or value.ndim != ndim:
        raise FieldTypeError(f"field {name!r} must be a {ndim}-D float32/float64 array, "
                             f"got {_json_type(value)}")
    if not np.isfinite(value).all():
        raise BadValueError(f"field {name!r} holds NaN or infinite values")


def _check_str(name: str, value: Any) -> None:
    if type(value) is not str:
        raise FieldTypeError(f"field {name!r} must be a string, got {_json_type(value)}")


def _check_psi(name: str, value: Any) -> None:
    if isinstance(value, np.ndarray):
        return _check_float_array(name, value, 1)
    if type(value) is not list:
        raise FieldTypeError(f"field {name!r} must be an array of numbers, "
                             f"got {_json_type(value)}")
    for i, item in enumerate(value):
        _check_number(f"{name}[{i}]", item)


def _check_metrics(name: str, value: Any) -> None:
    if type(value) is not dict:
        raise FieldTypeError(f"field {name!r} must be an object of numbers, "
                             f"got {_json_type(value)}")
    for key, item in value.items():
        _check_number(f"{name}[{key!r}]", item)


def _check_latents(name: str, value: Any) -> None:
    if isinstance(value, np.ndarray):
        _check_float_array(name, value, 2)
        rows = value.shape[0]
    elif type(value) is list:
        rows, width = len(value), None
        for i, row in enumerate(value):
            if type(row) is not list:
                raise FieldTypeError(f"{name}[{i}] must be an array of numbers, "
                                     f"got {_json_type(row)}")
            if width is not None and len(row) != width:
                raise BadValueError(f"{name}[{i}] has {len(row)} numbers, {name}[0] has {width}")
            width = len(row)
            for j, item in enumerate(row):
                _check_number(f"{name}[{i}][{j}]", item)
    else:
        raise FieldTypeError(f"field {name!r} must be a 2-D float array or an array of arrays "
                             f"of numbers, got {_json_type(value)}")
    if rows < 1:
        raise BadValueError(f"field {name!r} has no rows")


def _check_return(name: str, value: Any) -> None:
    if type(value) is not list:
        raise FieldTypeError(f"field {name!r} must be an array of strings, "
                             f"got {_json_type(value)}")
    for i, item in enumerate(value):
        _check_str(f"{name}[{i}]", item)
        if item not in RETURN_KINDS:
            raise BadValueError(f"{name}[{i}] is {_short(item)}; allowed: "
                                f"{', '.join(RETURN_KINDS)}")


def _nonneg(name: str, value: Any) -> None:
    _check_int(name, value, 0)


def _positive(name: str, value: Any) -> None:
    _check_int(name, value, 1)


# type -> {field: check}; unknown fields are ignored (forward compatibility)
REQUEST_FIELDS: dict[str, dict[str, Any]] = {
    "hello": {"client": _check_str},
    "get_params": {},
    "set_params": {"psi": _check_psi, "metrics": _check_metrics, "client": _check_str,
                   "metric_name": _check_str, "expected_generation": _check_int},
    "render": {"n": _positive, "seed": _nonneg, "latents": _check_latents,
               "width": _positive, "height": _positive, "return": _check_return,
               "generation": _check_int},
    "shutdown": {},
    "ping": {},  # protocol v2 (heartbeat); docs/protocol.md
}
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {"set_params": ("psi",)}


def validate_request(mtype: str, fields: dict) -> None:
    if mtype not in REQUEST_FIELDS:
        raise UnknownTypeError(f"unknown request type {_short(mtype)}; "
                               f"known: {', '.join(REQUEST_TYPES)}")
    for name in REQUIRED_FIELDS.get(mtype, ()):
        if name not in fields:
            raise MissingFieldError(f"{mtype} request is missing field {name!r}")
    for name, check in REQUEST_FIELDS[mtype].items():
        if name in fields:
            check(name, fields[name])
    if mtype == "render":
        has_n, has_latents = "n" in fields, "latents" in fields
        if has_n and has_latents:
            raise BadValueError("render takes either 'n' (with 'seed') or 'latents', not both")
        if not has_n and not has_latents:
            raise MissingFieldError("render request needs 'n' and 'seed', or 'latents'")
        if has_n and "seed" not in fields:
            raise MissingFieldError("render request with 'n' is missing field 'seed'")
        if has_latents and "seed" in fields:
            raise BadValueError("render: 'seed' goes only with 'n'; latents are rendered as given")
