"""bpy-free parts of the rendering side: label maths, sRGB conversion, scene registry."""

import numpy as np
import pytest

from blender_addon.labels import boxes_from_instances, linear_to_srgb_u8, mask_from_instances
from blender_addon.scenes import SCENE_NAMES, classes, space_dict

# ----------------------------------------------------------------------------- boxes


def test_empty_instances_give_no_boxes():
    boxes, cls = boxes_from_instances(np.zeros((8, 8), np.uint16), {1: 2})
    assert boxes.shape == (0, 4) and boxes.dtype == np.float32
    assert cls.shape == (0,) and cls.dtype == np.int32


def test_single_pixel_box_is_one_pixel_wide():
    inst = np.zeros((5, 7), np.uint16)
    inst[3, 4] = 9
    boxes, cls = boxes_from_instances(inst, {9: 3})
    np.testing.assert_array_equal(boxes, [[4, 3, 5, 4]])
    np.testing.assert_array_equal(cls, [3])


def test_touching_instances_are_separated_and_sorted_by_id():
    inst = np.zeros((6, 6), np.uint16)
    inst[1:4, 0:3] = 5   # left block
    inst[2:6, 3:5] = 2   # touches it on the right
    inst[0, 5] = 2       # a stray pixel extends instance 2's box upwards
    boxes, cls = boxes_from_instances(inst, {5: 1, 2: 4})
    np.testing.assert_array_equal(boxes, [[3, 0, 6, 6], [0, 1, 3, 4]])
    np.testing.assert_array_equal(cls, [4, 1])


def test_ids_missing_from_class_map_are_ignored():
    inst = np.zeros((4, 4), np.uint16)
    inst[0, 0], inst[3, 3] = 1, 7
    boxes, cls = boxes_from_instances(inst, {1: 1})
    np.testing.assert_array_equal(boxes, [[0, 0, 1, 1]])
    np.testing.assert_array_equal(cls, [1])


def test_boxes_match_nonzero_on_random_images():
    rng = np.random.default_rng(0)
    for _ in range(20):
        inst = rng.integers(0, 6, size=(13, 11)).astype(np.uint16)
        inst[rng.random(inst.shape) < 0.5] = 0
        class_of = {i: 10 + i for i in range(1, 6)}
        boxes, cls = boxes_from_instances(inst, class_of)
        present = sorted(set(np.unique(inst)) - {0})
        assert len(boxes) == len(present)
        for box, c, i in zip(boxes, cls, present):
            ys, xs = np.nonzero(inst == i)
            assert list(box) == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert c == class_of[i]


def test_boxes_reject_non_2d():
    with pytest.raises(ValueError):
        boxes_from_instances(np.zeros((2, 2, 2), np.uint16), {})


def test_mask_from_instances():
    inst = np.array([[0, 1, 2], [3, 2, 0]], np.uint16)
    mask = mask_from_instances(inst, {1: 4, 2: 1})
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, [[0, 4, 1], [0, 1, 0]])
    assert mask_from_instances(np.zeros((2, 2), np.uint16), {}).sum() == 0


# ----------------------------------------------------------------------------- sRGB


def test_linear_to_srgb_reference_points():
    lin = np.array([-1.0, 0.0, 0.0031308, 0.18, 0.5, 1.0, 7.0], np.float32)
    out = linear_to_srgb_u8(lin)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [0, 0, 10, 118, 188, 255, 255])


def test_linear_to_srgb_is_monotonic_and_keeps_shape():
    lin = np.linspace(0, 1, 4096, dtype=np.float32).reshape(64, 64, 1).repeat(3, -1)
    out = linear_to_srgb_u8(lin)
    assert out.shape == (64, 64, 3)
    flat = out[..., 0].ravel()
    assert np.all(np.diff(flat.astype(int)) >= 0)
    assert set(range(256)) <= set(flat.tolist())  # every code is reachable


# ----------------------------------------------------------------------------- registry


def test_registry_classes():
    assert SCENE_NAMES == ("clevr", "placement")
    assert classes("clevr") == ["background", "sphere", "cube", "cylinder"]
    cls = classes("placement")
    assert cls[0] == "background" and len(cls) == 9 and len(set(cls)) == 9


def test_unknown_scene_names_the_known_ones():
    with pytest.raises(ValueError, match="clevr.*placement"):
        space_dict("nope")
    with pytest.raises(ValueError):
        classes("nope")


@pytest.mark.parametrize("name", SCENE_NAMES)
def test_space_parses_and_validation_preset_is_distinct_and_reachable(name):
    space_mod = pytest.importorskip("protocol.space")
    d = space_dict(name)
    assert d["format"] == "autosim.space" and d["name"] == name
    space = space_mod.ParameterSpace.from_dict(d)
    val = space.preset("validation")
    assert space.psi_dim == val.psi_dim
    assert np.abs(space.psi - val.psi).max() > 1.0  # clearly different start point
    for p in d["params"]:  # validation means lie inside the renderer's clip box
        if p["kind"] == "normal":
            mean = d["presets"]["validation"].get(p["name"], p)["mean"]
            assert all(lo <= m <= hi for m, lo, hi in zip(mean, p["low"], p["high"]))


def test_placement_config_has_54_layout_major_choices():
    (config,) = [p for p in space_dict("placement")["params"] if p["name"] == "config"]
    choices = config["choices"]
    assert len(choices) == 54 and len(set(choices)) == 54
    assert choices[:3] == ["L0_P0_low", "L0_P0_high", "L0_P1_low"]
    assert choices[-1] == "L2_P8_high"
    assert config["logits"] == [0.0] * 54
    val = space_dict("placement")["presets"]["validation"]["config"]["logits"]
    probs = np.exp(val) / np.exp(val).sum()
    top = np.argsort(probs)[::-1][:5]
    assert probs[top].sum() > 0.8
    assert all(choices[i].endswith("_high") for i in top)
