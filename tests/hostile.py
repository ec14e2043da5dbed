"""~200 kinds of malformed and hostile render-server messages, with what a server must answer.

Each case is (what, frames, expected id, expected code or None): the expected id is what a
server can read of the request (the oracle is protocol.wire.decode run locally on the same
frames). Used by tests/test_server_fuzz_bpy.py and by `bench/farm.py malformed`.
"""

from __future__ import annotations

import json

import numpy as np

from blender_addon.scenes import space_dict
from protocol import wire
from protocol.space import ParameterSpace

SEED = 20240611
SPACE = ParameterSpace.from_dict(space_dict("clevr"))
L = SPACE.latent_dim


def _raw(header: dict, *frames: bytes) -> list[bytes]:
    return [json.dumps(header).encode(), *frames]


def _ref(nd=1, dtype="float64", shape=(1, L)) -> dict:
    return {"$nd": nd, "dtype": dtype, "shape": list(shape)}


def _templates(rng: np.random.Generator) -> list[list[bytes]]:
    """Valid requests that the mutators below break."""
    lat = SPACE.sample(2, rng)
    return [
        wire.encode("render", "t-lat", {"latents": lat, "width": 32, "height": 32,
                                        "return": ["mask"]}),
        wire.encode("render", "t-n", {"n": 2, "seed": 3, "width": 32, "height": 32}),
        wire.encode("set_params", "t-psi", {"psi": SPACE.psi.tolist(), "client": "fuzz"}),
        wire.encode("render", "t-list", {"latents": lat.tolist()}),
    ]


def _field_mutations() -> list[tuple[str, dict]]:
    """(id, header) pairs: one wrong field each, all refused by wire.decode."""
    base = {"v": 1, "type": "render", "id": "", "n": 1, "seed": 1, "width": 32, "height": 32}
    bad = {
        "n": ["3", -1, 0, True, 2.5, None, [], {}, 2**70],
        "seed": [-1, "x", 1.5, None, False, 2**64],
        "width": [0, -5, "64", True, 3.0, [64]],
        "height": [0, "32", None],
        "return": ["image", ["bogus"], [1], {}, [None]],
        "generation": ["1", 1.5, True, None],
    }
    out = []
    for key, values in bad.items():
        for j, value in enumerate(values):
            out.append((f"f-{key}-{j}", {**base, key: value}))
    latents = ["abc", [["a"]], [[1.0, 2.0], [3.0]], [], 5, {"x": 1}, [[None]], [1.0, 2.0]]
    no_n = {k: v for k, v in base.items() if k not in ("n", "seed")}
    for j, value in enumerate(latents):
        out.append((f"f-lat-{j}", {**no_n, "latents": value}))
    out += [
        ("f-both", {**base, "latents": [[0.0] * L]}),
        ("f-neither", no_n),
        ("f-noseed", {k: v for k, v in base.items() if k != "seed"}),
        ("f-seed-lat", {**no_n, "seed": 1, "latents": [[0.0] * L]}),
        ("f-type-num", {**base, "type": 5}),
        ("f-type-unknown", {**base, "type": "render_all_the_things"}),
        ("f-type-reply", {**base, "type": "error"}),
        ("f-v0", {**base, "v": 0}),
        ("f-v2", {**base, "v": 2}),
        ("f-vstr", {**base, "v": "1"}),
        ("f-vmissing", {k: v for k, v in base.items() if k != "v"}),
        ("f-psi-str", {"v": 1, "type": "set_params", "id": "", "psi": "0,0,0"}),
        ("f-psi-missing", {"v": 1, "type": "set_params", "id": ""}),
        ("f-metrics", {"v": 1, "type": "set_params", "id": "", "psi": [0.0],
                       "metrics": {"a": "b"}}),
        ("f-client", {"v": 1, "type": "hello", "id": "", "client": 7}),
    ]
    return [(mid, {**h, "id": mid}) if "id" in h else (mid, h) for mid, h in out]


def _array_abuse(rng: np.random.Generator) -> list[list[bytes]]:
    def render(i, ref, *frames, **extra):
        return _raw({"v": 1, "type": "render", "id": f"a-{i}", "latents": ref, **extra}, *frames)

    good = SPACE.sample(1, rng).astype("<f8").tobytes()
    nan = SPACE.sample(1, rng)
    nan[0, 0] = np.nan
    inf = SPACE.sample(1, rng)
    inf[0, 1] = -np.inf
    cases = [
        render(0, _ref(nd=0), good), render(1, _ref(nd=2), good), render(2, _ref(nd=-1), good),
        render(3, _ref(nd="1"), good), render(4, _ref(nd=1.0), good),
        render(5, _ref(nd=True), good), render(6, _ref(shape=(10**9, 10**9)), good),
        render(7, _ref(shape=(2**62, 2**62)), good), render(8, _ref(shape=(-1, L)), good),
        render(9, _ref(shape=[2] * 33), good), render(10, {**_ref(), "shape": "1x9"}, good),
        render(11, _ref(shape=(1.5, L)), good), render(12, _ref(dtype="object"), good),
        render(13, _ref(dtype="float16"), good), render(14, _ref(dtype="<f8"), good),
        render(15, {"$nd": 1, "shape": [1, L]}, good),
        render(16, {**_ref(), "extra": 1}, good),
        render(17, _ref(), good, good),  # extra unreferenced frame
        render(18, _ref(), good[:-3]),  # short frame
        render(19, _ref(), good + b"\x00"),  # long frame
        render(20, _ref(), *()),  # no frame
        render(21, [_ref(), _ref()], good),  # one frame referenced twice
        render(22, _ref(dtype="bool", shape=(1, 1)), b"\x02"),
        render(23, _ref(), nan.astype("<f8").tobytes()),
        render(24, _ref(), inf.astype("<f8").tobytes()),
        render(25, _ref(dtype="int32"), np.zeros((1, L), "<i4").tobytes()),
        render(26, _ref(shape=(1, 1, L)), good),
        render(27, _ref(shape=(L,)), good),
        render(28, _ref(shape=(0, L)), b""),
        _raw({**_ref(), "v": 1, "type": "render", "id": "a-29"}, good),  # $nd at top level
        _raw({"v": 1, "type": "set_params", "id": "a-30",
              "psi": _ref(shape=(SPACE.psi_dim,))},
             np.full(SPACE.psi_dim, np.nan).astype("<f8").tobytes()),
        _raw({"v": 1, "type": "set_params", "id": "a-31", "psi": _ref(dtype="int64",
                                                                      shape=(SPACE.psi_dim,))},
             np.zeros(SPACE.psi_dim, "<i8").tobytes()),
    ]
    return cases


