"""The Kubernetes Job and the systemd unit of docs/farm.md (examples/farm/), run as far as one
machine without Kubernetes or systemd allows: each recipe file is parsed (yaml, configparser),
its command line is run with Debian's `blender` binary, the optimizer's address, the repository's
and the keys' paths replaced by local ones, and the server joins a FarmSimulator listening with
CURVE on loopback, with keys made by `autosim keys`. The Job's Secret volume is built the way
the kubelet mounts it; the unit's Restart=always is played by a loop in this test.
The doc shows each recipe file as is (the Slurm one is run in tests/test_farm_cli_bpy.py)."""

from __future__ import annotations

import configparser
import logging
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml  # PyYAML: a dependency of ultralytics

from optimizer.simulators.farm import FarmSimulator
from protocol import curve
from tests.system_blender import system_blender_env
from tests.test_blender_binary import STARTUP_S, _blender

ROOT = Path(__file__).resolve().parents[1]
FARM = ROOT / "examples" / "farm"
SIZE = 32
# What a render server that connects (a CURVE client) reads from its --curve folder
NEEDED = {f"{curve.CLIENT}.key_secret", f"{curve.SERVER}.key"}


def fenced_blocks(markdown: str) -> list[str]:
    """The bodies of a Markdown file's ``` blocks, each with its final newline."""
    return re.findall(r"^```[\w-]*\n(.*?)^```$", markdown, flags=re.M | re.S)


