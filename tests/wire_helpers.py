"""Helpers shared by the tests of protocol/wire.py (test_wire*.py)."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import HealthCheck, settings


def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def header(fields: dict | None = None, **envelope) -> bytes:
    obj = {"v": 1, "type": "hello", "id": "req-7"}
    obj.update(envelope)
    obj.update(fields or {})
    return json.dumps(obj).encode()


def ref(index: int, dtype: str, shape: list) -> dict:
    return {"$nd": index, "dtype": dtype, "shape": shape}


def assert_same(a, b) -> None:
    """Deep equality; arrays bitwise (NaN-safe) with the canonical dtype and the same shape."""
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), b
        assert b.dtype == a.dtype.newbyteorder("<") or (a.dtype.kind == "b" and b.dtype == bool)
        assert b.shape == a.shape
        assert np.ascontiguousarray(a.astype(b.dtype)).tobytes() == b.tobytes()
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, list) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert type(a) is type(b) and a == b, (a, b)
