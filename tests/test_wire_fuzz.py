"""Tests for protocol/wire.py: fuzzing (decode is total, encode/decode round trips)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from protocol import wire
from protocol.wire import (
    DTYPES,
    ERROR_CODES,
    Message,
    NotJSONError,
    ProtocolError,
    decode,
    encode,
    error_reply,
    reply,
)
from tests.wire_helpers import assert_same, fuzz

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
