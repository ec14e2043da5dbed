"""COCO instance annotations (boxes + compressed RLE masks) from an instance-id image.

What Detectron2, MMDetection, BlenderProc's users and pycocotools read: one
`annotations.json` with `images`, `annotations` and `categories`. Categories are autosim's class
ids (1..C; 0 is background and not a category). Masks are COCO's compressed RLE strings
(column-major runs, pycocotools' `rleToString`), written with numpy only: this module also runs
inside Blender's Python.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np


def rle_counts(mask: np.ndarray) -> list[int]:
    """Run lengths of a binary (H, W) mask in column-major order, starting with zeros."""
    flat = np.asarray(mask, bool).ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.r_[0, change, flat.size]
    counts = np.diff(edges).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return counts


def rle_string(counts: Sequence[int]) -> str:
    """COCO's compressed RLE: counts as 5-bit groups (offset by 48), each after the second
    stored as the difference to the count two before."""
    out = []
    for i, c in enumerate(counts):
        x = int(c) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5
            more = (x != -1) if ch & 0x10 else (x != 0)
            if more:
                ch |= 0x20
            out.append(chr(ch + 48))
    return "".join(out)


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """{"size": [H, W], "counts": "..."}: a COCO RLE segmentation."""
    h, w = np.asarray(mask).shape
    return {"size": [int(h), int(w)], "counts": rle_string(rle_counts(mask))}


def item_annotations(instances: np.ndarray, boxes: np.ndarray,
                     classes: np.ndarray) -> list[dict[str, Any]]:
    """One annotation per labelled object in the image (ordered by instance id, as the
    renderer orders its boxes): bbox [x, y, w, h], area in pixels, category id, RLE mask."""
    inst = np.asarray(instances)
    ids = [int(v) for v in np.unique(inst) if v != 0]
    boxes, classes = np.asarray(boxes, float).reshape(-1, 4), np.asarray(classes, int)
    if len(ids) != len(classes):
        raise ValueError(f"{len(ids)} instances in the image but {len(classes)} boxes")
    out = []
    for k, v in enumerate(ids):
        m = inst == v
        x0, y0, x1, y1 = boxes[k]
        out.append({"category_id": int(classes[k]), "iscrowd": 0, "area": int(m.sum()),
                    "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                    "segmentation": encode_mask(m)})
    return out


def assemble(items: Iterable[Mapping[str, Any]], class_names: Sequence[str]) -> dict[str, Any]:
    """The annotations.json object from per-image records {file, width, height, annotations}."""
    images, annotations = [], []
    for image_id, item in enumerate(items, start=1):
        images.append({"id": image_id, "file_name": f"{item['file']}.png",
                       "width": int(item["width"]), "height": int(item["height"])})
        for ann in item["annotations"]:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **ann})
    categories = [{"id": i, "name": str(n), "supercategory": "object"}
                  for i, n in enumerate(class_names) if i > 0]
    return {"info": {"description": "rendered by autosim"}, "images": images,
            "annotations": annotations, "categories": categories}


def write(path: Any, items: Iterable[Mapping[str, Any]], class_names: Sequence[str]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(assemble(items, class_names), fh, separators=(",", ":"))
