"""Start and stop local bpy render servers: the embedded default, so a user needs nothing running.

Each server is `python -m blender_addon.serve` in its own process (bpy is one scene per
process); it binds an ephemeral 127.0.0.1 port and reports it on its READY line. Servers are
stopped on exit, Ctrl-C or error (context manager + atexit), never left behind; a SIGKILLed
parent runs neither, so each server also stops itself once its parent is gone
(`--exit-with-parent`).
"""

from __future__ import annotations

import atexit
import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from pathlib import Path

READY = "AUTOSIM_READY"
_ROOT = Path(__file__).resolve().parents[2]


class ServerStartError(RuntimeError):
    pass


class LocalServers:
    def __init__(self, scene: str, count: int = 1, *, threads: int = 0, params: str | None = None,
                 startup_timeout_s: float = 180.0, log_dir: str | None = None,
                 blend: str | None = None, curve: str | None = None) -> None:
        if count < 1:
            raise ValueError(f"need at least one local render server, got {count}")
        self.scene = scene
        self.blend = None if blend is None else str(Path(blend).resolve())
        self.curve = None if curve is None else str(Path(curve).resolve())
        self.count = count
        self.threads = threads
        self.params = params
        self.startup_timeout_s = startup_timeout_s
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="autosim-servers-"))
        self.procs: list[subprocess.Popen] = []
        self.endpoints: list[str] = []
        self._logs: list = []

    def __enter__(self) -> list[str]:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
        env.setdefault("BLENDER_USER_RESOURCES", str(self.log_dir / "blender-user"))
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self) -> list[str]:
        atexit.register(self.stop)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for i in range(self.count):
            what = ["--blend", self.blend] if self.blend else ["--scene", self.scene]
            cmd = [sys.executable, "-m", "blender_addon.serve", *what,
                   "--bind", "tcp://127.0.0.1:*", "--threads", str(self.threads),
                   "--exit-with-parent"]
            if self.params:
                cmd += ["--params", self.params]
            if self.curve:
                cmd += ["--curve", self.curve]
            log = open(self.log_dir / f"server-{i}.log", "w", encoding="utf-8")  # noqa: SIM115
            self._logs.append(log)
            self.procs.append(subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=log, env=self._env(), text=True, cwd=str(_ROOT),
            ))
        try:
            self.endpoints = [self._wait_ready(i, p) for i, p in enumerate(self.procs)]
        except BaseException:
            self.stop()
            raise
        return list(self.endpoints)

    def _wait_ready(self, index: int, proc: subprocess.Popen) -> str:
        deadline = time.monotonic() + self.startup_timeout_s
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        fd, pending = proc.stdout.fileno(), b""
        try:  # raw reads: a buffered readline could hide the READY line in its buffer
            while time.monotonic() < deadline:
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

    def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate every server (SIGTERM, then SIGKILL after timeout_s)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
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
