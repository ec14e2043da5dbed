"""The optimisation loop around any method: budget, metrics.jsonl, checkpoints, resume, report.

Order per iteration: step -> metrics line and TensorBoard events -> checkpoint (atomic rename).
An interruption between the two leaves a metrics line the checkpoint has not caught up with:
on resume, lines from the checkpoint's iteration on are dropped and that iteration is redone,
so the log never has a gap or a duplicate (the other order loses the line of a checkpointed
iteration); TensorBoard's purge_step does the same for the event files.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optimizer.algorithms.base import Algorithm
from protocol.space import ParameterSpace

METRICS, CHECKPOINT, CONFIG, FINAL_SPACE, REPORT = (
    "metrics.jsonl", "checkpoint.pt", "config.json", "final_space.json", "report.png")


def resolve_device(name: str) -> torch.device:
    """auto: CUDA when torch sees it; asking for cuda without one is an error, not a fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda but torch sees no CUDA device (use --device auto or cpu)")
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda[:N], got {name!r}")
    return torch.device(name)


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Runner:
    def __init__(self, algo: Algorithm, out_dir: Path, budget_images: int, *,
                 target: ParameterSpace | None = None, progress: bool = True,
                 on_iteration: Callable[[dict[str, Any]], None] | None = None,
                 tensorboard: bool = True, image_every: int = 10) -> None:
        self.algo = algo
        self.out = Path(out_dir)
        self.budget_images = int(budget_images)
        self.target = target
        self.progress = progress
        self.on_iteration = on_iteration
        self.wall_before = 0.0
        self.tensorboard = tensorboard
        self.image_every = image_every
        self.out.mkdir(parents=True, exist_ok=True)

    def resume(self) -> bool:
        """Load the checkpoint if there is one; drop metric lines past it."""
        path = self.out / CHECKPOINT
        if not path.exists():
            return False
        state = torch.load(path, map_location=self.algo.ctx.device, weights_only=False)
        self.algo.load_state_dict(state["algorithm"])
        self.wall_before = float(state["wall_s"])
        kept = [m for m in read_metrics(self.out) if m["iteration"] < self.algo.iteration]
        (self.out / METRICS).write_text("".join(json.dumps(m) + "\n" for m in kept))
        self.algo.ctx.publish_fn(self.algo.psi, {})
        return True

    def _summary(self, psi: np.ndarray) -> str:
        space = self.algo.space
        if self.target is not None:
            free = space.free_mask
            return f"|psi-target| {np.linalg.norm((psi - self.target.psi)[free]):.2f}"
        return f"|psi| {np.linalg.norm(psi):.2f}"

    def run(self) -> list[dict[str, Any]]:
        from tqdm import tqdm

        algo = self.algo
        if algo.images_per_step > self.budget_images:
            raise ValueError(f"a budget of {self.budget_images} images is less than one step of "
                             f"{algo.name} ({algo.images_per_step} images)")
        started = time.perf_counter()
        log = None
        if self.tensorboard:
            from optimizer.run_log import RunLogger

            # events from an interrupted run past the checkpoint are purged (no duplicates)
            log = RunLogger(self.out, algo.ctx.task.metric_name, image_every=self.image_every,
                            purge_step=algo.budget.images + 1 if algo.iteration else None)
        bar = tqdm(total=self.budget_images, initial=min(algo.budget.images, self.budget_images),
                   unit="img", disable=not self.progress, dynamic_ncols=True, leave=True)
        records = []
        try:
            while algo.budget.images + algo.images_per_step <= self.budget_images:
                before = algo.budget.images
                record = algo.step()
                wall = self.wall_before + time.perf_counter() - started
                record = {
                    "iteration": algo.iteration - 1,
                    "images_rendered": algo.budget.images,
                    "wall_s": wall,
                    "render_s": algo.budget.render_s,
                    "train_s": algo.budget.train_s,
                    "evaluations": algo.budget.evaluations,
                    **record,
                    "psi": algo.psi.tolist(),
                }
                if self.target is not None:
                    free = algo.space.free_mask
                    record["psi_target_distance"] = float(
                        np.linalg.norm((algo.psi - self.target.psi)[free]))
                with open(self.out / METRICS, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(strict_json(record), allow_nan=False) + "\n")
                if log is not None:  # before the checkpoint, like the metrics line
                    log.log(record, algo.space, getattr(algo, "last_batch", None))
                _atomic_save({"algorithm": algo.state_dict(), "wall_s": wall},
                             self.out / CHECKPOINT)
                records.append(record)
                bar.update(algo.budget.images - before)
                bar.set_postfix_str(f"it {record['iteration']} val {record['val_metric']:.3f} "
                                    f"{self._summary(algo.psi)}")
                if self.on_iteration:
                    self.on_iteration(record)
        finally:
            bar.close()
            if log is not None:
                log.close()
        (self.out / FINAL_SPACE).write_text(algo.space.to_json())
        return records


def strict_json(value: Any) -> Any:
    """JSON has no NaN or Infinity: non-finite numbers become null (at any depth), numpy and
    torch values plain numbers and lists."""
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    if isinstance(value, np.ndarray | torch.Tensor):
        return strict_json(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
