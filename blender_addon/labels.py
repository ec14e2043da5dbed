"""Label and colour maths for rendered frames (numpy only, no bpy).

`render.py` feeds these with the arrays it reads back from Blender; tests import them
without Blender.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["boxes_from_instances", "linear_to_srgb_u8", "mask_from_instances"]


def linear_to_srgb_u8(rgb_float: np.ndarray) -> np.ndarray:
    """Scene-linear float RGB -> 8-bit sRGB, as Blender writes it with the 'Standard' view
    transform and dither 0: the piecewise sRGB curve, clamp to [0, 1], round half up.
    """
    x = np.asarray(rgb_float, dtype=np.float32)
    x = np.maximum(x, 0.0)
    srgb = np.where(
        x <= np.float32(0.0031308),
        x * np.float32(12.92),
        np.float32(1.055) * np.power(x, np.float32(1.0 / 2.4)) - np.float32(0.055),
    )
    srgb = np.clip(srgb, 0.0, 1.0)
    return np.floor(srgb * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)


def mask_from_instances(instances: np.ndarray, class_of: Mapping[int, int]) -> np.ndarray:
    """Class-id mask (uint8) from an instance-id image; ids missing from class_of -> 0."""
    inst = np.asarray(instances)
    top = int(inst.max(initial=0))
    lut = np.zeros(max(top, max(class_of, default=0)) + 1, dtype=np.uint8)
    for idx, cls in class_of.items():
        if idx > 0:
            lut[idx] = cls
    return lut[inst]


def boxes_from_instances(
    instances: np.ndarray, class_of: Mapping[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Tight pixel boxes of every instance id in `class_of` that has at least one pixel.

    Returns (boxes float32 (N, 4) as x0, y0, x1, y1 with x1/y1 exclusive (max + 1),
    classes int32 (N,)), ordered by instance id. Id 0 is "no object"; ids present in the
    image but absent from `class_of` are ignored.
    """
    inst = np.asarray(instances)
    if inst.ndim != 2:
        raise ValueError(f"instances must be 2-D, got shape {inst.shape}")
    ys, xs = np.nonzero(inst)
    if ys.size == 0:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.int32)
    ids = inst[ys, xs].astype(np.int64)
    order = np.argsort(ids, kind="stable")
    ids, ys, xs = ids[order], ys[order], xs[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    uniq = ids[starts]
    boxes = np.stack(
        [
            np.minimum.reduceat(xs, starts),
            np.minimum.reduceat(ys, starts),
            np.maximum.reduceat(xs, starts) + 1,
            np.maximum.reduceat(ys, starts) + 1,
        ],
        axis=1,
    ).astype(np.float32)
    keep = np.array([int(i) in class_of for i in uniq], dtype=bool)
    classes = np.array([class_of[int(i)] for i in uniq[keep]], dtype=np.int32)
    return boxes[keep].reshape(-1, 4), classes
