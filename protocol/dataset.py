"""The on-disk dataset layout, written the same way by Blender's export and `autosim render`.

    DIR/images/000000.png      sRGB uint8
    DIR/masks/000000.png       8-bit class ids (0 = background); not in the `yolo` format
    DIR/labels/000000.txt      YOLO: "class cx cy w h" normalised, class = mask id - 1
    DIR/items.jsonl            one JSON object per item: file stem, latent, seed, generation, ...
    DIR/data.yaml              ultralytics dataset file (train and val both point at images/)
    DIR/space.json             the parameter space (with psi) the items were drawn from
    DIR/annotations.json       COCO (with coco=True): boxes and RLE instance masks; its
                               per-image records accumulate in DIR/coco.jsonl first

numpy + stdlib only (it runs inside Blender's Python): PNGs are written with zlib directly.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

IMAGES, MASKS, LABELS, ITEMS, DATA_YAML, SPACE, COCO, COCO_ITEMS = (
    "images", "masks", "labels", "items.jsonl", "data.yaml", "space.json", "annotations.json",
    "coco.jsonl")


def complete_lines(path: Path) -> int:
    """Whole lines in a JSON-lines file; a partial last line (an interrupted write) is cut."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end != len(data):
        with open(path, "r+b") as fh:
            fh.truncate(end)
    return data[:end].count(b"\n")


def _cut_lines(path: Path, keep: int) -> None:
    if path.exists():
        lines = path.read_bytes().splitlines(keepends=True)
        if len(lines) > keep:
            path.write_bytes(b"".join(lines[:keep]))


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of an (H,W) grey or (H,W,3) RGB uint8 array (lossless, no dependencies)."""
    a = np.ascontiguousarray(array)
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
        raise ValueError(f"encode_png needs uint8 (H,W) or (H,W,3), got {a.dtype} {a.shape}")
    height, width = a.shape[:2]
    color_type = 0 if a.ndim == 2 else 2
    rows = a.reshape(height, -1)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes()

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(
            ">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def yolo_lines(boxes: np.ndarray, classes: np.ndarray, width: int, height: int) -> list[str]:
    """YOLO label lines; YOLO classes start at 0, ours at 1 (0 is background)."""
    lines = []
    for (x0, y0, x1, y1), cls in zip(np.asarray(boxes, float), np.asarray(classes, int)):
        cx, cy = (x0 + x1) / 2 / width, (y0 + y1) / 2 / height
        w, h = (x1 - x0) / width, (y1 - y0) / height
        lines.append(f"{int(cls) - 1} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
    return lines


def data_yaml(root: Path, class_names: Sequence[str]) -> str:
    """ultralytics data.yaml; names exclude background."""
    names = "\n".join(f"  {i}: {json.dumps(n)}" for i, n in enumerate(class_names[1:]))
    return (f"path: {json.dumps(str(root.resolve()))}\ntrain: {IMAGES}\nval: {IMAGES}\n"
            f"names:\n{names}\n")


class DatasetWriter:
    """Append items to a dataset folder; the layout above, one call per rendered item."""

    def __init__(self, root: str | Path, class_names: Sequence[str],
                 space_dict: Mapping[str, Any] | None = None, *, masks: bool = True,
                 coco: bool = False) -> None:
        self.root = Path(root)
        self.masks = masks
        self.coco = coco
        for sub in (IMAGES, LABELS) + ((MASKS,) if masks else ()):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.class_names = list(class_names)
        (self.root / DATA_YAML).write_text(data_yaml(self.root, self.class_names), "utf-8")
        if space_dict is not None:
            (self.root / SPACE).write_text(json.dumps(space_dict, indent=1), "utf-8")
        # items already there (an earlier or interrupted render): their lines are complete,
        # so new items continue after them; an item whose line was not written is redone
        self.count = complete_lines(self.root / ITEMS)
        if coco:
            self.count = min(self.count, complete_lines(self.root / COCO_ITEMS))
            _cut_lines(self.root / COCO_ITEMS, self.count)
        _cut_lines(self.root / ITEMS, self.count)
        self._items = open(self.root / ITEMS, "a", encoding="utf-8")  # noqa: SIM115
        self._coco = open(self.root / COCO_ITEMS, "a", encoding="utf-8") if coco else None  # noqa: SIM115

    def add(self, image: np.ndarray, mask: np.ndarray, boxes: np.ndarray, classes: np.ndarray,
            meta: Mapping[str, Any], instances: np.ndarray | None = None) -> str:
        stem = f"{self.count:06d}"
        height, width = image.shape[:2]
        (self.root / IMAGES / f"{stem}.png").write_bytes(encode_png(image))
        if self.masks:
            (self.root / MASKS / f"{stem}.png").write_bytes(encode_png(np.asarray(mask, np.uint8)))
        lines = yolo_lines(boxes, classes, width, height)
        (self.root / LABELS / f"{stem}.txt").write_text("".join(f"{ln}\n" for ln in lines), "utf-8")
        if self._coco is not None:
            if instances is None:
                raise ValueError("a COCO dataset needs each item's instance-id image")
            from protocol.coco import item_annotations

            record = {"file": stem, "width": width, "height": height,
                      "annotations": item_annotations(instances, boxes, classes)}
            self._coco.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._coco.flush()
        self._items.write(json.dumps({"file": stem, **meta}) + "\n")
        self._items.flush()
        self.count += 1
        return stem

    def close(self) -> None:
        self._items.close()
        if self._coco is not None:
            from protocol import coco

            self._coco.close()
            with open(self.root / COCO_ITEMS, encoding="utf-8") as fh:
                coco.write(self.root / COCO, (json.loads(line) for line in fh),
                           self.class_names)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
