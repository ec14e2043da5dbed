"""The Blender add-on in the real bpy module: registration and the property mirror of a
parameter space. Its operators, dataset export and panels: test_addon_ops_bpy.py; its GUI render
server and run watcher: test_addon_server_bpy.py."""

import math

import numpy as np
import pytest

# BLENDER_USER_RESOURCES: conftest.py has pointed it away from $HOME before this import
bpy = pytest.importorskip("bpy")

import blender_addon  # noqa: E402
from blender_addon.scenes import SCENE_NAMES, space_dict  # noqa: E402
from protocol.space import ParameterSpace  # noqa: E402
from tests.addon_helpers import (  # noqa: E402
    _built,
    _f32,
    _ops,
    _props,
    _random_space,
    _settings,
)
from tests.fakes import FAKE_SPACE  # noqa: E402

pytestmark = [pytest.mark.blender, pytest.mark.usefixtures("addon_registered")]

PANELS = ("AUTOSIM_PT_main", "AUTOSIM_PT_bindings", "AUTOSIM_PT_preview", "AUTOSIM_PT_dataset",
          "AUTOSIM_PT_server", "AUTOSIM_PT_watch", "AUTOSIM_PT_examples")


def _addon_classes():
    from blender_addon import authoring_ops, operators, preferences, properties, ui, ui_list

    return [c for m in (preferences, properties, operators, authoring_ops, ui_list, ui)
            for c in m.classes]


# ---------------------------------------------------------------------------- registration


def test_register_unregister_twice_leaves_nothing():
    ops = _ops()
    _built()
    endpoint = ops.start_server(bpy.context.scene, "tcp://127.0.0.1:*")
    assert endpoint.startswith("tcp://127.0.0.1:")
    assert bpy.app.timers.is_registered(ops.server_timer)
    for _ in range(2):
        blender_addon.unregister()
        assert not hasattr(bpy.types.Scene, "autosim")
        assert not [c for c in _addon_classes() if c.is_registered]
        assert not [n for n in PANELS if hasattr(bpy.types, n)]
        assert not _op_exists("build_scene") and not _op_exists("randomize_property")
        assert _menu_fn() not in _menu_funcs()
        assert ops.running_server() is None  # unregister stopped the server ...
        assert not bpy.app.timers.is_registered(ops.server_timer)  # ... and removed its timer
        assert ops._on_load_pre not in bpy.app.handlers.load_pre
        blender_addon.register()
        assert hasattr(bpy.types.Scene, "autosim")
        assert all(c.is_registered for c in _addon_classes())
        assert [n for n in PANELS if not hasattr(bpy.types, n)] == []
        assert _op_exists("build_scene")
        assert _menu_funcs().count(_menu_fn()) == 1
    blender_addon.register()  # registering again while registered is also clean
    assert hasattr(bpy.types, "AUTOSIM_PT_main")
    assert _menu_funcs().count(_menu_fn()) == 1


def _menu_funcs():
    return list(getattr(bpy.types.UI_MT_button_context_menu.draw, "_draw_funcs", []))


def _menu_fn():
    from blender_addon import authoring_ops

    return authoring_ops.draw_button_menu


def _op_exists(name):
    try:
        getattr(bpy.ops.autosim, name).get_rna_type()
        return True
    except (KeyError, AttributeError):
        return False


def test_bl_info():
    assert blender_addon.bl_info["blender"] == (3, 4, 0)
    assert blender_addon.bl_info["category"] == "Render"


# ---------------------------------------------------------------------------- property mirror


@pytest.mark.parametrize("name", SCENE_NAMES)
def test_space_props_space_round_trip(name):
    P = _props()
    s = _settings()
    for seed in (0, 1):  # the second fill updates the same structure in place
        space = _random_space(name, seed)
        P.space_to_props(space, s)
        back = P.props_to_space(s, P.base_space(s))
        # exact up to float32 storage: the stored psi values come back bit for bit
        np.testing.assert_array_equal(back.psi, _f32(space.psi))
        np.testing.assert_array_equal(back.free_mask, space.free_mask)
        assert back.names == space.names and back.presets == space.presets
        assert back.with_psi(space.psi) == space


