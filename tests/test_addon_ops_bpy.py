"""The Blender add-on in the real bpy module: the scene operators (sampling, preview, JSON
import/export), dataset export and the panels' draw functions."""

import json

import numpy as np
import pytest

# BLENDER_USER_RESOURCES: conftest.py has pointed it away from $HOME before this import
bpy = pytest.importorskip("bpy")

from blender_addon.scenes import space_dict  # noqa: E402
from protocol.space import ParameterSpace  # noqa: E402
from tests.addon_helpers import (  # noqa: E402
    _built,
    _Layout,
    _ops,
    _props,
    _random_space,
)
from tests.fakes import FAKE_SPACE  # noqa: E402

pytestmark = [pytest.mark.blender, pytest.mark.usefixtures("addon_registered")]


# ---------------------------------------------------------------------------- scene operators


def _scene_state():
    """What a render would show: visible objects' placement, shape, material; light energies
    (hidden slots keep stale positions, which do not matter)."""
    objs = sorted(bpy.data.objects, key=lambda o: o.name)
    return [(o.name, True) if o.hide_render else
            (o.name, tuple(round(v, 6) for v in o.location), o.data.name if o.data else "",
             tuple(s.material.name for s in o.material_slots if s.material)) for o in objs] + \
        [(o.name, round(o.data.energy, 6)) for o in objs if o.type == "LIGHT"]


def test_apply_random_sample_is_deterministic_per_seed():
    s = _built()
    before = _scene_state()
    s.preview_seed = 5
    assert bpy.ops.autosim.apply_sample() == {"FINISHED"}
    first = _scene_state()
    assert first != before
    assert json.loads(s.last_sample)["obj0_shape"] in ("sphere", "cube", "cylinder")
    assert bpy.ops.autosim.apply_sample(next_seed=True) == {"FINISHED"}
    assert s.preview_seed == 6 and _scene_state() != first
    s.preview_seed = 5
    bpy.ops.autosim.apply_sample()
    assert _scene_state() == first


def test_render_preview_fills_an_image():
    s = _built()
    s.preview_size = 32
    assert bpy.ops.autosim.render_preview() == {"FINISHED"}
    img = bpy.data.images["AutoSim Preview"]
    assert tuple(img.size) == (32, 32)
    px = np.empty(32 * 32 * 4, np.float32)
    img.pixels.foreach_get(px)
    assert px.reshape(-1, 4)[:, :3].std() > 0.01  # a picture, not a flat colour
    assert "AutoSim Preview Mask" in bpy.data.images


def test_export_import_json_round_trip(tmp_path):
    P = _props()
    s = _built()
    P.space_to_props(_random_space("clevr", 7), s)
    exported = P.current_space(s)
    path = tmp_path / "space.json"
    assert bpy.ops.autosim.export_space(filepath=str(path)) == {"FINISHED"}
    assert ParameterSpace.from_json(path.read_text()) == exported
    s.params["key_light"].components[0].mean = 7.0
    s.params["material"].fixed = not s.params["material"].fixed
    assert P.current_space(s) != exported
    assert bpy.ops.autosim.import_space(filepath=str(path)) == {"FINISHED"}
    assert P.current_space(s) == exported


@pytest.mark.parametrize("content, reason", [
    ("{not json", "not a valid AutoSim space"),
    (json.dumps({**space_dict("clevr"), "params": [{"name": "x", "kind": "normal",
                                                     "mean": [0], "log_std": [99]}]}),
     "log_std"),
    (json.dumps(space_dict("placement")), "does not fit scene 'clevr'"),
    (None, "cannot read"),
])
def test_import_bad_json_reports_and_changes_nothing(tmp_path, content, reason):
    P = _props()
    s = _built()
    before = P.current_space(s)
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(RuntimeError, match=f"Import failed, nothing changed.*{reason}"):
        bpy.ops.autosim.import_space(filepath=str(path))
    assert P.current_space(s) == before
    assert [p.name for p in s.params] == before.names


# ---------------------------------------------------------------------------- dataset


def test_generate_dataset_passes_ultralytics_checker(tmp_path):
    import optimizer  # noqa: F401  (first: offline ultralytics, torchvision on CPU torch)

    # isort: split
    from ultralytics.data.utils import check_det_dataset

    P = _props()
    s = _built()
    P.space_to_props(ParameterSpace.from_dict(space_dict("clevr")).preset("validation"), s)
    s.dataset_dir, s.dataset_n, s.dataset_size, s.dataset_seed = str(tmp_path / "ds"), 4, 32, 7
    assert bpy.ops.autosim.generate_dataset() == {"FINISHED"}
    root = tmp_path / "ds"
    for sub, ext in (("images", "png"), ("masks", "png"), ("labels", "txt")):
        assert sorted(p.name for p in (root / sub).iterdir()) == [f"{i:06d}.{ext}"
                                                                  for i in range(4)]
    items = [json.loads(line) for line in (root / "items.jsonl").read_text().splitlines()]
    space = P.current_space(s)
    expected = space.sample(4, np.random.default_rng(7))
    assert [it["seed"] for it in items] == [7] * 4
    np.testing.assert_array_equal([it["latent"] for it in items], expected)
    assert sum(len((root / "labels" / f"{i:06d}.txt").read_text().splitlines())
               for i in range(4)) >= 4  # objects were labelled
    info = check_det_dataset(str(root / "data.yaml"))
    assert info["nc"] == 3
    assert info["names"] == {0: "sphere", 1: "cube", 2: "cylinder"}


# ---------------------------------------------------------------------------- panels


def test_panels_draw_every_state():
    import types

    from blender_addon import ui

    P, ops = _props(), _ops()
    s = _built()
    context = types.SimpleNamespace(scene=bpy.context.scene)
    for space in (ParameterSpace.from_dict(FAKE_SPACE),
                  ParameterSpace.from_dict(space_dict("placement"))):
        P.space_to_props(space, s)
        s.params[0].show_expanded = False
        s.last_error = "bad_value: something"
        for panel in ui.classes:
            calls = []
            assert panel.poll(context)
            panel.draw(types.SimpleNamespace(layout=_Layout(calls)), context)
            assert calls, panel.__name__
    P.space_to_props(ParameterSpace.from_dict(space_dict("clevr")), s)
    ops.start_server(bpy.context.scene, "tcp://127.0.0.1:*")
    try:
        s.has_val_metric, s.val_metric, s.metric_name = True, 0.5, "mIoU"
        s.metrics_text = ""
        calls = []
        ui.AUTOSIM_PT_server.draw(types.SimpleNamespace(layout=_Layout(calls)), context)
        texts = [b.get("text", "") for name, b in calls if name == "label"]
        assert texts[texts.index("Metric") + 1] == "mIoU 0.5"  # the metric with its name, once
        assert not [t for t in texts if "val_metric" in t or "eneration" in t or "si " in t]
        assert texts[texts.index("Updates") + 1] == "0"
        assert any(b.get("operator") == "autosim.server_stop" for _, b in calls)
    finally:
        ops.stop_server()
    s.params.clear()
    calls = []
    ui.AUTOSIM_PT_bindings.draw(types.SimpleNamespace(layout=_Layout(calls)), context)
    assert [n for n, _ in calls].count("template_list") == 1
    s.last_error = ""
