"""Servers join the optimizer (protocol v2, `--listen` / `--connect`): two fake-backend server
processes join at different times, one is SIGKILLed mid-run; every item rendered once, in
order, identical to an undisturbed render; credit gives the faster server more."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from blender_addon.server import RenderServer
from protocol import wire
from tests.fakes import FakeBackend

ROOT = Path(__file__).resolve().parents[1]


def join(endpoint: str, delay_s: float, heartbeat_s: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.fake_server", "--connect", endpoint,
                             "--delay-s", str(delay_s), "--heartbeat-s", str(heartbeat_s)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    assert proc.stdout.readline().startswith("AUTOSIM_READY ")
    return proc


@pytest.fixture
def procs():
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def reference(latents: np.ndarray) -> np.ndarray:
    server = RenderServer(FakeBackend())
    rep = wire.decode(server.handle(wire.encode(
        "render", "x", {"latents": latents, "width": 16, "height": 16})))
    return np.stack([it["image"] for it in rep.fields["items"]])


def test_servers_join_and_leave_a_running_stream(procs) -> None:
    from optimizer.simulators.farm import FarmSimulator

    hb = 0.3
    with FarmSimulator("tcp://127.0.0.1:*", heartbeat_s=hb, liveness=3, credit=2,
                       min_servers=0, timeout_s=30) as sim:
        procs.append(join(sim.endpoint, 0.02, hb))
        sim.wait_for_servers(1, 20)
        first = next(iter(sim.workers.values())).worker
        latents = sim.space.sample(120, np.random.default_rng(0))
        chunks = [latents[i:i + 3] for i in range(0, 120, 3)]
        got, killed = [], None
        for i, batch in enumerate(sim.render_stream(chunks, 16, 16)):
            got.append(batch)
            if i == 2:
                procs.append(join(sim.endpoint, 0.005, hb))  # a faster one joins
            if i == 14:
                procs[0].send_signal(signal.SIGKILL)
                killed = time.monotonic()
        counts = {w.worker: w.rendered for w in sim.workers.values()}
        sim.set_psi(sim.space.psi)
        again = sim.render(latents[:10], 16, 16)
    # its connection closed: dropped once it missed one beat after that, not three
    assert list(sim.left) == [first] and "connection closed" in sim.left[first], sim.left
    print(f"farm: kill detected in {sim.dead_at[first] - killed:.2f} s; rendered {counts}")
    assert hb < sim.dead_at[first] - killed < hb * 3 + 1.5
    assert len(counts) == 1 and list(counts.values())[0] > 0  # the late joiner worked
    assert np.array_equal(np.concatenate([b.latents for b in got]), latents)
    assert np.array_equal(np.concatenate([b.images for b in got]), reference(latents))
    ids = [i for b in got for i in b.item_ids]
    assert len(ids) == len(set(ids)) == 120
    assert np.array_equal(again.images, reference(latents[:10]))


def test_listening_off_loopback_needs_keys() -> None:
    from optimizer.simulators.farm import FarmSimulator

    with pytest.raises(OSError, match="without authentication"):
        FarmSimulator("tcp://0.0.0.0:*", min_servers=0)
    with pytest.raises(OSError, match="without authentication"):
        RenderServer(FakeBackend()).connect("tcp://10.1.2.3:5555")
    from blender_addon import serve

    assert serve.main(["--connect", "tcp://10.1.2.3:5555", "--quiet"]) == 2


def test_a_server_joins_with_ready_and_rejoins_a_restarted_optimizer(procs) -> None:
    from optimizer.simulators.farm import FarmSimulator

    with FarmSimulator("tcp://127.0.0.1:*", heartbeat_s=0.2, min_servers=0) as sim:
        endpoint = sim.endpoint
        procs.append(join(endpoint, 0.0, 0.2))
        sim.wait_for_servers(1, 20)
        assert sim.render(sim.space.sample(4, np.random.default_rng(0)), 8, 8).images.shape[0] == 4
    # the optimizer restarts on the same address: the server's beat gets `rejoin`, it joins
    with FarmSimulator(endpoint, heartbeat_s=0.2, min_servers=1, join_timeout_s=20) as sim:
        assert len(sim.render(sim.space.sample(3, np.random.default_rng(1)), 8, 8)) == 3


def test_a_recycled_server_hands_back_its_work_and_its_successor_joins(procs) -> None:
    from optimizer.simulators.farm import FarmSimulator

    def recycling() -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen([sys.executable, "-m", "tests.fake_server", "--connect",
                                 sim.endpoint, "--delay-s", "0.01", "--heartbeat-s", "0.3",
                                 "--max-renders", "9"], stdout=subprocess.PIPE, text=True,
                                cwd=ROOT, env=env)
        assert proc.stdout.readline().startswith("AUTOSIM_READY ")
        return proc

    with FarmSimulator("tcp://127.0.0.1:*", heartbeat_s=0.3, min_servers=0,
                       timeout_s=30) as sim:
        procs.append(recycling())
        procs.append(join(sim.endpoint, 0.03, 0.3))
        sim.wait_for_servers(2, 20)
        latents = sim.space.sample(60, np.random.default_rng(2))
        got, restarts = [], 0
        for batch in sim.render_stream([latents[i:i + 3] for i in range(0, 60, 3)], 16, 16):
            got.append(batch)
            if procs[0].poll() is not None and restarts < 3:  # the supervisor's part
                assert procs[0].returncode == 0
                procs.append(procs.pop(0))
                procs.insert(0, recycling())
                restarts += 1
    recycled = [k for k, v in sim.left.items() if v.startswith("recycled")]
    assert recycled and restarts >= 1
    assert np.array_equal(np.concatenate([b.images for b in got]), reference(latents))
    ids = [i for b in got for i in b.item_ids]
    assert len(ids) == len(set(ids)) == 60


def test_a_second_ready_from_a_busy_server_costs_nothing() -> None:
    """A server's first beat can overtake its `ready` (two connections): the beat is answered
    `rejoin` and the server announces itself again, maybe with requests in flight. That must
    not throw their replies away (each would be rendered twice)."""
    import threading

    from optimizer.simulators.farm import FarmSimulator
    from tests.fake_server import SlowFake

    with FarmSimulator("tcp://127.0.0.1:*", heartbeat_s=0.3, min_servers=0,
                       timeout_s=30) as sim:
        server = RenderServer(SlowFake(0.01))
        server.connect(sim.endpoint, heartbeat_s=0.3)
        done = threading.Event()
        loop = threading.Thread(target=lambda: [server.step(20) for _ in iter(done.is_set, True)])
        loop.start()
        try:
            sim.wait_for_servers(1, 10)
            latents = sim.space.sample(24, np.random.default_rng(4))
            got = []
            for i, batch in enumerate(sim.render_stream(
                    [latents[i:i + 3] for i in range(0, 24, 3)], 16, 16)):
                got.append(batch)
                if i in (1, 4):
                    server._rejoin.set()  # what a `rejoin` answer to its beat does
                    time.sleep(0.1)  # it answers what it holds, then says `ready` again
        finally:
            done.set()
            loop.join()
            server.close()
    assert server.rendered_total == 24 and not sim.left  # nothing rendered twice or dropped
    assert np.array_equal(np.concatenate([b.images for b in got]), reference(latents))
