"""The input checks shared by everything that reads a space or a scene spec: SpaceError, finite
numbers and vectors of them (bools and strings refused), strict JSON (no NaN/Infinity), and the
"known: ..." list an error message ends with. protocol.distributions re-exports all of them.

numpy + stdlib only: this module also runs inside Blender's bundled Python.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np


class SpaceError(ValueError):
    """An invalid space, psi or latent; the message names the offending field path."""


def _num(v: Any, path: str) -> float:
    """A finite float; bools and strings are rejected so typos cannot pass as numbers."""
    if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
        raise SpaceError(f"{path}: expected a number, got {type(v).__name__} {v!r}")
    if not math.isfinite(float(v)):
        raise SpaceError(f"{path}: must be finite, got {float(v)}")
    return float(v)


def _vec(v: Any, path: str, size: int | None = None, why: str = "") -> tuple[float, ...]:
    """A tuple of finite floats; a bare number counts as one value."""
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, list | tuple):
        vals = tuple(_num(x, f"{path}[{i}]") for i, x in enumerate(v))
    else:
        vals = (_num(v, path),)
    if size is None and not vals:
        raise SpaceError(f"{path}: needs at least one value (dimension must be >= 1)")
    if size is not None and len(vals) != size:
        raise SpaceError(f"{path}: expected {size} values{why}, got {len(vals)}")
    return vals


def strict_json_loads(text: str | bytes, error: type[ValueError]) -> Any:
    """json.loads that refuses NaN/Infinity literals; malformed JSON and those raise `error`."""
    def reject(const: str) -> None:
        raise error(f"json: {const} is not allowed (numbers must be finite)")

    try:
        return json.loads(text, parse_constant=reject)
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as e:
        raise error(f"json: invalid JSON: {e}") from None


def _known(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "none"