def _server_refusals(rng: np.random.Generator) -> list[tuple[list[bytes], str]]:
    """Requests that decode but the server must refuse (limits, space, generations)."""
    wrong_cat = SPACE.sample(1, rng)
    col = SPACE.latent_slices["samples"].start
    wrong_cat[0, col] = 99.0
    return [
        (wire.encode("render", "s-n", {"n": 10**9, "seed": 1}), "bad_value"),
        (wire.encode("render", "s-w", {"n": 1, "seed": 1, "width": 10**6}), "bad_value"),
        (wire.encode("render", "s-h", {"n": 1, "seed": 1, "height": 10**6}), "bad_value"),
        (wire.encode("render", "s-px", {"n": 512, "seed": 1, "width": 2048, "height": 2048}),
         "bad_value"),
        (wire.encode("render", "s-k", {"latents": np.zeros((600, L))}), "bad_value"),
        (wire.encode("render", "s-shape", {"latents": np.zeros((2, L + 3))}), "bad_value"),
        (wire.encode("render", "s-cat", {"latents": wrong_cat}), "bad_value"),
        (wire.encode("render", "s-gen", {"n": 1, "seed": 1, "generation": 12345}),
         "stale_generation"),
        (wire.encode("set_params", "s-psi", {"psi": [0.0, 1.0]}), "bad_value"),
        (wire.encode("set_params", "s-cas", {"psi": SPACE.psi.tolist(),
                                             "expected_generation": 7}), "stale_generation"),
    ]


def _expected_id(frames: list[bytes]) -> str:
    """What the server can read of the id: local decode must refuse the message."""
    try:
        msg = wire.decode(frames, expect_request=True)
    except wire.ProtocolError as exc:
        return exc.request_id or ""
    raise AssertionError(f"fuzz case is a valid request: {msg.type} {msg.fields}")


def _refused_locally(frames: list[bytes]) -> bool:
    try:
        wire.decode(frames, expect_request=True)
    except wire.ProtocolError:
        return True
    return False


def hostile_messages(seed: int = SEED) -> list[tuple[str, list[bytes], str, str | None]]:
    """(what, frames, expected id, expected code or None) for ~200 messages."""
    rng = np.random.default_rng(seed)
    cases: list[tuple[str, list[bytes], str, str | None]] = []

    def add(what, frames, code=None):
        cases.append((what, frames, _expected_id(frames), code))

    for i in range(30):  # random bytes, 1-3 frames
        frames = [rng.bytes(int(rng.integers(0, 200))) for _ in range(int(rng.integers(1, 4)))]
        if _refused_locally(frames):
            add(f"random-bytes-{i}", frames)
    alphabet = np.frombuffer(b'{}[]":,0123456789.-eE $ndvtypeid\\', np.uint8)
    for i in range(15):  # JSON-ish junk
        add(f"json-junk-{i}", [rng.choice(alphabet, int(rng.integers(1, 80))).tobytes()])
    templates = _templates(rng)
    for i in range(30):  # truncated valid messages
        frames = [bytes(f) for f in templates[i % len(templates)]]
        if len(frames) > 1 and i % 2:
            frames[1] = frames[1][: int(rng.integers(0, len(frames[1])))]
        else:
            frames[0] = frames[0][: int(rng.integers(0, len(frames[0])))]
        add(f"truncated-{i}", frames)
    done = 0
    while done < 30:  # byte mutations of frame 0; mutants that still decode are skipped
        frames = [bytes(f) for f in templates[done % len(templates)]]
        head = bytearray(frames[0])
        for pos in rng.integers(0, len(head), int(rng.integers(1, 4))):
            head[pos] = int(rng.integers(0, 256))
        frames[0] = bytes(head)
        if _refused_locally(frames):
            add(f"mutated-{done}", frames)
            done += 1
    for mid, header in _field_mutations():
        add(mid, _raw(header))
    for i, frames in enumerate(_array_abuse(rng)):
        add(f"array-{i}", frames)
    for frames, code in _server_refusals(rng):
        cases.append((json.loads(frames[0])["id"], frames, json.loads(frames[0])["id"], code))
    add("no-frames", [])
    add("deep-nesting", [b'{"v":1,"type":"hello","id":"deep","x":' + b"[" * 200 + b"]" * 200
                         + b"}"])
    add("big-junk", [b"\x00" * (1 << 20)])
    add("bom", [b"\xef\xbb\xbf" + wire.encode("hello", "bom")[0]])
    add("nan-json", [b'{"v":1,"type":"render","id":"nan","n":NaN,"seed":1}'])
    add("not-object", [b'["v", 1]'])
    add("id-not-string", [b'{"v":1,"type":"hello","id":5}'])
    return cases
