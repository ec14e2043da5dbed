"""The client written only from docs/protocol.md (the package examples/thirdparty_client/)
against a real bpy clevr server started as a user would (`autosim serve`), asserting what the
doc promises."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.blender,
    pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="needs the bpy module"),
]

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

import thirdparty_client  # noqa: E402  (the package examples/thirdparty_client/)


def _ready_endpoint(proc: subprocess.Popen, timeout_s: float = 60.0) -> str:
    """The endpoint of the server's `AUTOSIM_READY {...}` line."""
    found: list[str] = []

    def read():
        for line in proc.stdout:
            if line.startswith("AUTOSIM_READY "):
                found.append(json.loads(line[len("AUTOSIM_READY "):])["endpoint"])
                break

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout_s)
    assert found, f"no READY line within {timeout_s} s (exit status {proc.poll()})"
    return found[0]


@pytest.fixture
def clevr_server():
    cmd = [sys.executable, "-c", "from optimizer.cli import main; main()", "serve",
           "--scene", "clevr", "--bind", "tcp://127.0.0.1:*", "--threads", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        yield proc, _ready_endpoint(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_thirdparty_client_against_clevr(clevr_server):
    proc, endpoint = clevr_server
    s = thirdparty_client.main([endpoint, "--size", "32", "--count", "4", "--timeout", "60"])

    # hello, space and the psi / latent layouts of section 4
    assert s["scene"] == "clevr" and s["feature_level"] == 2
    assert s["classes"][0] == "background"
    assert (s["psi_size"], s["latent_size"]) == (62, 24)
    # 4 explicit latents at 32 x 32: items in order, unique ids, arrays of the documented shapes
    assert [it["index"] for it in s["items"]] == [0, 1, 2, 3]
    assert len({it["item_id"] for it in s["items"]}) == 4
    assert all(it["image_shape"] == (32, 32, 3) and it["mask_shape"] == (32, 32)
               for it in s["items"])
    assert [it["latent_named"]["num_objects"] for it in s["items"]] == ["3", "4", "5", "2"]
    # seeded sampling follows the doc's recipe exactly
    assert s["seeded_matches_doc"]
    # documented error codes (section 7's examples among them)
    codes = {what: code for what, (code, _msg) in s["errors"].items()}
    assert codes["frame 0 not JSON"] == "bad_json"
    assert codes["render n=0 (section 7)"] == "bad_value"
    assert codes["stale set_params"] == "stale_generation"
    assert codes["extra unreferenced frame"] == "bad_frame"
    assert codes["unknown type"] == "unknown_type"
    assert codes["v = 99"] == "bad_version"
    assert codes["get_params on heartbeat socket"] == "bad_value"
    # version 2: the heartbeat socket answers while the main one renders
    assert s["busy_pings"] >= 1
    # shutdown: reply with only `ok`, nothing answered behind it, and the process exits
    assert s["shutdown_extra_fields"] == [] and s["reply_after_shutdown"] is False
    proc.wait(30)
