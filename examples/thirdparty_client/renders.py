"""Steps: render explicit latents (as an array, then as JSON lists) and seeded samples."""

from __future__ import annotations

import math
import time

import numpy as np

from .frames import check
from .items import check_item
from .space import latent_row, sample_like_server

ALL_ARRAYS = ["image", "mask", "instances", "boxes"]


def explicit_latents(space, count):
    """count latent rows built by hand in the documented layout: objects on a circle."""
    rows = []
    for k in range(count):
        vals = {}
        for p in space["params"]:
            name = p["name"]
            if p["kind"] == "normal":
                lo, hi = np.asarray(p["low"], float), np.asarray(p["high"], float)
                if name.startswith("obj") and name.endswith("_xy"):
                    slot = int(name[3])
                    ang = 2 * math.pi * (slot / 5 + k / 7)
                    vals[name] = [1.8 * math.cos(ang), 1.8 * math.sin(ang)]
                elif name == "bounces":
                    vals[name] = [1.0]
                else:
                    vals[name] = list(lo + (0.3 + 0.1 * k) * (hi - lo))
            elif p["kind"] == "categorical":
                ch = p["choices"]
                vals[name] = ch[0] if name == "samples" else ch[(k + 1) % len(ch)]
            else:
                vals[name] = bool(k % 2)
        rows.append(latent_row(space, vals))
    return np.asarray(rows, dtype=np.float64)


def _check_items(s, items, *, width, height, returned, seed=None, sent=None):
    for k, item in enumerate(items):
        check_item(
            item,
            index=k,
            request_seed=seed,
            generation=s.gen,
            width=width,
            height=height,
            returned=returned,
            classes=s.classes,
            sent_latent=None if sent is None else sent[k],
            space=s.space,
        )


def render_explicit(s):
    count, size, L = s.count, s.size, s.L
    s.latents = latents = explicit_latents(s.space, count)
    check(latents.shape == (count, L), "latent shape")
    t0 = time.monotonic()
    rr = s.conn.ok(
        "render",
        {"latents": latents, "width": size, "height": size, "return": ALL_ARRAYS,
         "generation": s.gen},
    )
    wall = time.monotonic() - t0
    check(rr["generation"] == s.gen, "render generation")
    items = rr["items"]
    check(len(items) == count, f"{len(items)} items for {count} latents")
    _check_items(s, items, width=size, height=size, returned=ALL_ARRAYS, sent=latents)
    ids = [it["item_id"] for it in items]
    check(len(set(ids)) == len(ids), f"item ids not unique: {ids}")
    s.item_ids += ids
    s.log(
        f"render: {count} explicit latents (array<float64>[{count},{L}]) at {size}x{size} "
        f"in {wall:.2f} s, generation {rr['generation']}"
    )
    for it in items:
        _log_item(s, it)
    s.summary["items"] = [
        {
            "item_id": it["item_id"],
            "index": it["index"],
            "image_shape": it["image"].shape,
            "mask_shape": it["mask"].shape,
            "n_boxes": int(it["boxes"].shape[0]),
            "latent_named": it["latent_named"],
        }
        for it in items
    ]
    s.summary["render_wall_s"] = wall


def _log_item(s, it):
    classes = s.classes
    ncls = {classes[c]: int((it["mask"] == c).sum()) for c in np.unique(it["mask"])}
    s.log(
        f"  item {it['index']} id={it['item_id']} seed={it['seed']} "
        f"render_s={it['render_s']:.3f} extract_s={it['extract_s']:.4f} "
        f"image mean={it['image'].mean():.1f} mask px={ncls} "
        f"instances={sorted(int(i) for i in np.unique(it['instances']) if i)} "
        f"boxes={it['boxes'].round(1).tolist()} classes={it['classes'].tolist()} "
        f"num_objects={it['latent_named'].get('num_objects')!r}"
    )


def render_lists(s):
    """List-of-lists latents, only a mask back."""
    rr = s.conn.ok(
        "render", {"latents": s.latents[:2].tolist(), "width": 8, "height": 6, "return": ["mask"]}
    )
    check(len(rr["items"]) == 2, "list latents: item count")
    _check_items(s, rr["items"], width=8, height=6, returned=["mask"], sent=s.latents)
    s.item_ids += [it["item_id"] for it in rr["items"]]
    s.log(
        "render: latents as JSON lists, return=['mask'], 8x6 -> only masks "
        f"{[it['mask'].shape for it in rr['items']]}"
    )


def render_seeded(s):
    """n + seed, compared with the doc's seeded-sampling recipe."""
    rr = s.conn.ok("render", {"n": 3, "seed": 1234, "width": 8, "height": 8, "return": ["boxes"]})
    mine = sample_like_server(s.space, s.psi, 3, 1234)
    _check_items(s, rr["items"], width=8, height=8, returned=["boxes"], seed=1234)
    got = np.asarray([it["latent"] for it in rr["items"]])
    same = bool(np.allclose(got, mine, rtol=0, atol=1e-9))
    s.summary["seeded_matches_doc"] = same
    s.log(
        f"render: n=3 seed=1234 -> latents {'MATCH' if same else 'DIFFER FROM'} the doc's "
        "seeded-sampling recipe"
    )
    if not same:
        s.log(f"  server row 0: {np.round(got[0], 4).tolist()}")
        s.log(f"  mine   row 0: {np.round(mine[0], 4).tolist()}")
    s.item_ids += [it["item_id"] for it in rr["items"]]
    check(len(set(s.item_ids)) == len(s.item_ids), "item ids repeat across requests")
