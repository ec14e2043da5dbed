"""Heartbeats (protocol v2): a SIGKILLed and a SIGSTOPped server are found within
heartbeat_s * liveness, their work rendered by the others, nothing lost or counted twice;
a server merely busy with a long render is not dropped. Real sockets, fake-backend processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from blender_addon.server import RenderServer
from protocol import wire
from tests.fake_server import SlowFake

ROOT = Path(__file__).resolve().parents[1]


def start_fake(delay_s: float) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.fake_server", "--delay-s",
                             str(delay_s)], stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    line = proc.stdout.readline()
    assert line.startswith("AUTOSIM_READY "), line
    return proc, json.loads(line.split(" ", 1)[1])["endpoint"]


@pytest.fixture
def fakes():
    procs: list[subprocess.Popen] = []

    def start(n: int, delay_s: float) -> list[str]:
        eps = []
        for _ in range(n):
            proc, ep = start_fake(delay_s)
            procs.append(proc)
            eps.append(ep)
        return eps

    start.procs = procs
    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        proc.wait(timeout=10)


def test_ping_is_answered_at_once_while_the_main_thread_renders() -> None:
    server = RenderServer(SlowFake(0.3))
    endpoint = server.bind("tcp://127.0.0.1:*")
    done = threading.Event()
    loop = threading.Thread(target=lambda: [server.step(20) for _ in iter(done.is_set, True)])
    loop.start()
    ctx = zmq.Context()
    try:
        main, beat = ctx.socket(zmq.DEALER), ctx.socket(zmq.DEALER)
        main.connect(endpoint)
        beat.connect(server.heartbeat_endpoint)
        main.send_multipart([b"", *wire.encode("render", "r1", {"n": 3, "seed": 0})])
        time.sleep(0.2)
        t0 = time.monotonic()
        beat.send_multipart([b"", *wire.encode("ping", "p1")])
        assert beat.poll(1000)
        pong = wire.decode(beat.recv_multipart()[1:])
        assert time.monotonic() - t0 < 0.25  # not after the 0.9 s render
        assert pong.type == "ping" and pong.fields["busy"] and pong.fields["request"] == "r1"
        main.send_multipart([b"", *wire.encode("ping", "p2")])  # v1 path: answered in turn
        replies = []
        while len(replies) < 2 and main.poll(3000):
            replies.append(wire.decode(main.recv_multipart()[1:]))
        assert [r.id for r in replies] == ["r1", "p2"]
        assert replies[1].fields["busy"] is False and replies[1].fields["images"] == 3
        beat.send_multipart([b"", *wire.encode("render", "x", {"n": 1, "seed": 0})])
        assert beat.poll(1000) and wire.decode(beat.recv_multipart()[1:]).type == "error"
        main.close(0)
        beat.close(0)
    finally:
        done.set()
        loop.join()
        server.close()
        ctx.term()


def test_the_heartbeat_socket_refuses_other_types_without_listing_them() -> None:
    server = RenderServer(SlowFake(0.0))
    server.bind("tcp://127.0.0.1:*")
    ctx = zmq.Context()
    beat = ctx.socket(zmq.DEALER)
    beat.setsockopt(zmq.LINGER, 0)
    beat.connect(server.heartbeat_endpoint)

    def ask(frame0: bytes) -> wire.Message:
        beat.send_multipart([b"", frame0])
        assert beat.poll(2000)
        return wire.decode(beat.recv_multipart()[1:])

    try:
        assert ask(wire.encode("ping", "p")[0]).type == "ping"
        for type_, code in (("get_params", "bad_value"), ("shutdown", "bad_value"),
                            ("frobnicate", "unknown_type")):
            rep = ask(wire.encode(type_, "x")[0])
            assert (rep.id, rep.fields["code"]) == ("x", code)
            assert "answers only ping" in rep.fields["message"]
            assert "known:" not in rep.fields["message"]  # the main socket's list is not ours
        assert ask(b"garbage").fields["code"] == "bad_json"
        assert ask(b'{"v":2,"type":"ping","id":"v"}').fields["code"] == "bad_version"
    finally:
        beat.close(0)
        server.close()
        ctx.term()


def test_killed_and_stopped_servers_are_detected_and_their_work_done_elsewhere(fakes) -> None:
    from optimizer.simulators.remote import RemoteSimulator

    heartbeat_s, liveness = 0.5, 3
    eps = fakes(3, 0.03)
    kill, stop = fakes.procs[0], fakes.procs[1]
    with RemoteSimulator(eps, timeout_s=60, heartbeat_s=heartbeat_s, liveness=liveness) as sim:
        latents = sim.space.sample(96, np.random.default_rng(0))
        base = sim.render(latents, 16, 16)  # undisturbed
        chunks = [latents[i:i + 4] for i in range(0, len(latents), 4)]
        got, when = [], {}
        t0 = time.monotonic()
        for i, batch in enumerate(sim.render_stream(chunks, 16, 16, depth=2)):
            got.append(batch)
            if i == 1:
                kill.send_signal(signal.SIGKILL)
                when[eps[0]] = time.monotonic()
            if i == 3:
                stop.send_signal(signal.SIGSTOP)
                when[eps[1]] = time.monotonic()
        elapsed = time.monotonic() - t0
        stop.send_signal(signal.SIGCONT)  # its late replies, if any, are never counted
        after = sim.render(latents[:8], 16, 16)
    detect = {ep: sim.dead_at[ep] - when[ep] for ep in eps[:2]}
    print(f"detection s: kill {detect[eps[0]]:.2f}, stop {detect[eps[1]]:.2f}; "
          f"stream {elapsed:.2f} s")
    assert set(sim.dead) == set(eps[:2])
    bound = heartbeat_s * liveness
    # at 0.5 s beats either rule may find the killed one first on a loaded machine (the
    # connection rule alone: test_a_killed_server_is_found_by_its_closed_connection)
    assert detect[eps[0]] < bound + 2.0, detect
    # the stopped one keeps its connection: only its silence tells
    assert "no heartbeat" in sim.dead[eps[1]], sim.dead
    assert bound * 0.6 < detect[eps[1]] < bound + 2.0, detect
    assert np.array_equal(np.concatenate([b.latents for b in got]), latents)
    assert np.array_equal(np.concatenate([b.images for b in got]), base.images)
    assert np.array_equal(np.concatenate([b.masks for b in got]), base.masks)
    ids = [i for b in got for i in b.item_ids]
    assert len(ids) == len(set(ids)) == 96
    assert np.array_equal(after.images, base.images[:8])


def test_a_killed_server_is_found_by_its_closed_connection(fakes) -> None:
    """Beats of 2 s x 3 would take 6 s of silence; a closed connection plus one unanswered
    period (2 s) finds a SIGKILLed server well before that."""
    from optimizer.simulators.remote import RemoteSimulator

    eps = fakes(2, 0.02)
    with RemoteSimulator(eps, timeout_s=60, heartbeat_s=2.0, liveness=3) as sim:
        latents = sim.space.sample(8, np.random.default_rng(2))
        sim.render(latents, 8, 8)
        fakes.procs[0].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        while eps[0] not in sim.dead and time.monotonic() - killed < 10:
            sim.render(latents[:2], 8, 8)
            time.sleep(0.05)
    assert "connection closed" in sim.dead[eps[0]], sim.dead
    assert sim.dead_at[eps[0]] - killed < 4.5, sim.dead_at[eps[0]] - killed


def test_a_long_render_is_not_taken_for_a_hung_server(fakes) -> None:
    from optimizer.simulators.remote import RemoteSimulator

    eps = fakes(1, 0.2)
    with RemoteSimulator(eps, timeout_s=0.6, heartbeat_s=0.1, liveness=2) as sim:
        lat = sim.space.sample(6, np.random.default_rng(1))  # 1.2 s: past timeout_s and beats
        batch = sim.render(lat, 8, 8)
    assert len(batch) == 6 and not sim.dead


def test_a_recycling_server_is_dropped_at_once_and_its_queue_sent_elsewhere() -> None:
    from optimizer.simulators.remote import RemoteSimulator

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-m", "tests.fake_server", "--max-renders", "6",
                               *extra], stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
             for extra in ([], ["--max-renders", "0"])]
    try:
        eps = [json.loads(p.stdout.readline().split(" ", 1)[1])["endpoint"] for p in procs]
        with RemoteSimulator(eps, timeout_s=30, heartbeat_s=0.5) as sim:
            lat = sim.space.sample(30, np.random.default_rng(3))
            t0 = time.monotonic()
            batches = list(sim.render_stream([lat[i:i + 3] for i in range(0, 30, 3)], 8, 8))
            took = time.monotonic() - t0
        assert sim.dead == {eps[0]: "recycled (--max-renders)"}
        assert took < 1.0  # not a heartbeat timeout
        assert np.array_equal(np.concatenate([b.latents for b in batches]), lat)
        assert procs[0].wait(timeout=10) == 0
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=10)


def test_time_between_calls_is_not_silence(fakes) -> None:
    """The optimizer trains between renders and reads no pongs meanwhile: no false death."""
    from optimizer.simulators.remote import RemoteSimulator

    eps = fakes(1, 0.0)
    with RemoteSimulator(eps, timeout_s=30, heartbeat_s=0.1, liveness=2) as sim:
        lat = sim.space.sample(2, np.random.default_rng(0))
        sim.render(lat, 8, 8)
        time.sleep(0.6)  # three times heartbeat_s * liveness
        sim.set_psi(sim.space.psi)
        sim.render(lat, 8, 8)
        assert not sim.dead
