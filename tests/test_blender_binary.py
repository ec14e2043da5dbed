"""The render server inside a real `blender -b` executable (Debian's Blender 3.4 in CI).

`blender -b --factory-startup -P blender_addon/serve.py -- ...` must print its READY line, serve
both scenes over ZeroMQ, answer malformed requests with error replies and keep serving, keep
Blender's console chatter off stdout, and exit 0 promptly on `shutdown`, SIGTERM and SIGINT.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from blender_addon.scenes import classes as scene_classes
from protocol import wire
from tests.system_blender import system_blender_env

ROOT = Path(__file__).resolve().parents[1]
SERVE = ROOT / "blender_addon" / "serve.py"
READY = "AUTOSIM_READY"
STARTUP_S = 120.0
REPLY_S = 60.0
SIZE = 32


def _blender() -> str:
    path = shutil.which("blender")
    if path is None:
        reason = ("no `blender` executable on PATH (.ci/run installs Debian's: apt-get install "
                  "blender python3-zmq python3-numpy python3-openimageio)")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@contextlib.contextmanager
def blender_server(scene: str):
    """A `blender -b` render server on an ephemeral port: yields (proc, endpoint, log path).
    The process is killed on the way out, whatever happened."""
    exe = _blender()
    tmp = Path(tempfile.mkdtemp(prefix="autosim-blender-bin-"))
    env = system_blender_env(tmp / "user")
    log_path = tmp / "stderr.log"
    cmd = [exe, "-b", "--factory-startup", "-P", str(SERVE), "--",
           "--scene", scene, "--bind", "tcp://127.0.0.1:*", "--threads", "2"]
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True,
                                cwd=str(tmp), env=env)
    try:
        yield proc, _wait_ready(proc, log_path), log_path
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.stdout.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _wait_ready(proc: subprocess.Popen, log_path: Path) -> str:
    deadline = time.monotonic() + STARTUP_S
    seen = []
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(timeout=1.0):
                if proc.poll() is not None:
                    break
                continue
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith(READY):
                info = json.loads(line[len(READY):])
                assert info["pid"] == proc.pid
                return info["endpoint"]
            seen.append(line)
    pytest.fail(f"blender server never got ready (exit {proc.poll()}); stdout: {seen!r}; "
                f"stderr: {log_path.read_text(errors='replace')[-3000:]}")


class Client:
    """A DEALER with timeouts: a dead or stuck server fails the test, never hangs it."""

    def __init__(self, endpoint: str) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)

    def send_frames(self, frames: list[bytes], timeout_s: float = REPLY_S) -> wire.Message:
        self.sock.send_multipart([b"", *frames])
        if not self.sock.poll(int(timeout_s * 1000)):
            pytest.fail(f"no reply within {timeout_s} s")
        parts = self.sock.recv_multipart()
        assert parts[0] == b""
        return wire.decode(parts[1:])

    def ask(self, type_: str, id_: str, fields=None, timeout_s: float = REPLY_S) -> wire.Message:
        return self.send_frames(wire.encode(type_, id_, fields), timeout_s)

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


def _placement_object_sets() -> dict[str, tuple[str, ...]]:
    """OBJECT_SETS of the placement scene, read from its source (the module needs bpy)."""
    tree = ast.parse((ROOT / "blender_addon" / "scenes" / "placement.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                getattr(t, "id", None) == "OBJECT_SETS" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("placement.py has no OBJECT_SETS")


def _placed_classes(scene: str, named: dict) -> set[int]:
    names = scene_classes(scene)
    if scene == "clevr":
        count = int(named["num_objects"])
        return {names.index(named[f"obj{i}_shape"]) for i in range(count)}
    return {names.index(n) for n in _placement_object_sets()[named["object_set"]]}


def _check_item(scene: str, item: dict) -> None:
    image, mask = item["image"], item["mask"]
    instances, boxes, cls = item["instances"], item["boxes"], item["classes"]
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    assert image.std() > 1.0, "constant image"
    assert mask.shape == (SIZE, SIZE) and mask.dtype == np.uint8
    assert instances.shape == (SIZE, SIZE) and instances.dtype == np.uint16
    assert boxes.dtype == np.float32 and boxes.shape == (len(cls), 4)
    assert cls.dtype == np.int32
    placed = _placed_classes(scene, item["latent_named"])
    assert set(np.unique(mask).tolist()) - {0} <= placed
    assert set(cls.tolist()) <= placed
    np.testing.assert_array_equal(mask > 0, instances > 0)
    ids = sorted(set(np.unique(instances).tolist()) - {0})
    assert len(ids) == len(boxes)
    for inst_id, box, c in zip(ids, boxes, cls):
        ys, xs = np.nonzero(instances == inst_id)
        np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        assert set(np.unique(mask[instances == inst_id]).tolist()) == {int(c)}


def _malformed(latent_dim: int) -> list[tuple[str, list[bytes], str, str]]:
    """(what, frames, expected error code, expected id echo)."""
    return [
        ("garbage bytes", [b"\xff\x00not json at all\x9c"], "bad_json", ""),
        ("wrong version", [json.dumps({"v": 99, "type": "hello", "id": "m-v"}).encode()],
         "bad_version", "m-v"),
        ("unknown type", wire.encode("frobnicate", "m-t"), "unknown_type", "m-t"),
        ("absurd n", wire.encode("render", "m-n", {"n": 10**9, "seed": 1}), "bad_value", "m-n"),
        ("wrong latent shape",
         wire.encode("render", "m-l", {"latents": np.zeros((2, latent_dim + 3))}),
         "bad_value", "m-l"),
        ("truncated array frame",
         [json.dumps({"v": 1, "type": "render", "id": "m-f",
                      "latents": {"$nd": 1, "dtype": "float64", "shape": [1, latent_dim]}}
                     ).encode(), b"\x00" * 8], "bad_frame", "m-f"),
    ]


@pytest.mark.parametrize("scene", ["clevr", "placement"])
def test_blender_binary_serves_renders_survives_bad_requests_and_shuts_down(scene):
    with blender_server(scene) as (proc, endpoint, log_path):
        client = Client(endpoint)
        try:
            hello = client.ask("hello", "h0", {"client": "pytest"})
            assert hello.type == "hello", hello.fields
            assert hello.fields["blender"].startswith("3.4"), hello.fields["blender"]
            assert hello.fields["scene"] == scene
            assert hello.fields["classes"] == scene_classes(scene)

            rep = client.ask("render", "r0", {"n": 2, "seed": 5, "width": SIZE, "height": SIZE,
                                               "return": ["image", "mask", "instances", "boxes"]})
            assert rep.type == "render" and rep.id == "r0", rep.fields
            items = rep.fields["items"]
            assert [it["index"] for it in items] == [0, 1]
            for item in items:
                _check_item(scene, item)
            latent_dim = len(items[0]["latent"])

            for what, frames, code, id_ in _malformed(latent_dim):
                err = client.send_frames(frames)
                assert err.type == "error", (what, err.fields)
                assert err.fields["code"] == code, (what, err.fields)
                assert err.id == id_, what
                assert client.ask("hello", f"after-{code}").type == "hello", what

            bye = client.ask("shutdown", "bye")
            assert bye.type == "shutdown" and bye.fields["ok"] is True
        finally:
            client.close()
        assert proc.wait(10) == 0, log_path.read_text(errors="replace")[-3000:]
        rest = proc.stdout.read()
        # Blender's per-frame chatter ("Fra:1 Mem:...", "Saved: ...") must stay off stdout.
        assert "Fra:" not in rest and "Saved" not in rest, rest[-2000:]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_blender_binary_stops_promptly_on_signal_even_mid_render(signum):
    with blender_server("clevr") as (proc, endpoint, log_path):
        client = Client(endpoint)
        try:
            assert client.ask("hello", "h").type == "hello"
            # A long request in flight: the server must stop after the image it is on.
            client.sock.send_multipart([b"", *wire.encode(
                "render", "long", {"n": 200, "seed": 1, "width": 128, "height": 128})])
            time.sleep(1.0)
            t0 = time.monotonic()
            proc.send_signal(signum)
            try:
                code = proc.wait(10)
            except subprocess.TimeoutExpired:
                pytest.fail(f"blender did not exit within 10 s of {signum!r}")
            assert code == 0, log_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() - t0 < 10
        finally:
            client.close()
