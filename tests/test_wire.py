"""Tests for protocol/wire.py: round trips, every error code, fuzzing, a real ZeroMQ exchange."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from protocol import wire
from protocol.wire import (
    DTYPES,
    ERROR_CODES,
    BadValueError,
    FieldTypeError,
    FrameError,
    Message,
    MissingFieldError,
    NotJSONError,
    ProtocolError,
    TooLargeError,
    UnknownTypeError,
    VersionError,
    decode,
    encode,
    error_reply,
    reply,
)


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


# ----------------------------------------------------------------------------- fuzzing


def contains_ref(node) -> bool:
    if isinstance(node, dict):
        return "$nd" in node or any(contains_ref(v) for v in node.values())
    if isinstance(node, list):
        return any(contains_ref(v) for v in node)
    return False


def check_total(frames, **kwargs) -> None:
    """decode returns a Message or raises a ProtocolError with a known code, nothing else."""
    for expect_request in (False, True):
        try:
            msg = decode(frames, expect_request=expect_request, **kwargs)
        except ProtocolError as exc:
            assert exc.code in ERROR_CODES and isinstance(exc.message, str)
            assert exc.request_id is None or isinstance(exc.request_id, str)
            continue
        assert isinstance(msg, Message) and isinstance(msg.type, str)
        assert isinstance(msg.id, str) and not contains_ref(msg.fields)
        if expect_request:
            assert msg.type in wire.REQUEST_TYPES
        again = decode(encode(msg.type, msg.id, msg.fields), expect_request=expect_request)
        assert (again.type, again.id) == (msg.type, msg.id)


@fuzz(1000)
@given(st.lists(st.binary(max_size=40), max_size=5), st.integers(0, 200))
def test_fuzz_arbitrary_bytes(frames, max_bytes):
    check_total(frames)
    check_total(frames, max_bytes=max_bytes)


JUNK_DTYPES = list(DTYPES) + ["float16", "object", "O", "<f4", "complex128", "", "uint32"]
JUNK_INTS = st.one_of(st.integers(-3, 6), st.sampled_from([2**31, 2**40, 2**62, 2**63, 2**64,
                                                           2**100, -(2**63)]))
scalars = st.one_of(st.none(), st.booleans(), JUNK_INTS, st.integers(),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=6))
refs = st.fixed_dictionaries(
    {"$nd": st.one_of(JUNK_INTS, scalars),
     "dtype": st.one_of(st.sampled_from(JUNK_DTYPES), scalars),
     "shape": st.one_of(st.lists(JUNK_INTS, max_size=4), st.lists(scalars, max_size=3),
                        scalars, st.just([1] * 40))},
    optional={"x": scalars})
json_values = st.recursive(
    st.one_of(scalars, refs),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(["a", "$nd", "n", "b"]), inner,
                                            max_size=3)),
    max_leaves=8)
FIELD_NAMES = sorted({name for table in wire.REQUEST_FIELDS.values() for name in table}
                     | {"x", "$nd", "v", "type", "id"})


envelopes = st.fixed_dictionaries({}, optional={
    "v": st.one_of(st.just(1), scalars),
    "type": st.one_of(st.sampled_from(wire.REQUEST_TYPES + ("error",)), scalars),
    "id": st.one_of(st.text(max_size=4), scalars)})
blobs = st.lists(st.sampled_from([0, 1, 2, 3, 4, 8, 12, 16, 24]).flatmap(
    lambda n: st.binary(min_size=n, max_size=n)), max_size=4)


@fuzz(1000)
@given(envelopes, st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=4), blobs)
def test_fuzz_random_json_with_refs(envelope, fields, frames):
    check_total([json.dumps({**envelope, **fields}).encode()] + frames)


def valid_messages() -> list[list[bytes]]:
    rng = np.random.default_rng(1)
    item = {"item_id": "i0", "seed": 3, "image": rng.integers(0, 255, (4, 5, 3), np.uint8),
            "mask": np.zeros((4, 5), np.uint8), "instances": np.ones((4, 5), np.uint16),
            "boxes": rng.random((2, 4), np.float32), "classes": np.array([1, 2], np.int32),
            "flags": np.array([True, False])}
    return [
        encode("hello", "h1", {"client": "tëst"}),
        encode("set_params", "s1", {"psi": np.arange(4.0), "metrics": {"val": 0.5}}),
        encode("render", "r1", {"n": 2, "seed": 7, "width": 32, "return": ["image", "mask"]}),
        encode("render", "r2", {"latents": rng.normal(size=(3, 4))}),
        reply(Message("render", "r3"), {"generation": 1, "items": [item]}),
        error_reply("e1", "busy", "try later"),
    ]


VALID = valid_messages()


@st.composite
def mutated(draw):
    frames = [bytearray(f) for f in draw(st.sampled_from(VALID))]
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "drop", "add", "dup", "swap", "json",
                                   "deep"]))
        i = draw(st.integers(0, max(len(frames) - 1, 0)))
        if op == "flip" and frames and frames[i]:
            pos = draw(st.integers(0, len(frames[i]) - 1))
            frames[i][pos] ^= draw(st.integers(1, 255))
        elif op == "truncate" and frames:
            frames[i] = frames[i][:draw(st.integers(0, len(frames[i])))]
        elif op == "drop" and frames:
            del frames[i]
        elif op == "add":
            frames.insert(draw(st.integers(0, len(frames))), bytearray(draw(st.binary(
                max_size=16))))
        elif op == "dup" and frames:
            frames.append(bytearray(frames[i]))
        elif op == "swap" and len(frames) > 1:
            j = draw(st.integers(0, len(frames) - 1))
            frames[i], frames[j] = frames[j], frames[i]
        elif op in ("json", "deep") and frames:
            try:
                obj = json.loads(bytes(frames[0]))
            except (ValueError, RecursionError):
                continue
            if not isinstance(obj, dict):
                continue
            nodes = [obj]  # every object in the tree
            for node in nodes:
                for value in (node.values() if isinstance(node, dict) else node):
                    if isinstance(value, (dict, list)):
                        nodes.append(value)
            target = draw(st.sampled_from([n for n in nodes if isinstance(n, dict)]))
            key = draw(st.sampled_from(FIELD_NAMES + ["dtype", "shape"] + list(target)))
            if op == "deep":
                depth = draw(st.sampled_from([60, 64, 65, 100, 990, 10000]))
                target[key] = "@@deep@@"
                text = json.dumps(obj).replace('"@@deep@@"', "[" * depth + "]" * depth)
                frames[0] = bytearray(text.encode())
            else:
                target[key] = draw(json_values)
                frames[0] = bytearray(json.dumps(obj).encode())
    return [bytes(f) for f in frames]


@fuzz(1500)
@given(mutated())
def test_fuzz_mutated_valid_messages(frames):
    check_total(frames)


@pytest.mark.parametrize("opening, closing", [("[", "]"), ('{"a":', "}"), ('[{"b":', "}]")])
def test_deep_nesting_is_a_protocol_error(opening, closing):
    for depth in (65, 500, 10000, 100000):
        body = opening * depth + "1" + closing * depth
        frame = f'{{"v":1,"type":"hello","id":"d","x":{body}}}'.encode()
        with pytest.raises(NotJSONError):
            decode([frame], expect_request=True)


@fuzz(300)
@given(st.dictionaries(st.text(max_size=6).filter(lambda k: k not in ("v", "type", "id", "$nd")),
                       st.recursive(
                           st.one_of(st.none(), st.booleans(), st.integers(),
                                     st.floats(allow_nan=False, allow_infinity=False),
                                     st.text(max_size=8),
                                     hnp.arrays(st.sampled_from(list(DTYPES.values())),
                                                hnp.array_shapes(min_dims=0, max_dims=3,
                                                                 min_side=0, max_side=3))),
                           lambda inner: st.one_of(
                               st.lists(inner, max_size=3),
                               st.dictionaries(st.text(max_size=4).filter(lambda k: k != "$nd"),
                                               inner, max_size=3)),
                           max_leaves=10),
                       max_size=4),
       st.text(max_size=10))
def test_fuzz_round_trip(fields, rid):
    msg = decode(encode("render", rid, fields))
    assert msg.id == rid
    assert_same(fields, msg.fields)


# ----------------------------------------------------------------------------- real ZeroMQ


def test_zmq_router_with_req_and_dealer_clients():
    zmq = pytest.importorskip("zmq")
    ctx = zmq.Context()
    sockets = []

    def socket(kind):
        sock = ctx.socket(kind)
        sock.linger = 0
        sockets.append(sock)
        return sock

    router = socket(zmq.ROUTER)
    router.bind("tcp://127.0.0.1:*")
    endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
    stop, failures = threading.Event(), []

    def serve():  # the minimal server loop: decode, answer, keep serving
        try:
            while not stop.is_set():
                if not router.poll(20):
                    continue
                parts = router.recv_multipart(copy=False)
                delim = next((i for i, p in enumerate(parts) if not p.bytes), None)
                if delim is None:
                    continue  # a peer that forgot the empty delimiter frame
                try:
                    msg = decode(parts[delim + 1:], expect_request=True)
                    out = reply(msg, {"echo": msg.fields})
                except ProtocolError as exc:
                    out = error_reply(exc.request_id, exc.code, exc.message)
                router.send_multipart([p.bytes for p in parts[:delim + 1]] + out)
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(exc)

    def receive(sock) -> list:
        assert sock.poll(5000), "no reply within 5 s"
        return sock.recv_multipart(copy=False)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        latents = np.arange(6, dtype=np.float64).reshape(2, 3)
        client = socket(zmq.REQ)
        client.connect(endpoint)
        client.send_multipart(encode("hello", "req-1", {"client": "pytest"}))
        msg = decode(receive(client))  # zmq.Frame objects go straight into decode
        assert (msg.type, msg.id, msg.fields) == ("hello", "req-1",
                                                  {"ok": True, "echo": {"client": "pytest"}})
        client.send_multipart(encode("render", "req-2", {"latents": latents}))
        msg = decode(receive(client))
        np.testing.assert_array_equal(msg.fields["echo"]["latents"], latents)
        client.send_multipart(encode("render", "req-3", {"n": 0, "seed": 1}))
        msg = decode(receive(client))
        assert (msg.type, msg.id, msg.fields["code"]) == ("error", "req-3", "bad_value")

        dealer = socket(zmq.DEALER)
        dealer.connect(endpoint)
        dealer.send_multipart([b""] + encode("render", "d-1", {"n": 2, "seed": 5}))
        dealer.send_multipart([b""] + encode("render", "d-2", {"latents": latents}))
        dealer.send_multipart([b"", b"not json"])
        replies = {}
        for _ in range(3):
            parts = receive(dealer)
            assert parts[0].bytes == b""
            msg = decode(parts[1:])
            replies[msg.id] = msg
        assert replies["d-1"].fields["echo"] == {"n": 2, "seed": 5}
        np.testing.assert_array_equal(replies["d-2"].fields["echo"]["latents"], latents)
        assert replies[""].type == "error" and replies[""].fields["code"] == "bad_json"
    finally:
        stop.set()
        thread.join(5)
        for sock in sockets:
            sock.close(0)
        ctx.term()
    assert not thread.is_alive() and not failures
