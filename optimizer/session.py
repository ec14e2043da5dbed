"""Opening the simulator a command renders with: running servers (--server), servers that join
(--listen), local bpy servers started and stopped here, or the in-process toy. Every command
goes through `open_simulator`, with typed options (no argparse object below the CLI)."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from optimizer.errors import CliError
from optimizer.scene_ref import BLEND, TOY, SceneRef
from protocol.space import ParameterSpace, SpaceError


@dataclasses.dataclass(frozen=True)
class SimulatorOptions:
    """Where images come from; the defaults are the CLI's (cli/options.py)."""

    server: tuple[str, ...] = ()
    listen: str | None = None
    local_servers: int = 1
    threads: int = 0
    timeout: float = 120.0
    heartbeat_s: float = 2.0
    curve: str | None = None
    max_renders: int = 0      # local servers: recycle each after N images (0 = never)

    def __post_init__(self) -> None:
        object.__setattr__(self, "server", tuple(self.server))
        if self.local_servers < 1:
            raise CliError(f"--local-servers must be at least 1, got {self.local_servers}")
        if not self.heartbeat_s >= 0:
            raise CliError(f"--heartbeat-s must be >= 0, got {self.heartbeat_s}")
        if not self.timeout > 0:
            raise CliError(f"--timeout must be > 0, got {self.timeout}")
        if self.listen and self.server:
            raise CliError("--listen and --server: choose one (servers join a --listen "
                           "address with `autosim serve --connect`)")
        if self.heartbeat_s == 0 and (self.listen or self.max_renders):
            raise CliError("--heartbeat-s 0 (no heartbeats) cannot go with --listen or "
                           "--max-renders: servers that join are known only by their beats")
        if self.max_renders < 0:
            raise CliError(f"--max-renders must be >= 0, got {self.max_renders}")
        if self.max_renders and (self.server or self.listen):
            raise CliError("--max-renders recycles local servers; servers you start take it "
                           "themselves (`autosim serve --max-renders N`)")
        if self.curve is not None and not Path(self.curve).is_dir():
            raise CliError(f"--curve {self.curve}: no such key folder (make one with "
                           f"autosim keys)")

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "server": list(self.server)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SimulatorOptions:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise CliError(f"simulator options: unknown key(s) {', '.join(unknown)}")
        return cls(**d)

    def replace(self, **changes: Any) -> SimulatorOptions:
        """These options with the given ones (None: keep) over them."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def single_thread_for_tiny_models() -> None:
    """The toy's 2-D MLP is far too small to split across threads; with other work on the
    cores, intra-op threads just contend (measured: 10-100x slower on a loaded 2-core box)."""
    import torch

    torch.set_num_threads(1)


@contextlib.contextmanager
def open_simulator(ref: SceneRef, opts: SimulatorOptions) -> Iterator[Any]:
    """The simulator of `ref`, closed (and local servers stopped) on exit. A server serving
    another scene than the one asked for is an error, not a surprise."""
    if ref.scene == TOY:
        from optimizer.simulators.toy import ToySimulator

        single_thread_for_tiny_models()
        yield ToySimulator()
        return
    if opts.listen:
        from optimizer.simulators.farm import FarmSimulator

        print(f"autosim: waiting for render servers on {opts.listen} (`autosim serve "
              f"--connect {opts.listen}`)", file=sys.stderr, flush=True)
        try:
            farm = FarmSimulator(opts.listen, curve=opts.curve, timeout_s=opts.timeout,
                                 heartbeat_s=opts.heartbeat_s,
                                 join_timeout_s=opts.timeout, log=_stderr)
        except OSError as exc:
            raise CliError(f"--listen: {exc}") from None
        with farm as sim:
            _check_serves(ref, sim, f"joined server(s) on {opts.listen}")
            yield sim
        return
    if opts.server:
        with _remote(list(opts.server), opts) as sim:
            _check_serves(ref, sim, f"server(s) {', '.join(opts.server)}")
            yield sim
        return
    from optimizer.simulators.local_servers import LocalServers

    if opts.max_renders:
        with _local_farm(ref, opts) as sim:
            yield sim
        return
    with LocalServers(ref.scene, opts.local_servers, threads=opts.threads, blend=ref.blend,
                      curve=opts.curve, log=_stderr) as endpoints:
        with _remote(endpoints, opts) as sim:
            yield sim


@contextlib.contextmanager
def _local_farm(ref: SceneRef, opts: SimulatorOptions) -> Iterator[Any]:
    """Local servers that recycle: they join a loopback listener (protocol v2), so the one
    that replaces a recycled or crashed server is taken into the running optimisation."""
    from optimizer.simulators.farm import FarmSimulator
    from optimizer.simulators.local_servers import LocalServers

    heartbeat_s = opts.heartbeat_s
    try:
        farm = FarmSimulator("tcp://127.0.0.1:*", curve=opts.curve, timeout_s=opts.timeout,
                             heartbeat_s=heartbeat_s, min_servers=0)
    except OSError as exc:
        raise CliError(f"local servers: {exc}") from None
    servers = LocalServers(ref.scene, opts.local_servers, threads=opts.threads, blend=ref.blend,
                           curve=opts.curve, connect=farm.endpoint,
                           max_renders=opts.max_renders, heartbeat_s=heartbeat_s, log=_stderr)
    with farm as sim, servers:
        sim.wait_for_servers(opts.local_servers, servers.startup_timeout_s)
        _check_serves(ref, sim, "local servers")
        yield sim


def _stderr(msg: str) -> None:
    """Farm events (servers joining, dropped, restarted): what an operator wants to see."""
    print(f"autosim: {msg}", file=sys.stderr, flush=True)


def _check_serves(ref: SceneRef, sim: Any, who: str) -> None:
    if ref.scene != BLEND and sim.scene != ref.scene:
        raise CliError(f"{who} serve scene {sim.scene!r}, not {ref.scene!r}")


def _remote(endpoints: list[str], opts: SimulatorOptions) -> Any:
    from optimizer.simulators.remote import RemoteSimulator
    from protocol.curve import KeysError

    try:
        return RemoteSimulator(endpoints, timeout_s=opts.timeout, curve=opts.curve,
                               heartbeat_s=opts.heartbeat_s)
    except KeysError as exc:
        raise CliError(f"--curve: {exc}") from None


def load_space_file(path: str) -> ParameterSpace:
    """A parameter-space JSON file; a bad one is one readable CliError naming it."""
    try:
        return ParameterSpace.from_json(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"cannot read parameter file {path}: {exc.strerror}") from exc
    except SpaceError as exc:
        raise CliError(f"{path}: {exc}") from exc


def check_space_matches(space: ParameterSpace, scene_space: ParameterSpace, path: str,
                        scene: str) -> None:
    if space.names != scene_space.names:
        raise CliError(f"{path}: parameters {space.names} do not match scene {scene!r}")
