"""Tests for protocol/wire.py: every decode error code, frame sizes, the size limit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from protocol.wire import (
    DTYPES,
    ERROR_CODES,
    FieldTypeError,
    FrameError,
    MissingFieldError,
    NotJSONError,
    TooLargeError,
    VersionError,
    decode,
    encode,
)
from tests.wire_helpers import header, ref

# ----------------------------------------------------------------------------- errors

F4 = np.float32(1.5).tobytes()

ERROR_CASES = [
    # (frames, error class, substrings of the message, request id)
    ([], FrameError, ["no frames"], None),
    ("abc", FrameError, ["sequence of frames"], None),
    ([b"{}", 17], FrameError, ["frame 1", "int"], None),
    ([b"\xff\xfe{}"], NotJSONError, ["UTF-8", "byte 0"], None),
    ([b'{"v": 1,'], NotJSONError, ["not valid JSON"], None),
    ([b"[1, 2]"], NotJSONError, ["JSON object", "array"], None),
    ([b'{"v":1,"type":"hello","id":"a","x":NaN}'], NotJSONError, ["NaN"], None),
    ([b'{"v":1,"type":"hello","id":"a","x":-Infinity}'], NotJSONError, ["-Infinity"], None),
    ([b'{"v":1,"type":"hello","id":"a","x":1e400}'], NotJSONError, ["1e400", "overflows"], None),
    ([b'{"x":' + b"[" * 10000 + b"]" * 10000 + b"}"], NotJSONError, ["nested"], None),
    ([header({"x": json.loads("[" * 70 + "]" * 70)})], NotJSONError, ["deeper than 64"],
     "req-7"),
    ([header(v=2)], VersionError, ["version 2", "speaks version 1"], "req-7"),
    ([b'{"type":"hello","id":"q"}'], MissingFieldError, ["'v'"], "q"),
    ([b'{"v":1,"id":"q"}'], MissingFieldError, ["'type'"], "q"),
    ([b'{"v":1,"type":"hello"}'], MissingFieldError, ["'id'"], None),
    ([header(v="1")], FieldTypeError, ["'v'", "integer", "string"], "req-7"),
    ([header(v=True)], FieldTypeError, ["'v'", "boolean"], "req-7"),
    ([header(type=5)], FieldTypeError, ["'type'", "string"], "req-7"),
    ([header(id=None)], FieldTypeError, ["'id'", "null"], None),
    ([header({"a": ref(5, "float32", [])}), F4], FrameError, ["frame 5", "frames 1..1"], "req-7"),
    ([header({"a": ref(0, "float32", [])}), F4], FrameError, ["frame 0"], "req-7"),
    ([header({"a": ref(1, "float32", [])})], FrameError, ["no array frames"], "req-7"),
    ([header({"a": ref(True, "float32", [])}), F4], FrameError, ["$nd", "boolean"], "req-7"),
    ([header({"a": ref(1, "float32", []), "b": [ref(1, "float32", [])]}), F4], FrameError,
     ["frame 1", "twice", "'a'", "'b[0]'"], "req-7"),
    ([header({"a": ref(1, "float32", [])}), F4, b"junk"], FrameError,
     ["frame(s) 2", "not referenced"], "req-7"),
    ([header({"a": {"b": ref(1, "float32", [2])}}), F4], FrameError,
     ["frame 1", "'a.b'", "holds 4 bytes", "needs 8 bytes"], "req-7"),
    ([header({"a": ref(1, "float16", [2])}), F4], FrameError, ["float16", "allowed"], "req-7"),
    ([header({"a": ref(1, "O", [])}), F4], FrameError, ["'O'"], "req-7"),
    ([header({"a": ref(1, "<f4", [])}), F4], FrameError, ["'<f4'"], "req-7"),
    ([header({"a": ref(1, "uint8", [-4])}), F4], FrameError, ["shape", "[-4]"], "req-7"),
    ([header({"a": ref(1, "uint8", [2.0, 2])}), F4], FrameError, ["shape"], "req-7"),
    ([header({"a": ref(1, "uint8", 4)}), F4], FrameError, ["shape"], "req-7"),
    ([header({"a": ref(1, "uint8", [1] * 33)}), b"x"], FrameError, ["at most 32"], "req-7"),
    ([header({"a": ref(1, "uint8", [2**20, 2**20])}), F4], FrameError,
     ["holds 4 bytes", "needs 1099511627776 bytes"], "req-7"),
    ([header({"a": ref(1, "uint8", [2**40, 2**40])}), F4], FrameError, ["too large"], "req-7"),
    ([header({"a": ref(1, "uint8", [0, 2**62, 2**62])}), b""], FrameError, ["too large"],
     "req-7"),
    ([header({"a": {**ref(1, "uint8", [4]), "x": 1}}), F4], FrameError, ["exactly the keys"],
     "req-7"),
    ([header({"a": {"$nd": 1}}), F4], FrameError, ["exactly the keys"], "req-7"),
    ([header({"a": ref(1, "bool", [2])}), b"\x01\x02"], FrameError, ["0 and 1"], "req-7"),
    ([header({"$nd": 1, "dtype": "uint8", "shape": [1]}), b"x"], FrameError, ["top level"],
     "req-7"),
]


@pytest.mark.parametrize("frames, cls, texts, rid", ERROR_CASES)
def test_decode_errors(frames, cls, texts, rid):
    with pytest.raises(cls) as info:
        decode(frames)
    err = info.value
    assert type(err) is cls and err.code == cls.code and err.code in ERROR_CODES
    assert err.message == str(err)
    for text in texts:
        assert text in err.message, (text, err.message)
    assert err.request_id == rid


# bytes per element, written out here rather than taken from the code under test
ITEMSIZE = {"bool": 1, "uint8": 1, "int8": 1, "uint16": 2, "int16": 2, "int32": 4,
            "int64": 8, "float32": 4, "float64": 8}


@pytest.mark.parametrize("shape", [[], [0], [0, 3], [3, 0], [2, 0, 4], [1], [3], [2, 3],
                                   [1, 1, 1], [2, 2, 2]])
def test_frame_size_must_equal_shape_times_itemsize(shape):
    """Accepted exactly when the frame holds prod(shape) * itemsize bytes; in particular a
    zero-size array ([0, 3]) with a non-empty frame is a FrameError."""
    assert set(DTYPES) == set(ITEMSIZE)
    for name in DTYPES:
        need = ITEMSIZE[name]
        for d in shape:
            need *= d
        sizes = {0, 1, need - 1, need, need + 1, need + ITEMSIZE[name], 2 * need + 3}
        for size in sorted(s for s in sizes if s >= 0):
            frames = [header({"a": ref(1, name, shape)}), bytes(size)]
            if size == need:
                got = decode(frames).fields["a"]
                assert got.shape == tuple(shape) and got.dtype == np.dtype(name)
                assert got.nbytes == need
            else:
                with pytest.raises(FrameError, match=f"holds {size} bytes"):
                    decode(frames)


def test_decode_rejects_odd_frame_containers():
    def exploding():
        yield b"{}"
        raise RuntimeError("boom")

    released = memoryview(b"{}")
    released.release()
    strided = memoryview(bytearray(header()))[::2]
    for frames, text in ((None, "NoneType"), (5, "int"), (b"{}", "bytes"),
                         (exploding(), "generator"), ([released], "frame 0"),
                         ([strided], "contiguous"), ([b"{}", "text"], "frame 1 is a str")):
        with pytest.raises(FrameError) as info:
            decode(frames)
        assert text in info.value.message
    msg = decode(iter([memoryview(np.frombuffer(header(), np.uint8))]))  # any iterable, any view
    assert msg.id == "req-7"


def test_too_large_is_checked_before_parsing():
    with pytest.raises(TooLargeError) as info:
        decode([b"\xff" * 8, b"123"], max_bytes=10)
    assert info.value.code == "too_large"
    assert "11 bytes" in info.value.message and "limit of 10" in info.value.message
    assert info.value.request_id is None
    # the id is still echoed when frame 0 is small enough to peek at
    frames = encode("render", "big-1", {"a": np.zeros(100, np.uint8)})
    with pytest.raises(TooLargeError) as info:
        decode(frames, max_bytes=100)
    assert info.value.request_id == "big-1"
    assert decode(frames, max_bytes=sum(map(len, frames))).id == "big-1"
