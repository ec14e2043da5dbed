"""Tests for protocol/wire.py: request validation (decode with expect_request=True)."""

from __future__ import annotations

import numpy as np
import pytest

from protocol import wire
from protocol.wire import (
    BadValueError,
    FieldTypeError,
    MissingFieldError,
    UnknownTypeError,
    decode,
    encode,
)


def req(type_: str, **fields) -> list[bytes]:
    return encode(type_, "r-1", fields)


VALID_REQUESTS = [
    req("hello"), req("hello", client="optimizer 0.1"), req("get_params"), req("shutdown"),
    req("set_params", psi=[0.1, -2, 3e5]), req("set_params", psi=np.zeros(4, np.float32)),
    req("set_params", psi=[], metrics={"val_metric": 0.61, "n": 3}, client="c",
        expected_generation=4, fixed=["a"]),
    req("render", n=1, seed=0), req("render", n=4, seed=2**63 - 1, width=64, height=48,
                                    generation=0, **{"return": ["image", "boxes"]}),
    req("render", latents=[[0.5, 1], [2, 3.5]]), req("render", latents=np.ones((3, 2))),
    req("render", latents=np.ones((1, 0), np.float32), **{"return": []}),
    req("hello", future_field={"anything": [1, 2]}),  # unknown fields are ignored
]


@pytest.mark.parametrize("frames", VALID_REQUESTS)
def test_valid_requests(frames):
    msg = decode(frames, expect_request=True)
    assert msg.type in wire.REQUEST_TYPES and msg.id == "r-1"


REQUEST_ERRORS = [
    (req("explode"), UnknownTypeError, ["'explode'", "hello"]),
    (req("error", code="x"), UnknownTypeError, ["'error'"]),
    (req("hello", client=5), FieldTypeError, ["'client'", "string", "integer"]),
    (req("set_params"), MissingFieldError, ["'psi'"]),
    (req("set_params", psi="0.5"), FieldTypeError, ["'psi'"]),
    (req("set_params", psi=[0.5, True]), FieldTypeError, ["psi[1]", "boolean"]),
    (req("set_params", psi=[10**400]), BadValueError, ["psi[0]", "finite"]),
    (req("set_params", psi=np.array([0.5, np.nan])), BadValueError, ["'psi'", "NaN"]),
    (req("set_params", psi=np.zeros(2, np.int32)), FieldTypeError, ["'psi'", "float"]),
    (req("set_params", psi=np.zeros((2, 2))), FieldTypeError, ["'psi'", "1-D"]),
    (req("set_params", psi=[1.0], metrics={"val": "high"}), FieldTypeError, ["metrics['val']"]),
    (req("set_params", psi=[1.0], metrics=[1.0]), FieldTypeError, ["'metrics'"]),
    (req("set_params", psi=[1.0], expected_generation=1.0), FieldTypeError,
     ["'expected_generation'"]),
    (req("render"), MissingFieldError, ["'n'", "'latents'"]),
    (req("render", n=2), MissingFieldError, ["'seed'"]),
    (req("render", n="2", seed=1), FieldTypeError, ["'n'", "integer", "string"]),
    (req("render", n=True, seed=1), FieldTypeError, ["'n'", "boolean"]),
    (req("render", n=0, seed=1), BadValueError, ["'n'", ">= 1", "got 0"]),
    (req("render", n=1, seed=-1), BadValueError, ["'seed'", ">= 0"]),
    (req("render", n=1, seed=2**64), BadValueError, ["'seed'", "64-bit"]),
    (req("render", n=1, seed=1, width=0), BadValueError, ["'width'"]),
    (req("render", n=1, seed=1, height=2.5), FieldTypeError, ["'height'"]),
    (req("render", n=1, seed=1, latents=[[1.0]]), BadValueError, ["not both"]),
    (req("render", latents=[[1.0]], seed=3), BadValueError, ["'seed'"]),
    (req("render", latents=[]), BadValueError, ["no rows"]),
    (req("render", latents=[1.0, 2.0]), FieldTypeError, ["latents[0]"]),
    (req("render", latents=[[1.0, 2.0], [3.0]]), BadValueError, ["latents[1]", "1 numbers"]),
    (req("render", latents=[[1.0, "a"]]), FieldTypeError, ["latents[0][1]"]),
    (req("render", latents=np.zeros(3)), FieldTypeError, ["'latents'", "2-D"]),
    (req("render", latents=np.full((1, 2), np.inf)), BadValueError, ["'latents'"]),
    (req("render", n=1, seed=1, **{"return": ["image", "depth"]}), BadValueError,
     ["return[1]", "'depth'"]),
    (req("render", n=1, seed=1, **{"return": "image"}), FieldTypeError, ["'return'"]),
    (req("render", n=1, seed=1, generation="3"), FieldTypeError, ["'generation'"]),
]


@pytest.mark.parametrize("frames, cls, texts", REQUEST_ERRORS)
def test_request_validation_errors(frames, cls, texts):
    decode(frames)  # structurally fine without expect_request
    with pytest.raises(cls) as info:
        decode(frames, expect_request=True)
    assert type(info.value) is cls and info.value.request_id == "r-1"
    for text in texts:
        assert text in info.value.message, (text, info.value.message)
