"""Local bpy servers that join a listening optimizer (LocalServers(connect=...)): one that
recycles (--max-renders) or is killed is replaced by a fresh process that joins the running
stream, so the farm keeps its number of servers; one that cannot start is given up. Their
temporary log folder goes on a clean stop and stays when it explains a failure."""

from __future__ import annotations

import contextlib
import importlib.util
import re
import shutil
import signal
import time
from collections.abc import Iterator

import numpy as np
import pytest

from optimizer.errors import CliError
from optimizer.simulators.farm import FarmSimulator
from optimizer.simulators.local_servers import LocalServers, ServerStartError

pytestmark = [
    pytest.mark.blender,
    pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="needs the bpy module"),
]

HB = 0.5


@contextlib.contextmanager
def local(sim: FarmSimulator, count: int, log_dir, **kw) -> Iterator[LocalServers]:
    servers = LocalServers("clevr", count, threads=1, connect=sim.endpoint, heartbeat_s=HB,
                           log_dir=str(log_dir), **kw)
    with servers:
        yield servers


def wait_until(check, timeout_s: float, sim: FarmSimulator) -> None:
    """Serve joins and beats (sim._pump) until check() holds."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, ("condition not reached in time", sim.left)
        sim._pump(100)


def test_recycled_servers_are_replaced_and_join_the_running_stream(tmp_path) -> None:
    with FarmSimulator("tcp://127.0.0.1:*", heartbeat_s=HB, min_servers=0,
                       timeout_s=60) as sim, \
            local(sim, 2, tmp_path, max_renders=4) as servers:
        sim.wait_for_servers(2, 60)
        first = sorted(w.worker for w in sim.workers.values())
        pids = [p.pid for p in servers.procs]
        latents = sim.space.sample(16, np.random.default_rng(0))
        got = list(sim.render_stream([latents[i:i + 2] for i in range(0, 16, 2)], 32, 32))
        again = sim.render(latents[:8], 32, 32)  # the replacements' work
        # every recycled process replaced, and the replacements joined: two servers again
        wait_until(lambda: servers.restarts == len(sim.left) and len(sim.workers) == 2, 60, sim)
        now = sorted(w.worker for w in sim.workers.values())
        log = (tmp_path / "server-0.log").read_text()
    assert not set(now) & set(first) and [p.pid for p in servers.procs] != pids
    recycled = [k for k, why in sim.left.items() if why.startswith("recycled")]
    # 24 images, each process 4 to 7 (the request that reaches 4 is finished)
    assert len(recycled) == len(sim.left) >= 4 and set(first) <= set(recycled)
    assert np.array_equal(np.concatenate([b.latents for b in got]), latents)
    ids = [i for b in got for i in b.item_ids] + again.item_ids
    assert len(ids) == len(set(ids)) == 24
    # the labels do not depend on which process rendered an item (pixels may: a fresh clevr
    # server's first renders differ in Cycles noise, see docs/benchmarks.md)
    assert np.array_equal(np.concatenate([b.masks for b in got])[:8], again.masks)
    assert log.count("recycling: 4 images rendered") >= 2  # one slot's log, appended


def test_a_killed_server_is_replaced_and_a_broken_one_given_up(tmp_path) -> None:
    seen: list[str] = []
    with FarmSimulator("tcp://127.0.0.1:*", heartbeat_s=HB, min_servers=0,
                       timeout_s=60) as sim, \
            local(sim, 1, tmp_path, log=seen.append) as servers:
        sim.wait_for_servers(1, 60)
        (killed,) = (w.worker for w in sim.workers.values())
        servers.procs[0].send_signal(signal.SIGKILL)
        batch = sim.render(sim.space.sample(4, np.random.default_rng(1)), 32, 32)
        assert len(batch) == 4 and servers.restarts == 1
        # its connection closed and it beat no more: dropped, its work done anew
        assert "connection closed" in sim.left[killed], sim.left
        assert seen == ["local render server 0 exited with -9: restarted"]
        servers.params = str(tmp_path / "missing.json")  # every later start fails
        servers.procs[0].send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 60
        while 0 not in servers.given_up:
            assert time.monotonic() < deadline, seen
            time.sleep(0.2)
        assert servers.procs[0].returncode == 2  # `--params missing.json`: a clear exit 2
    assert servers.restarts == 1
    assert "3 times in a row" in servers.given_up[0] and "not restarted" in seen[-1]


def test_temporary_logs_go_on_a_clean_stop_and_stay_after_a_failure(tmp_path) -> None:
    seen: list[str] = []
    servers = LocalServers("clevr", 1, threads=1, log=seen.append)
    with servers as endpoints:
        assert endpoints[0].startswith("tcp://127.0.0.1:")
        assert (servers.log_dir / "server-0.log").exists()
    assert not servers.log_dir.exists() and seen == []

    broken = LocalServers("clevr", 1, threads=1, params=str(tmp_path / "missing.json"),
                          log=seen.append)
    with pytest.raises(ServerStartError) as err, broken:
        pass
    kept = re.search(r"its log (\S+server-0\.log)", str(err.value)).group(1)
    assert "missing.json" in open(kept).read()  # the log the message names is still there
    assert seen == [f"local render server logs kept in {broken.log_dir}"]

    mistake = LocalServers("clevr", 1, threads=1, log=seen.append)
    with pytest.raises(CliError), mistake:
        raise CliError("a bad --val")  # one readable line: not the servers' to explain
    assert not mistake.log_dir.exists() and len(seen) == 1

    failed = LocalServers("clevr", 1, threads=1, log=seen.append)
    with pytest.raises(RuntimeError), failed:
        raise RuntimeError("the run failed")
    assert seen[-1] == f"local render server logs kept in {failed.log_dir}"
    for folder in (broken.log_dir, failed.log_dir):
        shutil.rmtree(folder)
