"""Tests for protocol/wire.py: round trips, the byte layout, replies and what encode refuses.

The other wire tests: test_wire_errors.py (decode errors), test_wire_requests.py (request
validation), test_wire_fuzz.py (fuzzing), test_wire_zmq.py (a real ZeroMQ exchange)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from protocol.wire import DTYPES, decode, encode, error_reply, reply
from tests.wire_helpers import assert_same

# ----------------------------------------------------------------------------- round trips

SHAPES = [(), (0,), (3,), (2, 3), (0, 5), (2, 0, 3), (1, 1, 1, 1), (4, 3, 2)]


def sample_array(name: str, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    dtype = DTYPES[name]
    if dtype.kind == "b":
        values = rng.random(shape) < 0.5
    elif dtype.kind == "f":
        values = rng.normal(size=shape)
    else:
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    return np.asarray(values, dtype=dtype)  # 0-d draws come back as numpy scalars


def test_round_trip_every_dtype_and_shape():
    rng = np.random.default_rng(0)
    arrays = {f"{name}_{i}": sample_array(name, shape, rng)
              for name in DTYPES for i, shape in enumerate(SHAPES)}
    fields = {
        "arrays": arrays,
        "nested": [{"a": [arrays["uint8_3"], 1, 2.5, None, True]}, "ünïcødé ✓ 猫 🐈"],
        "psi": [0.5, -1.25, 3],
        "empty": {}, "none": None, "big": 2**70, "neg": -3,
    }
    frames = encode("render", "id-ü", fields)
    assert len(frames) == 1 + len(arrays) + 1
    assert all(isinstance(f, bytes) for f in frames)
    msg = decode(frames)
    assert (msg.type, msg.id, msg.v) == ("render", "id-ü", 1)
    assert_same(fields, msg.fields)
    for key in arrays:
        assert msg.fields["arrays"][key].dtype == DTYPES[key.rsplit("_", 1)[0]]


def test_round_trip_layouts_byte_order_and_numpy_scalars():
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    fields = {"t": base.T, "s": base[::2, ::3], "be": base.astype(">f4"), "bei": np.arange(5,
              dtype=">i8"), "scalars": [np.float32(0.5), np.int16(-4), np.bool_(True),
                                        np.uint8(200), np.float64(2.0)]}
    msg = decode(encode("x", "1", fields))
    np.testing.assert_array_equal(msg.fields["t"], base.T)
    np.testing.assert_array_equal(msg.fields["s"], base[::2, ::3])
    assert msg.fields["be"].dtype == np.dtype("<f4")
    np.testing.assert_array_equal(msg.fields["be"], base.astype(np.float32))
    np.testing.assert_array_equal(msg.fields["bei"], np.arange(5))
    assert msg.fields["scalars"] == [0.5, -4, True, 200, 2.0]
    assert [type(x) for x in msg.fields["scalars"]] == [float, int, bool, int, float]


def test_byte_layout_is_documented_one():
    frames = encode("render", "a", {"img": np.array([[1, 2], [3, 4]], dtype=np.uint16)})
    assert json.loads(frames[0]) == {"v": 1, "type": "render", "id": "a",
                                     "img": {"$nd": 1, "dtype": "uint16", "shape": [2, 2]}}
    assert frames[1] == bytes([1, 0, 2, 0, 3, 0, 4, 0])  # little-endian, C order


def test_decode_accepts_buffers_and_frame_likes():
    frames = encode("x", "1", {"a": np.arange(6, dtype=np.int32).reshape(2, 3)})

    class FrameLike:  # like zmq.Frame without the buffer protocol
        def __init__(self, data):
            self.bytes = data

    for variant in ([memoryview(f) for f in frames], [bytearray(f) for f in frames],
                    [FrameLike(f) for f in frames], tuple(frames)):
        msg = decode(variant)
        np.testing.assert_array_equal(msg.fields["a"], np.arange(6).reshape(2, 3))
    assert not decode(frames).fields["a"].flags.writeable  # a view on the bytes frame


def test_reply_and_error_reply():
    request = decode(encode("get_params", "q1"), expect_request=True)
    msg = decode(reply(request, {"psi": [1.0], "generation": 3}))
    assert (msg.type, msg.id, msg.fields) == ("get_params", "q1",
                                              {"ok": True, "psi": [1.0], "generation": 3})
    msg = decode(error_reply("q1", "busy", "try again later"))
    assert (msg.type, msg.id) == ("error", "q1")
    assert msg.fields == {"ok": False, "code": "busy", "message": "try again later"}
    assert decode(error_reply(None, "bad_json", "x")).id == ""
    with pytest.raises(ValueError):
        reply(request, {"ok": False})


@pytest.mark.parametrize("fields, exc, text", [
    ({"x": float("nan")}, ValueError, "'x'"),
    ({"x": [1.0, float("inf")]}, ValueError, "x[1]"),
    ({"x": np.float32("nan")}, ValueError, "non-finite"),
    ({"x": object()}, TypeError, "object"),
    ({"x": {1, 2}}, TypeError, "set"),
    ({"x": 1j}, TypeError, "complex"),
    ({"x": np.zeros(2, dtype=object)}, TypeError, "dtype object"),
    ({"x": np.zeros(2, dtype=np.float16)}, TypeError, "float16"),
    ({"x": np.zeros(2, dtype=np.uint32)}, TypeError, "uint32"),
    ({"x": {3: 1}}, TypeError, "not a str"),
    ({"v": 2}, ValueError, "reserved"),
    ({"id": "x"}, ValueError, "reserved"),
    ({"x": {"$nd": 1}}, ValueError, "$nd"),
])
def test_encode_rejects(fields, exc, text):
    with pytest.raises(exc, match=None) as info:
        encode("x", "1", fields)
    assert text in str(info.value)


def test_encode_rejects_cycles_and_bad_envelope():
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError, match="nested deeper"):
        encode("x", "1", {"c": cyclic})
    with pytest.raises(TypeError):
        encode("x", 5, {})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode("x", "1", [("a", 1)])  # type: ignore[arg-type]


def test_lone_surrogate_strings_still_encode():
    msg = decode([b'{"v":1,"type":"hello","id":"\\ud800","client":"\\udfff"}'])
    again = decode(encode(msg.type, msg.id, msg.fields))
    assert (again.id, again.fields) == ("\ud800", {"client": "\udfff"})
