"""A latent renders the same pixels whatever its server rendered before (docs/protocol.md 9).

Two fresh `python -m blender_addon.serve` processes (1 Cycles thread, 32 px) render the same
latents in different orders. The latents differ in the scene-level Cycles settings (the sample
count falls and rises, the bounces change) as well as in the objects (how many, which shapes):
a persistent Cycles session used to keep the samples and bounces of an earlier latent (the
scene's evaluated copy was not refreshed), to lay a render's noise out over the largest sample
count it had rendered, and to render slightly differently once it had held more objects.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from blender_addon.scenes import space_dict
from optimizer.simulators.client import RenderClient
from optimizer.simulators.local_servers import LocalServers
from protocol.space import ParameterSpace

pytestmark = [
    pytest.mark.blender,
    pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="needs the bpy module"),
]

SPACE = ParameterSpace.from_dict(space_dict("clevr"))
SIZE = 32


def _latents() -> np.ndarray:
    """A (8 spp, 2 objects), B (16, 3), C (4, 5), and D: A with only its samples (16) and
    bounces changed."""
    rows = SPACE.sample(3, np.random.default_rng(7))
    sl = SPACE.latent_slices
    spp = next(p.choices for p in SPACE.params if p.name == "samples")
    count = next(p.choices for p in SPACE.params if p.name == "num_objects")
    for row, s, n, bounces in zip(rows, "8 16 4".split(), "2 3 5".split(), (2.0, 4.0, 1.0)):
        row[sl["samples"]] = spp.index(s)
        row[sl["num_objects"]] = count.index(n)
        row[sl["bounces"]] = bounces
    d = rows[0].copy()
    d[sl["samples"]] = spp.index("16")
    d[sl["bounces"]] = 5.0
    return np.vstack([rows, d[None]])


def _render(endpoint: str, rows: np.ndarray) -> list[dict]:
    client = RenderClient(endpoint, timeout_s=120.0, name="determinism")
    try:
        rep = client.request("render", {"latents": rows, "width": SIZE, "height": SIZE,
                                        "return": ["image", "mask"]})
        client.request("shutdown")
    finally:
        client.close()
    return rep.fields["items"]


def test_renders_do_not_depend_on_what_the_server_rendered_before():
    lat = _latents()
    first = [0, 1, 2, 0, 1, 2, 0, 3, 0]  # A B C A B C A D A: A to D changes no object
    second = [3, 2, 1, 0]  # D C B A, in another fresh process
    with LocalServers("clevr", count=2, threads=1) as endpoints:
        one = _render(endpoints[0], lat[first])
        two = _render(endpoints[1], lat[second])
    ref = {}
    for k, item in zip(first, one):
        ref.setdefault(k, item)
        np.testing.assert_array_equal(item["image"], ref[k]["image"],
                                      err_msg=f"latent {'ABCD'[k]} again, same process")
        np.testing.assert_array_equal(item["mask"], ref[k]["mask"])
    for k, item in zip(second, two):
        np.testing.assert_array_equal(item["image"], ref[k]["image"],
                                      err_msg=f"latent {'ABCD'[k]}, other process")
        np.testing.assert_array_equal(item["mask"], ref[k]["mask"])
    # D differs from A in the Cycles settings only: they reached the render
    assert not np.array_equal(ref[3]["image"], ref[0]["image"])
    np.testing.assert_array_equal(ref[3]["mask"], ref[0]["mask"])
