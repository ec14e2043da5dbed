"""The render farm from the command line, real processes only: `autosim optimize` with
recycling local servers (--max-renders), and `autosim optimize --listen` joined by
`autosim serve --connect` processes, one of them late, and by the Slurm recipe's array-task
body (examples/farm/) run with plain bash. Small clevr runs (32 px, K=4, one epoch)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.blender,
    pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="needs the bpy module"),
]

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "optimizer.cli"]
SMALL = ["--scene", "clevr", "--k", "4", "--epochs", "1", "--no-progress", "--threads", "1"]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def metrics(run: Path) -> list[dict]:
    """The complete lines of the run's metrics.jsonl (it may be mid-write)."""
    path = run / "metrics.jsonl"
    text = path.read_text() if path.exists() else ""
    return [json.loads(x) for x in text.split("\n")[:-1]]


def assert_complete(run: Path, budget: int) -> None:
    """Every iteration logged once, in order, up to the budget; the run's files written."""
    records = metrics(run)
    assert [r["iteration"] for r in records] == list(range(budget // 4))
    assert [r["images_rendered"] for r in records] == list(range(4, budget + 1, 4))
    assert (run / "final_space.json").exists() and (run / "report.png").exists()


def group_alive(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group: a server whose bash parent has gone."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if int(group) == pgid and state != "Z":
            pids.append(int(stat.parent.name))
    return pids


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the process's group (bash and the server it runs, as scancel does); wait
    until every member has exited, so that the servers' last log lines are written."""
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while group_alive(proc.pid):
        assert time.monotonic() < deadline, group_alive(proc.pid)
        time.sleep(0.1)


@pytest.fixture(scope="module")
def val(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("farm") / "val"
    done = subprocess.run([*CLI, "render", "--scene", "clevr", "--n", "4", "--size", "32",
                           "--out", str(out), "--threads", "1", "--no-progress"],
                          capture_output=True, text=True, timeout=120, env=env(), cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture
def group():
    """Processes started in their own session, each ended with its whole group."""
    started: list[subprocess.Popen] = []

    def start(cmd: list[str], log: Path, extra: dict[str, str] | None = None):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "w"),  # noqa: SIM115
                                env={**env(), **(extra or {})}, cwd=ROOT,
                                start_new_session=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if group_alive(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=20)
                deadline = time.monotonic() + 20
                while group_alive(proc.pid) and time.monotonic() < deadline:
                    time.sleep(0.1)


def test_optimize_with_max_renders_keeps_its_local_servers(tmp_path, val) -> None:
    run = tmp_path / "run"
    done = subprocess.run([*CLI, "optimize", *SMALL, "--val", str(val), "--budget-images",
                           "24", "--out", str(run), "--local-servers", "2",
                           "--max-renders", "6"],
                          capture_output=True, text=True, timeout=300, env=env(), cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_complete(run, 24)
    # 24 images, 6 per process: the first two recycled mid-run, fresh ones took their place
    restarted = re.findall(r"local render server (\d) recycled: restarted", done.stderr)
    assert sorted(set(restarted)) == ["0", "1"], done.stderr[-3000:]
    assert "not restarted" not in done.stderr and "Traceback" not in done.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BEAT_S = 15.0  # the farm's beat period here: a paused server is dropped after 3 of them


def listening_run(tmp_path: Path, val: Path, group, budget: int,
                  join: Callable[[str, int], subprocess.Popen]) -> tuple[Path, str]:
    """`autosim optimize --listen` on a free loopback port; join(address, n) starts a
    joiner with n = 0 at once and n = 1 once the first iteration is logged. The first is
    paused (SIGSTOP to its group) until the second has joined, so the second joins mid-run
    however slowly it starts: a run of a few seconds could otherwise end first. Returns the
    run folder and the optimizer's stderr once it has finished."""
    address, run = f"127.0.0.1:{free_port()}", tmp_path / "run"
    log = tmp_path / "optimize.log"
    opt = group([*CLI, "optimize", *SMALL, "--val", str(val), "--budget-images", str(budget),
                 "--out", str(run), "--listen", f"tcp://{address}", "--timeout", "60",
                 "--heartbeat-s", str(BEAT_S)], log)
    first = join(address, 0)
    deadline = time.monotonic() + 120
    while not metrics(run):
        assert opt.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    joins = log.read_text().count(" joined")
    os.killpg(first.pid, signal.SIGSTOP)
    try:
        join(address, 1)
        deadline = time.monotonic() + 2 * BEAT_S  # within the 3 beats that drop the first
        while log.read_text().count(" joined") == joins:
            assert opt.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
    finally:
        os.killpg(first.pid, signal.SIGCONT)
    assert opt.wait(timeout=180) == 0, log.read_text()[-3000:]
    return run, log.read_text()


def images_of(log: Path) -> int:
    """What a stopped server says it rendered (serve.py's last line)."""
    found = re.findall(r"stopped after (\d+) images", log.read_text())
    assert found, log.read_text()[-2000:]
    return int(found[-1])


def test_listen_with_two_serve_processes_one_joining_late(tmp_path, val, group) -> None:
    servers = []

    def join(address: str, n: int) -> subprocess.Popen:
        servers.append(group([*CLI, "serve", "--scene", "clevr", "--connect",
                              f"tcp://{address}", "--threads", "1", "--heartbeat-s",
                              str(BEAT_S)], tmp_path / f"s{n}.log"))
        return servers[-1]

    run, err = listening_run(tmp_path, val, group, 32, join)
    assert_complete(run, 32)
    assert len(re.findall(r"render server \w+ joined", err)) == 2, err[-3000:]
    assert "dropped" not in err
    for proc in servers:
        stop(proc)
    early, late = (images_of(tmp_path / f"s{n}.log") for n in (0, 1))
    assert early >= 4 and late > 0 and early + late == 32  # 4: the first iteration's


def test_slurm_array_body_runs_with_bash_for_two_local_tasks(tmp_path, val, group) -> None:
    """Task 0 runs the whole sbatch script (its #SBATCH lines are comments to bash), task 1
    the body it calls; both recycle (MAX_RENDERS) inside the body's loop."""
    tasks = []

    def join(address: str, n: int) -> subprocess.Popen:
        script = ("render.sbatch", "render-server.sh")[n]
        tasks.append(group(["bash", str(ROOT / "examples" / "farm" / script)],
                           tmp_path / f"task{n}.log", {
                               "SLURM_ARRAY_JOB_ID": "4242", "SLURM_ARRAY_TASK_ID": str(n),
                               "SLURM_CPUS_PER_TASK": "1", "OPTIMIZER": address,
                               "AUTOSIM": str(ROOT), "AUTOSIM_PYTHON": sys.executable,
                               "MAX_RENDERS": "8", "HEARTBEAT_S": str(BEAT_S)}))
        return tasks[-1]

    run, err = listening_run(tmp_path, val, group, 40, join)
    assert_complete(run, 40)
    for proc in tasks:
        assert proc.poll() is None  # a recycled server was followed by a fresh one
        stop(proc)
    logs = [(tmp_path / f"task{n}.log").read_text() for n in (0, 1)]
    per_task = [[int(x) for x in re.findall(r"stopped after (\d+) images", t)] for t in logs]
    for n, text in enumerate(logs):
        assert f"array task {n} of job 4242: joining tcp://127.0.0.1:" in text, text[-2000:]
        assert sum(per_task[n]) > 0, text[-2000:]  # both tasks rendered
    # every image rendered once, by a process of either task; 40 images at 8 per process
    assert sum(map(sum, per_task)) == 40, per_task
    assert sum(t.count("recycling: 8 images rendered") for t in logs) >= 3, per_task
    worked = sum(1 for lives in per_task for images in lives if images)
    assert err.count(" joined") >= worked >= 4, err[-3000:]  # each process joins anew


def test_the_array_body_ends_with_a_server_that_fails(tmp_path) -> None:
    """Only exit 0 (recycled) starts a fresh server: a failing one ends the task with its
    status, so Slurm records the failure instead of a loop restarting it for hours."""
    done = subprocess.run(["bash", str(ROOT / "examples" / "farm" / "render-server.sh")],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={**env(), "OPTIMIZER": "127.0.0.1:9", "SCENE": "no-such-scene",
                               "AUTOSIM_PYTHON": sys.executable, "AUTOSIM": str(ROOT)})
    assert done.returncode == 2, done.stderr
    assert "invalid choice: 'no-such-scene'" in done.stderr
    assert done.stderr.count("server exited with 2: task ends") == 1
    missing = subprocess.run(["bash", str(ROOT / "examples" / "farm" / "render-server.sh")],
                             capture_output=True, text=True, timeout=60,
                             env={k: v for k, v in env().items() if k != "OPTIMIZER"})
    assert missing.returncode != 0 and "set OPTIMIZER=host:port" in missing.stderr
