"""CURVE (Ironhouse) over real sockets: keys, an authorized client served, anyone else
answered with nothing; a non-loopback server refuses to start without keys."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
import zmq
import zmq.auth

from blender_addon.server import RenderServer
from optimizer.cli import main as cli
from optimizer.simulators.client import RenderClient, ServerUnavailable
from protocol import curve
from tests.fakes import FakeBackend

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def keys(tmp_path) -> Path:
    assert cli(["keys", "--out", str(tmp_path / "keys")]) == 0
    return tmp_path / "keys"


@pytest.fixture
def served(keys):
    """A CURVE server with a fake backend in a thread; yields its endpoint."""
    server = RenderServer(FakeBackend())
    endpoint = server.bind("tcp://127.0.0.1:*", curve=str(keys))
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            server.step(timeout_ms=50)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    yield endpoint
    stop.set()
    t.join(5)
    server.close()


def test_keys_folder_layout_and_refusal_to_overwrite(keys, capsys):
    names = sorted(p.name for p in keys.iterdir())
    assert names == ["authorized", "client.key", "client.key_secret", "server.key",
                     "server.key_secret"]
    assert [p.name for p in (keys / "authorized").iterdir()] == ["client.key"]
    assert (keys / "server.key_secret").stat().st_mode & 0o077 == 0
    capsys.readouterr()
    assert cli(["keys", "--out", str(keys)]) == 2
    assert "already holds keys" in capsys.readouterr().err


def test_authorized_client_is_served_others_get_nothing(keys, served, tmp_path):
    good = RenderClient(served, timeout_s=10, curve=str(keys))
    try:
        assert good.request("hello", {"client": "ok"}).fields["scene"] == "fake"
    finally:
        good.close()
    plain = RenderClient(served, timeout_s=1.5)  # no keys at all
    with pytest.raises(ServerUnavailable):
        plain.request("hello", {})
    plain.close()
    # a client with a valid key pair the server never authorized
    other = tmp_path / "other"
    other.mkdir()
    zmq.auth.create_certificates(str(other), "client")
    (other / "server.key").write_bytes((keys / "server.key").read_bytes())
    stranger = RenderClient(served, timeout_s=1.5, curve=str(other))
    with pytest.raises(ServerUnavailable):
        stranger.request("hello", {})
    with pytest.raises(ServerUnavailable):  # nor its shutdown request
        stranger.request("shutdown", {})
    stranger.close()
    again = RenderClient(served, timeout_s=10, curve=str(keys))  # still serving
    assert again.request("get_params").fields["generation"] == 0
    again.close()


def test_non_loopback_needs_keys(keys, capsys):
    assert curve.is_loopback("tcp://127.0.0.1:5555") and curve.is_loopback("tcp://[::1]:1")
    assert curve.is_loopback("tcp://localhost:1") and curve.is_loopback("ipc:///tmp/x")
    assert not curve.is_loopback("tcp://0.0.0.0:5555")
    assert not curve.is_loopback("tcp://*:5555") and not curve.is_loopback("tcp://10.0.0.3:1")
    with pytest.raises(OSError, match="without authentication"):
        RenderServer(FakeBackend()).bind("tcp://0.0.0.0:*")
    server = RenderServer(FakeBackend())
    endpoint = server.bind("tcp://0.0.0.0:*", curve=str(keys))  # with keys it starts
    assert endpoint.startswith("tcp://0.0.0.0:")
    server.close()
    with pytest.raises(OSError, match="no such key file"):
        RenderServer(FakeBackend()).bind("tcp://127.0.0.1:*", curve=str(keys / "nope"))


@pytest.mark.blender
def test_serve_cli_refuses_an_open_bind_in_one_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "optimizer.cli", "serve", "--scene", "clevr",
                          "--bind", "tcp://0.0.0.0:0"], capture_output=True, text=True,
                         timeout=120, cwd=str(ROOT))
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "without authentication" in lines[0] and "--curve" in lines[0]


@pytest.mark.blender
def test_local_bpy_servers_and_the_optimizer_speak_curve(keys, tmp_path):
    from optimizer.simulators.local_servers import LocalServers
    from optimizer.simulators.remote import RemoteSimulator

    with LocalServers("clevr", 1, threads=1, curve=str(keys)) as eps:
        with RemoteSimulator(eps, timeout_s=30, curve=str(keys)) as sim:
            batch = sim.render(sim.space.sample(2, __import__("numpy").random.default_rng(0)),
                               16, 16)
            assert batch.images.shape == (2, 16, 16, 3)
            # the heartbeat socket speaks CURVE too: pongs are heard
            beat = sim._beats[eps[0]]
            beat.heard = 0.0
            beat.ping()
            for _ in range(100):
                beat.drain(1.0)
                if beat.heard:
                    break
                __import__("time").sleep(0.05)
            assert beat.heard == 1.0
        plain = RenderClient(eps[0], timeout_s=1.5)
        with pytest.raises(ServerUnavailable):
            plain.request("hello", {})
        plain.close()
    # the render CLI with keys, against local servers it starts with the same keys
    out = tmp_path / "set"
    assert cli(["render", "--scene", "clevr", "--n", "2", "--size", "16", "--out", str(out),
                "--threads", "1", "--curve", str(keys), "--no-progress"]) == 0
