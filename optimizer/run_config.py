"""What an `autosim optimize` run is, typed and persisted as config.json in its folder, so a
resume is the same run: the scene, method and options, the data, and where images came from.

On resume, simulator flags given again (new --server addresses after a farm moved, more
--local-servers) replace the saved ones; everything else is the saved run's.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from optimizer.errors import CliError
from optimizer.run import CONFIG
from optimizer.scene_ref import SceneRef
from optimizer.session import SimulatorOptions


@dataclasses.dataclass
class RunConfig:
    scene: str
    method: str
    options: dict[str, Any]
    budget_images: int
    out: str
    task: str | None = None          # None: the scene's own (a .blend's comes with hello)
    blend: str | None = None
    val: str | None = None
    seed: int = 0
    device: str = "auto"
    params: str | None = None
    fix: list[str] = dataclasses.field(default_factory=list)
    model: str | None = None
    freeze: int = 0
    simulator: SimulatorOptions = dataclasses.field(default_factory=SimulatorOptions)

    def __post_init__(self) -> None:
        if self.budget_images < 1:
            raise CliError(f"--budget-images must be at least 1, got {self.budget_images}")

    @property
    def ref(self) -> SceneRef:
        return SceneRef(self.scene, self.blend, self.task)

    @property
    def label(self) -> str:
        return self.ref.label

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["simulator"] = self.simulator.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str = CONFIG) -> RunConfig:
        """A saved config; unknown keys and wrong types are one CliError naming the file."""
        if not isinstance(d, dict):
            raise CliError(f"{where}: expected an object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise CliError(f"{where}: unknown key(s) {', '.join(unknown)}")
        try:
            sim = SimulatorOptions.from_dict(d.get("simulator") or {})
            return cls(**{**d, "simulator": sim})
        except TypeError as exc:
            raise CliError(f"{where}: {exc}") from None

    def save(self) -> None:
        out = Path(self.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, run_dir: str | Path) -> RunConfig:
        path = Path(run_dir) / CONFIG
        try:
            d = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CliError(f"--resume {run_dir}: cannot read {CONFIG} ({exc})") from exc
        config = cls.from_dict(d, str(path))
        config.out = str(run_dir)
        return config
