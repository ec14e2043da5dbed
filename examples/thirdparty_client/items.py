"""What a render reply's item must hold (section 4, "render"): fields, latents, arrays."""

from __future__ import annotations

import numpy as np

from .frames import check
from .space import latent_size, named_from_row

ARRAYS = {"image", "mask", "instances", "boxes", "classes"}


def check_item(
    item,
    *,
    index,
    request_seed,
    generation,
    width,
    height,
    returned,
    classes,
    sent_latent=None,
    space=None,
):
    where = f"item {index}"
    _check_fields(item, where, index, request_seed, generation, width, height)
    _check_latent(item, where, space, sent_latent)
    want = set(returned) | ({"classes"} if "boxes" in returned else set())
    present = {k for k in ARRAYS if k in item}
    check(present == want, f"{where}: arrays {sorted(present)}, asked for {sorted(want)}")
    _check_arrays(item, where, height, width, classes)
    if "boxes" in item:
        _check_boxes(item, where, classes)


def _check_fields(item, where, index, request_seed, generation, width, height):
    check(isinstance(item["item_id"], str) and item["item_id"], f"{where}: item_id")
    check(item["index"] == index, f"{where}: index {item['index']}")
    check(item["seed"] == request_seed, f"{where}: seed {item['seed']!r} != {request_seed!r}")
    check(item["generation"] == generation, f"{where}: generation {item['generation']}")
    check(item["width"] == width and item["height"] == height, f"{where}: size")
    for key in ("render_s", "extract_s"):
        check(isinstance(item[key], (int, float)) and item[key] >= 0, f"{where}: {key}")


def _check_latent(item, where, space, sent_latent):
    latent = item["latent"]
    check(isinstance(latent, list) and len(latent) == latent_size(space), f"{where}: latent size")
    if sent_latent is not None:
        check(
            np.allclose(latent, sent_latent, rtol=0, atol=1e-12),
            f"{where}: latent {latent} != sent {list(sent_latent)}",
        )
    check(
        item["latent_named"] == named_from_row(space, latent),
        f"{where}: latent_named {item['latent_named']} != {named_from_row(space, latent)}",
    )


def _check_arrays(item, where, H, W, classes):
    if "image" in item:
        img = item["image"]
        check(
            img.dtype == np.uint8 and img.shape == (H, W, 3),
            f"{where}: image {img.dtype}{img.shape}",
        )
    if "mask" in item:
        m = item["mask"]
        check(m.dtype == np.uint8 and m.shape == (H, W), f"{where}: mask {m.dtype}{m.shape}")
        check(
            int(m.max(initial=0)) < len(classes), f"{where}: mask class {m.max()} >= {len(classes)}"
        )
    if "instances" in item:
        ins = item["instances"]
        check(
            ins.dtype == np.uint16 and ins.shape == (H, W),
            f"{where}: instances {ins.dtype}{ins.shape}",
        )


def _check_boxes(item, where, classes):
    b, c = item["boxes"], item["classes"]
    check(
        b.dtype == np.float32 and b.ndim == 2 and b.shape[1] == 4,
        f"{where}: boxes {b.dtype}{b.shape}",
    )
    check(c.dtype == np.int32 and c.shape == (b.shape[0],), f"{where}: classes {c.dtype}{c.shape}")
    check(((c >= 1) & (c < len(classes))).all(), f"{where}: box classes {c}")
    if "instances" not in item:
        return
    ids = [int(i) for i in np.unique(item["instances"]) if i != 0]
    check(len(ids) == b.shape[0], f"{where}: {len(ids)} instance ids but {b.shape[0]} boxes")
    for j, iid in enumerate(ids):
        ys, xs = np.nonzero(item["instances"] == iid)
        tight = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        check(np.allclose(b[j], tight), f"{where}: box {j} {b[j].tolist()} vs pixels {tight}")
        if "mask" in item:
            cls = np.unique(item["mask"][item["instances"] == iid])
            check(
                cls.tolist() == [int(c[j])],
                f"{where}: instance {iid} mask classes {cls} vs box class {int(c[j])}",
            )
