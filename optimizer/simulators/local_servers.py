"""Start and stop local bpy render servers: the embedded default, so a user needs nothing running.

Each server is `python -m blender_addon.serve` in its own process (bpy is one scene per
process); it binds an ephemeral 127.0.0.1 port and reports it on its READY line. Servers are
stopped on exit, Ctrl-C or error (context manager + atexit), never left behind; a SIGKILLed
parent runs neither, so each server also stops itself once its parent is gone
(`--exit-with-parent`). Their logs go to a temporary folder that is removed on a clean stop
and kept (its path in the message) when a server failed to start or crashed, or the run
failed (not for Ctrl-C or a user's mistake).

With `connect` the servers join a listening optimizer (FarmSimulator) instead, and a
supervisor thread replaces one that exits, recycled by `max_renders` or crashed: the fresh
process joins like any other, so a run keeps its number of servers. (Bound servers are not
replaced: RemoteSimulator does not take a server into a running optimisation.)
"""

from __future__ import annotations

import atexit
import json
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from optimizer.errors import CliError

READY = "AUTOSIM_READY"
_ROOT = Path(__file__).resolve().parents[2]


class ServerStartError(RuntimeError):
    pass


class LocalServers:
    def __init__(self, scene: str, count: int = 1, *, threads: int = 0, params: str | None = None,
                 startup_timeout_s: float = 180.0, log_dir: str | None = None,
                 blend: str | None = None, curve: str | None = None,
                 connect: str | None = None, max_renders: int = 0, heartbeat_s: float = 2.0,
                 log: Callable[[str], None] | None = None) -> None:
        if count < 1:
            raise ValueError(f"need at least one local render server, got {count}")
        self.scene = scene
        self.blend = None if blend is None else str(Path(blend).resolve())
        self.curve = None if curve is None else str(Path(curve).resolve())
        self.count = count
        self.threads = threads
        self.params = params
        self.connect, self.max_renders, self.heartbeat_s = connect, max_renders, heartbeat_s
        self.startup_timeout_s = startup_timeout_s
        self._own_dir = log_dir is None  # a temporary folder: removed unless it explains a failure
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="autosim-servers-"))
        self.failed = False  # a server failed to start or exited unasked: keep the logs
        self.log = log or (lambda _msg: None)
        self.procs: list[subprocess.Popen] = []
        self.endpoints: list[str] = []
        self.restarts = 0  # servers replaced by the supervisor (connect mode)
        self.given_up: dict[int, str] = {}  # slot -> why it is no longer replaced
        self._logs: list = []
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

    def __enter__(self) -> list[str]:
        return self.start()

    def __exit__(self, exc_type, *_exc) -> None:
        # a user's mistake or Ctrl-C is not the servers' to explain; any other error may be
        self.stop(keep_logs=exc_type is not None and
                  not issubclass(exc_type, (KeyboardInterrupt, CliError)))

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
        env.setdefault("BLENDER_USER_RESOURCES", str(self.log_dir / "blender-user"))
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _command(self) -> list[str]:
        what = ["--blend", self.blend] if self.blend else ["--scene", self.scene]
        where = (["--connect", self.connect, "--heartbeat-s", str(self.heartbeat_s)]
                 if self.connect else ["--bind", "tcp://127.0.0.1:*"])
        cmd = [sys.executable, "-m", "blender_addon.serve", *what, *where,
               "--threads", str(self.threads), "--exit-with-parent"]
        if self.max_renders:
            cmd += ["--max-renders", str(self.max_renders)]
        if self.params:
            cmd += ["--params", self.params]
        if self.curve:
            cmd += ["--curve", self.curve]
        return cmd

    def _spawn(self, index: int) -> subprocess.Popen:
        """Start the server of slot `index`; a replacement appends to the slot's log."""
        log = open(self.log_dir / f"server-{index}.log", "a" if index < len(self._logs)  # noqa: SIM115
                   else "w", encoding="utf-8")
        proc = subprocess.Popen(self._command(), stdout=subprocess.PIPE, stderr=log,
                                env=self._env(), text=True, cwd=str(_ROOT))
        if index < len(self._logs):
            self._logs[index].close()
            self._logs[index] = log
        else:
            self._logs.append(log)
        return proc

    def start(self) -> list[str]:
        atexit.register(self.stop)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._stopping.clear()
        for i in range(self.count):
            self.procs.append(self._spawn(i))
        try:
            self.endpoints = [self._wait_ready(i, p) for i, p in enumerate(self.procs)]
        except BaseException:
            self.stop()
            raise
        if self.connect:
            self._supervisor = threading.Thread(target=self._supervise, daemon=True,
                                                name="autosim-local-servers")
            self._supervisor.start()
        return list(self.endpoints)

    def _supervise(self, crash_window_s: float = 10.0, tries: int = 3) -> None:
        """Replace servers that exit. One that does not start, or crashes within
        crash_window_s of starting, counts as a failure; after `tries` in a row the slot is
        given up (a broken setup is not restarted forever)."""
        failures = [0] * self.count
        ready_at = [time.monotonic()] * self.count
        while not self._stopping.wait(0.2):
            for i, proc in enumerate(self.procs):
                code = proc.poll()
                if code is None or i in self.given_up:
                    continue
                self.failed = self.failed or code != 0
                quick = code != 0 and time.monotonic() - ready_at[i] < crash_window_s
                failures[i] = failures[i] + 1 if quick else 0
                why = "recycled" if code == 0 else f"exited with {code}"
                if failures[i] >= tries:
                    self.given_up[i] = f"{why} {tries} times in a row within {crash_window_s:g} s"
                    self.log(f"local render server {i} {self.given_up[i]}: not restarted; "
                             f"its log {self.log_dir / f'server-{i}.log'}")
                    continue
                proc.stdout.close()
                self.procs[i] = self._spawn(i)
                try:
                    self._wait_ready(i, self.procs[i])
                except ServerStartError:
                    if self._stopping.is_set():
                        return
                    self.procs[i].kill()  # seen exiting on the next round: a failure
                    self.procs[i].wait()
                else:
                    self.restarts += 1
                    self.log(f"local render server {i} {why}: restarted")
                ready_at[i] = time.monotonic()

    def _wait_ready(self, index: int, proc: subprocess.Popen) -> str:
        deadline = time.monotonic() + self.startup_timeout_s
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        fd, pending = proc.stdout.fileno(), b""
        try:  # raw reads: a buffered readline could hide the READY line in its buffer
            while time.monotonic() < deadline and not self._stopping.is_set():
                if not sel.select(timeout=min(1.0, deadline - time.monotonic())):
                    if proc.poll() is not None:
                        break
                    continue
                data = os.read(fd, 65536)
                if not data:
                    break
                *lines, pending = (pending + data).split(b"\n")
                for line in lines:
                    text = line.decode("utf-8", "replace")
                    if text.startswith(READY):
                        return json.loads(text[len(READY):])["endpoint"]
        finally:
            sel.close()
        self.failed = self.failed or not self._stopping.is_set()
        tail = self._log_tail(index)
        state = f"exited with {proc.returncode}" if proc.poll() is not None else "did not start"
        raise ServerStartError(
            f"local render server {index} ({self.scene}) {state} within "
            f"{self.startup_timeout_s:.0f} s; its log "
            f"{self.log_dir / f'server-{index}.log'}:\n{tail}"
        )

    def _log_tail(self, index: int, lines: int = 15) -> str:
        try:
            path = self.log_dir / f"server-{index}.log"
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 10.0, keep_logs: bool = False) -> None:
        """Terminate every server (SIGTERM, then SIGKILL after timeout_s); remove the
        temporary log folder unless keep_logs or a server failed."""
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join()
            self._supervisor = None
        for proc in self.procs:
            code = proc.poll()
            if code is None:
                proc.terminate()
            elif code != 0:  # it died on its own
                self.failed = True
        end = time.monotonic() + timeout_s
        for proc in self.procs:
            try:
                proc.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()
        for log in self._logs:
            log.close()
        self.procs, self._logs = [], []
        atexit.unregister(self.stop)
        if not self._own_dir or not self.log_dir.exists():
            return
        if keep_logs or self.failed:
            self.log(f"local render server logs kept in {self.log_dir}")
        else:
            shutil.rmtree(self.log_dir, ignore_errors=True)