def test_props_show_artist_units():
    P = _props()
    s = _settings()
    space = ParameterSpace.from_dict(FAKE_SPACE)
    space = space.with_psi(space.pack_psi({"shape": {"logits": [0.0, math.log(3.0)]},
                                           "light": {"log_std": [math.log(0.25)]}}))
    P.space_to_props(space, s)
    light, xy, shape, explode = s.params
    assert light.kind == "normal" and light.components[0].mean == pytest.approx(1.0)
    assert light.components[0].std == pytest.approx(0.25)
    assert len(xy.components) == 2
    assert [c.name for c in shape.choices] == ["sphere", "cube"]
    assert [c.prob for c in shape.choices] == pytest.approx([0.25, 0.75])
    assert explode.kind == "bernoulli" and explode.prob == pytest.approx(1 / (1 + math.exp(30)))


def test_artist_edits_change_psi_as_expected():
    P = _props()
    s = _settings()
    P.space_to_props(ParameterSpace.from_dict(FAKE_SPACE), s)
    light, xy, shape, explode = s.params

    xy.components[1].std = 0.5
    assert xy.components[1].log_std == pytest.approx(math.log(0.5), abs=1e-6)
    light.components[0].mean = 2.5
    shape.choices["cube"].prob = 0.9  # the other choice takes the rest
    assert [c.prob for c in shape.choices] == pytest.approx([0.1, 0.9], abs=1e-6)
    explode.prob = 0.25
    light.fixed = True

    space = P.current_space(s)
    named = space.unpack_psi()
    assert named["xy"]["log_std"] == pytest.approx([0.0, math.log(0.5)], abs=1e-6)
    assert named["light"]["mean"] == pytest.approx([2.5])
    assert space.params[2].summary()["probs"] == pytest.approx({"sphere": 0.1, "cube": 0.9},
                                                               abs=1e-6)
    assert space.params[3].summary()["p"] == pytest.approx(0.25, abs=1e-6)
    mask = space.free_mask
    assert not mask[space.psi_slices["light"]].any() and mask[space.psi_slices["xy"]].all()

    shape.choices["sphere"].prob = 1.0  # a certain choice keeps finite logits
    assert np.isfinite(P.current_space(s).psi).all()
    assert [c.prob for c in shape.choices] == pytest.approx([1.0, 0.0], abs=1e-6)
    xy.components[0].std = 1e9  # clamped into the allowed log_std range
    assert xy.components[0].log_std == pytest.approx(5.0)


def test_three_choice_renormalisation_keeps_ratios():
    P = _props()
    assert P.renormalised([0.5, 0.3, 0.2], 0, 0.8) == pytest.approx([0.8, 0.12, 0.08])
    assert P.renormalised([1.0, 0.0, 0.0], 0, 0.4) == pytest.approx([0.4, 0.3, 0.3])
    assert P.logits_from_probs([1.0, 0.0])[1] == pytest.approx(math.log(P.PROB_FLOOR))


def test_mirror_functions_work_on_plain_python_objects():
    """space_to_props / props_to_space need attributes and collections, not bpy."""

    class Coll(list):
        def add(self):
            self.append(Item())
            return self[-1]

        def __getitem__(self, key):
            if isinstance(key, str):
                return next(i for i in self if i.name == key)
            return list.__getitem__(self, key)

    class Item:
        def __init__(self):
            self.components, self.choices, self.params = Coll(), Coll(), Coll()

    P = _props()
    fake = Item()
    space = _random_space("clevr", 3)
    P.space_to_props(space, fake)
    back = P.props_to_space(fake, ParameterSpace.from_json(fake.space_json))
    np.testing.assert_array_equal(back.psi, space.psi)  # no float32 storage here: exact
    np.testing.assert_array_equal(back.free_mask, space.free_mask)


def test_props_to_space_refuses_a_mismatched_base():
    from protocol.space import SpaceError

    P = _props()
    s = _settings()
    P.space_to_props(ParameterSpace.from_dict(space_dict("placement")), s)
    with pytest.raises(SpaceError, match="do not match"):
        P.props_to_space(s, ParameterSpace.from_dict(space_dict("clevr")))