@pytest.mark.parametrize("name", ["render.sbatch", "render-job.yaml", "autosim-render.service"])
def test_farm_md_shows_each_recipe_file_as_is(name) -> None:
    blocks = fenced_blocks((ROOT / "docs" / "farm.md").read_text())
    assert (FARM / name).read_text() in blocks


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("curve") / "farm-keys"
    done = subprocess.run([sys.executable, "-m", "optimizer.cli", "keys", "--out", str(out)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    return out


def test_a_connecting_server_needs_exactly_two_key_files(tmp_path, keys) -> None:
    """NEEDED is what secure_client reads: enough, and neither file can be left out."""
    import zmq

    ctx = zmq.Context()
    try:
        for left_out in [None, *sorted(NEEDED)]:
            folder = tmp_path / f"without-{left_out}"
            folder.mkdir()
            for name in NEEDED - {left_out}:
                (folder / name).write_bytes((keys / name).read_bytes())
            with ctx.socket(zmq.DEALER) as sock:
                if left_out is None:
                    curve.secure_client(sock, folder)
                else:
                    with pytest.raises(curve.KeysError, match=re.escape(left_out)):
                        curve.secure_client(sock, folder)
    finally:
        ctx.term()


@pytest.fixture
def zap():
    """The CURVE handshakes the listener's authenticator decided: (status, client key)."""
    seen: list[tuple[str, bytes]] = []

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.msg == "%s (CURVE) domain=%s client_key=%s":
                seen.append((record.args[0], record.args[2]))
            elif record.getMessage().startswith(("ALLOWED", "DENIED")):  # another mechanism
                seen.append((record.getMessage(), b""))

    logger, handler = logging.getLogger("zmq.auth"), Handler()
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield seen
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def farm(keys, zap):
    """A FarmSimulator listening with CURVE on a free loopback port; its log lines in .lines."""
    lines: list[str] = []
    sim = FarmSimulator("tcp://127.0.0.1:*", curve=str(keys), min_servers=0, timeout_s=60,
                        log=lines.append)
    sim.lines = lines
    yield sim
    sim.close()


@pytest.fixture
def start(tmp_path):
    """Start a command with the system Blender's environment, stdout and stderr to a log;
    whatever is still running is killed on the way out."""
    started: list[subprocess.Popen] = []

    def run(cmd: list[str], cwd: Path, log: Path) -> subprocess.Popen:
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                    env=system_blender_env(tmp_path / "user"))
        started.append(proc)
        return proc

    yield run
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def localise(argv: list[str], replace: dict[str, str], **flags: int) -> list[str]:
    """The recipe's command line run here: Debian's blender for its binary, each argument
    equal to or under a key of `replace` moved to its value (every key must occur), each
    flag's value set (max_renders=6: --max-renders 6)."""
    assert Path(argv[0]).name == "blender", argv
    out, unused = [_blender()], set(replace)
    for arg in argv[1:]:
        for old, new in replace.items():
            if arg == old or arg.startswith(old + "/"):
                arg = new + arg[len(old):]
                unused.discard(old)
        out.append(arg)
    assert not unused, f"{sorted(unused)} not in {argv}"
    for flag, value in flags.items():
        at = out.index("--" + flag.replace("_", "-"))
        out[at + 1] = str(value)
    return out


def joins(farm: FarmSimulator) -> list[str]:
    return re.findall(r"render server (\w+) joined", "\n".join(farm.lines))


def assert_curve_only(zap: list[tuple[str, bytes]], keys: Path, processes: int) -> None:
    """Every connection (a server's requests and its heartbeats: two a process) was a CURVE
    handshake, admitted for the client key of the `autosim keys` folder; nothing else."""
    import zmq.auth

    client, _ = zmq.auth.load_certificate(str(keys / f"{curve.CLIENT}.key"))
    assert set(zap) == {("ALLOWED", client)} and len(zap) >= 2 * processes, zap


def kubectl_secret(folder: Path) -> dict[str, bytes]:
    """What `kubectl create secret generic NAME --from-file=folder/` stores: a key per regular
    file of the folder (authorized/, a folder, is left out)."""
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def secret_volume(root: Path, secret: dict[str, bytes], items: list[dict]) -> Path:
    """The Secret volume as the kubelet writes it: the items' files in a hidden timestamped
    folder, `..data` linking to it, and a link per item path at the top."""
    data = root / "..2025_01_01_00_00_00.000000001"
    data.mkdir(parents=True)
    for item in items:
        (data / item["path"]).write_bytes(secret[item["key"]])
        (data / item["path"]).chmod(0o644)  # the volume's defaultMode
    (root / "..data").symlink_to(data.name)
    for item in items:
        (root / item["path"]).symlink_to(Path("..data") / item["path"])
    return root


@pytest.mark.blender
def test_kubernetes_job_container_joins_renders_and_completes(tmp_path, keys, farm, zap,
                                                              start) -> None:
    job = yaml.safe_load((FARM / "render-job.yaml").read_text())
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "OnFailure"  # a recycled server (exit 0) completes its pod
    (container,) = pod["containers"]
    assert "args" not in container  # `command` replaces whatever ENTRYPOINT the image has
    (mount,) = container["volumeMounts"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert mount["readOnly"] is True
    secret = kubectl_secret(keys)
    items = volume["secret"]["items"]
    assert {item["key"] for item in items} <= set(secret)  # the Secret's keys, by file name
    assert {item["path"] for item in items} == NEEDED
    mounted = secret_volume(tmp_path / "keys", secret, items)
    assert {p.name for p in mounted.iterdir() if not p.name.startswith("..")} == NEEDED

    cmd = localise(container["command"], {
        "tcp://autosim-optimizer:5560": farm.endpoint, "/autosim": str(ROOT),
        mount["mountPath"]: str(mounted)}, threads=1, max_renders=6)
    pod_log = tmp_path / "pod.log"
    proc = start(cmd, tmp_path, pod_log)
    farm.wait_for_servers(1, STARTUP_S)
    latents = farm.sample(6, np.random.default_rng(0))
    batch = farm.render(latents, SIZE, SIZE)
    assert batch.images.shape == (6, SIZE, SIZE, 3) and batch.images.std() > 1.0
    np.testing.assert_array_equal(batch.latents, latents)
    assert proc.wait(30) == 0, pod_log.read_text()[-3000:]  # the pod completes
    log = pod_log.read_text()
    assert "recycling: 6 images rendered (--max-renders 6)" in log, log[-3000:]
    assert "stopped after 6 images" in log, log[-3000:]
    assert len(joins(farm)) == 1 and not farm.workers, farm.lines
    assert_curve_only(zap, keys, processes=1)


class RestartAlways:
    """systemd's Restart=always, played here: start(life) the service, and each time it
    exits, whatever its status, start it again after restart_s, `lives` times in all.
    stop() ends the restarts; the start fixture kills what still runs."""

    def __init__(self, start, restart_s: float, lives: int) -> None:
        self.exits: list[int] = []
        self._start, self._restart_s, self._lives = start, restart_s, lives
        self._lock, self._stopped = threading.Lock(), False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for life in range(self._lives):
            if life:
                time.sleep(self._restart_s)
            with self._lock:  # after stop(), nothing is started that the fixture misses
                if self._stopped:
                    return
                proc = self._start(life)
            self.exits.append(proc.wait())

    def ended(self, timeout_s: float) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True


@pytest.mark.blender
def test_systemd_unit_restarts_into_a_fresh_server_that_joins_again(tmp_path, keys, farm, zap,
                                                                    start) -> None:
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # systemd's keys are case-sensitive
    unit.read_string((FARM / "autosim-render.service").read_text())
    service = unit["Service"]
    assert service["Restart"] == "always" and unit["Install"]["WantedBy"] == "multi-user.target"
    # systemd joins a line ending in a backslash to the next; configparser keeps the
    # continuation lines, newline-separated
    argv = shlex.split(service["ExecStart"].replace("\\\n", " "))
    assert argv[0] == "/usr/bin/blender"  # ExecStart wants an absolute path
    # User= is not played: the server runs as this test's user; WorkingDirectory= is its cwd
    assert service["User"] == "render"
    places = {"tcp://optimizer.example:5560": farm.endpoint,
              service["WorkingDirectory"]: str(ROOT), "/etc/autosim/keys": str(keys)}
    cmd = localise(argv, places, threads=1, max_renders=4)
    cwd = Path(places[service["WorkingDirectory"]])

    lives = 3  # the first start and two restarts
    unit_process = RestartAlways(lambda life: start(cmd, cwd, tmp_path / f"life{life}.log"),
                                 float(service["RestartSec"]), lives)
    try:
        farm.wait_for_servers(1, STARTUP_S)  # the scene's space comes with the first join
        rng = np.random.default_rng(1)
        chunks = [farm.sample(2, rng) for _ in range(6)]  # 12 images: 4 a life
        batches = list(farm.render_stream(chunks, SIZE, SIZE))
        assert unit_process.ended(60) and unit_process.exits == [0] * lives, unit_process.exits
    finally:
        unit_process.stop()
    for chunk, batch in zip(chunks, batches, strict=True):
        np.testing.assert_array_equal(batch.latents, chunk)
        assert batch.images.shape == (2, SIZE, SIZE, 3)
    # each restart joined under a new id, and every life rendered its share
    assert len(set(joins(farm))) == len(joins(farm)) == lives, farm.lines
    assert "\n".join(farm.lines).count("dropped: recycled (--max-renders)") == lives
    for life in range(lives):
        log = (tmp_path / f"life{life}.log").read_text()
        assert "stopped after 4 images" in log, log[-3000:]
    assert_curve_only(zap, keys, processes=lives)
