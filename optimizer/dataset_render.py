"""Render a training set from a learned (or any) space: at scale, resumable, in common formats.

Item i's latent comes from its own generator, default_rng([seed, i]), so the dataset does not
depend on chunking, on the number of servers or on interruptions: `--resume` renders only the
items whose lines are missing and the folder ends byte-identical to an uninterrupted render.
Chunks are pipelined over every server (RemoteSimulator.render_stream): servers render the
next chunks while this process writes PNGs. Formats: `autosim` (images, class masks, YOLO
labels), `yolo` (no masks), `coco` (annotations.json with boxes and RLE instance masks).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from optimizer.errors import CliError
from protocol.dataset import DatasetWriter, data_yaml
from protocol.space import ParameterSpace

FORMATS = ("autosim", "yolo", "coco")
MANIFEST = "render.json"
SPLITS = ("train", "val")


def item_latents(space: ParameterSpace, seed: int, indices: range) -> np.ndarray:
    """The latents of items `indices`: each from default_rng([seed, index])."""
    rows = [space.sample(1, np.random.default_rng([int(seed), int(i)])) for i in indices]
    return np.concatenate(rows) if rows else np.zeros((0, space.latent_dim))


def _manifest(space: ParameterSpace, n: int, seed: int, size: int, fmt: str,
              val_fraction: float) -> dict[str, Any]:
    return {"n": n, "seed": seed, "size": size, "format": fmt, "val_fraction": val_fraction,
            "space": space.to_dict()}


def _check_folder(out: Path, manifest: dict[str, Any], resume: bool) -> None:
    """A fresh render needs an empty folder; a resumed one the same settings as before."""
    path = out / MANIFEST
    if resume:
        if not path.exists():
            raise CliError(f"--resume {out}: no {MANIFEST} there (nothing to resume)")
        old = json.loads(path.read_text(encoding="utf-8"))
        diff = [k for k in manifest if old.get(k) != manifest[k]]
        if diff:
            raise CliError(f"--resume {out}: the earlier render used other settings "
                           f"({', '.join(diff)}); use the same --params/--n/--seed/--size/"
                           f"--format/--val-fraction, or another --out")
        return
    if out.exists() and any(out.iterdir()):
        raise CliError(f"{out} is not empty: use --resume {out} to continue that render, "
                       f"or another --out")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=1), encoding="utf-8")


def render_dataset(sim: Any, space: ParameterSpace, n: int, seed: int, size: int, out: Path,
                   chunk: int = 16, masks: bool = True, *, fmt: str | None = None,
                   resume: bool = False, progress: bool = False, depth: int = 2,
                   val_fraction: float = 0.0, manifest: bool = False) -> dict[str, Any]:
    """Render n items of `space` into `out`; returns a summary (n, wall_s, images_per_s, ...).

    manifest=False (the bench's and demo's own sets) writes into `out` as it is; the CLI's
    renders (manifest=True) keep render.json to refuse a non-empty folder and to resume."""
    fmt = fmt or ("autosim" if masks else "yolo")
    if fmt not in FORMATS:
        raise CliError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    if not 0.0 <= val_fraction < 1.0:
        raise CliError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    out = Path(out)
    if manifest:
        _check_folder(out, _manifest(space, n, seed, size, fmt, val_fraction), resume)
    n_val = int(round(n * val_fraction))
    parts = [(out / "train", n - n_val), (out / "val", n_val)] if n_val else [(out, n)]
    writers = [DatasetWriter(root, sim.classes, space.to_dict(), masks=fmt == "autosim",
                             coco=fmt == "coco") for root, _ in parts]
    if n_val:
        (out / "data.yaml").write_text(
            data_yaml(out, sim.classes).replace("train: images", "train: train/images")
            .replace("val: images", "val: val/images"), "utf-8")
    done = sum(min(w.count, m) for w, (_, m) in zip(writers, parts))
    if writers[0].count < parts[0][1] and len(writers) > 1 and writers[1].count:
        raise CliError(f"{out}: the val part is ahead of the train part; render again")
    class_pixels = np.zeros(len(sim.classes), np.int64)
    started = time.perf_counter()
    render_s = 0.0
    from tqdm import tqdm

    bar = tqdm(total=n, initial=done, unit="img", disable=not progress, dynamic_ncols=True,
               desc=f"render {out.name}")
    try:
        for start, batch in _batches(sim, space, seed, done, n, chunk, size, depth):
            render_s += batch.render_s
            for k in range(len(batch)):
                index = start + k
                writer = writers[0] if index < parts[0][1] else writers[1]
                writer.add(batch.images[k], batch.masks[k], batch.boxes[k], batch.classes[k],
                           {"seed": seed, "index": index,
                            "latent": batch.latents[k].tolist(),
                            "latent_named": space.unpack_latent(batch.latents[k])},
                           instances=batch.instances[k])
                class_pixels += np.bincount(batch.masks[k].ravel(),
                                            minlength=len(sim.classes))[: len(sim.classes)]
            bar.update(len(batch))
    finally:
        bar.close()
        for w in writers:
            w.close()
    wall = time.perf_counter() - started
    rendered = n - done
    return {"n": n, "rendered": rendered, "resumed_from": done, "wall_s": wall,
            "render_s": render_s, "images_per_s": rendered / max(wall, 1e-9),
            "class_fraction": (class_pixels / max(class_pixels.sum(), 1)).tolist()}


def _batches(sim: Any, space: ParameterSpace, seed: int, done: int, n: int, chunk: int,
             size: int, depth: int) -> Iterator[tuple[int, Any]]:
    starts = list(range(done, n, chunk))
    chunks = (item_latents(space, seed, range(s, min(s + chunk, n))) for s in starts)
    stream = getattr(sim, "render_stream", None)
    if stream is None:  # a simulator without pipelining (tests' fakes)
        batches = (sim.render(c, size, size) for c in chunks)
    else:
        batches = stream(chunks, size, size, depth=depth)
    yield from zip(starts, batches)
