"""The Blender add-on in the real bpy module: registration, the property mirror of a parameter
space, the GUI render server driven by its timer function, sampling, preview, JSON and dataset
export."""

import json
import math

import numpy as np
import pytest

# BLENDER_USER_RESOURCES: conftest.py has pointed it away from $HOME before this import
bpy = pytest.importorskip("bpy")

import blender_addon  # noqa: E402
from blender_addon.scenes import SCENE_NAMES, space_dict  # noqa: E402
from protocol.space import ParameterSpace  # noqa: E402
from tests.fakes import FAKE_SPACE  # noqa: E402

pytestmark = pytest.mark.blender

PANELS = ("AUTOSIM_PT_main", "AUTOSIM_PT_bindings", "AUTOSIM_PT_preview", "AUTOSIM_PT_dataset",
          "AUTOSIM_PT_server", "AUTOSIM_PT_watch", "AUTOSIM_PT_examples")


def _addon_classes():
    from blender_addon import authoring_ops, operators, preferences, properties, ui, ui_list

    return [c for m in (preferences, properties, operators, authoring_ops, ui_list, ui)
            for c in m.classes]


@pytest.fixture(scope="module", autouse=True)
def addon():
    blender_addon.register()
    yield
    blender_addon.unregister()


def _ops():
    from blender_addon import operators

    return operators


def _props():
    from blender_addon import properties

    return properties


def _settings():
    return bpy.context.scene.autosim


def _built(name="clevr"):
    """The example built once via the operator (rebuilt if a test unregistered the add-on):
    in a new scene, which becomes the window's scene."""
    handle = _ops().scene_handle(bpy.context.scene)
    if handle is None or handle.name != name:
        _settings().scene = name
        assert bpy.ops.autosim.build_scene() == {"FINISHED"}
        assert bpy.context.scene.name.startswith(f"AutoSim {name}")
        _settings().preview_size = 32
    return _settings()


def _f32(a):
    return np.asarray(a, dtype=np.float64).astype(np.float32).astype(np.float64)


def _random_space(name, seed):
    base = ParameterSpace.from_dict(space_dict(name))
    rng = np.random.default_rng(seed)
    psi = base.psi + rng.normal(0.0, 0.7, base.psi_dim)
    for i, label in enumerate(base.psi_labels):
        if ".log_std" in label:
            psi[i] = float(np.clip(psi[i], -9.9, 4.9))
    space = base.with_psi(psi)
    for p in space.params[::3]:
        space = space.with_fixed(p.name, True)
    return space


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


# ---------------------------------------------------------------------------- live server


def test_gui_server_shows_set_params_live():
    import zmq

    from protocol import wire

    ops, P = _ops(), _props()
    s = _built()
    P.space_to_props(ParameterSpace.from_dict(space_dict("clevr")), s)
    endpoint = ops.start_server(bpy.context.scene, "tcp://127.0.0.1:*")
    assert s.server_running and s.server_endpoint == endpoint
    ctx = zmq.Context()
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(endpoint)

    def call(kind, fields=None):
        req.send_multipart(wire.encode(kind, kind, fields or {}))
        for _ in range(500):  # timers never fire in module mode: call the timer function
            assert ops.server_timer() == ops.TIMER_INTERVAL
            if req.poll(10):
                return wire.decode(req.recv_multipart())
        raise AssertionError(f"no reply to {kind}")

    try:
        hello = call("hello", {"client": "pytest-optimizer"})
        assert hello.fields["scene"] == "clevr" and hello.fields["generation"] == 0
        assert s.server_client == "pytest-optimizer"
        space = ParameterSpace.from_dict(hello.fields["space"])
        new = space.pack_psi({"world_light": {"mean": [1.5], "log_std": [-2.0]},
                              "samples": {"logits": [0.0, 0.0, 3.0]}})
        reply = call("set_params", {"psi": new.tolist(), "metrics": {"val_metric": 0.61},
                                    "client": "opt-2", "expected_generation": 0})
        assert reply.type == "set_params" and reply.fields["generation"] == 1
        # the panel now shows the optimizer's distribution and status
        comp = s.params["world_light"].components[0]
        assert comp.mean == pytest.approx(1.5) and comp.std == pytest.approx(math.exp(-2.0))
        probs = [c.prob for c in s.params["samples"].choices]
        assert probs == pytest.approx(np.exp([0, 0, 3]) / np.exp([0, 0, 3]).sum())
        assert (s.server_client, s.server_generation) == ("opt-2", 1)
        assert s.has_val_metric and s.val_metric == pytest.approx(0.61)
        np.testing.assert_array_equal(P.current_space(s).psi, _f32(new))

        # an artist's edit while serving becomes the server's psi, as a new generation
        comp.mean = 0.9
        got = call("get_params")
        assert got.fields["generation"] == 2 == s.server_generation
        assert got.fields["psi"][space.psi_slices["world_light"].start] == pytest.approx(0.9)

        rendered = call("render", {"n": 2, "seed": 1, "width": 32, "height": 32,
                                   "return": ["mask"], "generation": 2})
        assert [it["mask"].shape for it in rendered.fields["items"]] == [(32, 32)] * 2
        assert s.server_images == 2
        bad = call("set_params", {"psi": [0.0]})
        assert bad.type == "error" and "bad_value" in s.last_error
    finally:
        req.close()
        ctx.term()
        assert ops.stop_server()
    assert not bpy.app.timers.is_registered(ops.server_timer)
    assert not s.server_running and ops.server_timer() is None


def test_watch_a_run_shows_its_psi_and_metric_curve():
    import zmq

    from blender_addon import watch

    P = _props()
    s = _built()
    base = ParameterSpace.from_dict(space_dict("clevr"))
    P.space_to_props(base, s)
    ctx = zmq.Context()
    pub = ctx.socket(zmq.XPUB)  # an XPUB hears the watcher subscribe: no slow-joiner sleep
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind("tcp://127.0.0.1:*")
    endpoint = pub.getsockopt_string(zmq.LAST_ENDPOINT)
    psis = [base.psi + 0.1 * (i + 1) for i in range(3)]

    def send(i, space, psi, **extra):
        msg = {"version": 1, "run": "r1", "scene": "clevr", "metric_name": "mIoU",
               "iteration": i, "images_rendered": 16 * (i + 1), "val_metric": 0.2 + 0.1 * i,
               "psi": [float(v) for v in psi], "final": i == 2, **extra}
        if space is not None:
            msg["space"] = space.to_dict()
        pub.send_multipart([b"autosim.run", json.dumps(msg).encode()])

    def pump(n):
        for _ in range(200):
            assert watch.watch_timer() == watch.TIMER_INTERVAL
            if s.watch_messages >= n:
                return
            pub.poll(10)
        raise AssertionError(f"{s.watch_messages} messages, wanted {n}")

    try:
        assert watch.start_watch(bpy.context.scene, endpoint) == endpoint
        assert bpy.app.timers.is_registered(watch.watch_timer)
        assert pub.poll(5000) and pub.recv() == b"\x01autosim.run"
        for i, psi in enumerate(psis):
            send(i, base if i == 0 else None, psi)
        pump(3)
        assert watch.history() == [(16, pytest.approx(0.2)), (32, pytest.approx(0.3)),
                                   (48, pytest.approx(0.4))]
        assert (s.watch_run, s.watch_iteration, s.watch_images, s.watch_shown) == (
            "r1", 2, 48, "PANEL")
        assert s.watch_has_metric and s.watch_metric == pytest.approx(0.4) and s.watch_final
        np.testing.assert_allclose(P.current_space(s).psi, psis[-1], atol=1e-5)
        assert len(watch.sparkline(watch.history())) == 3

        # another scene's run: its parameters as text, the panel's distributions untouched
        other = ParameterSpace.from_dict(FAKE_SPACE)
        send(0, other, other.psi, run="r2")
        pump(4)
        assert s.watch_shown == "TEXT" and watch.history() == [(16, pytest.approx(0.2))]
        assert watch.params_text() == [  # rows that fit the sidebar: a head, then pairs
            ("light", None), ("", "1 ± 0.368"), ("xy", None), ("[0]", "0 ± 1"), ("[1]", "0 ± 1"),
            ("shape", None), ("sphere", "0.50"), ("cube", "0.50"), ("explode", None),
            ("p", "9.36e-14")]
        np.testing.assert_allclose(P.current_space(s).psi, psis[-1], atol=1e-5)
        pub.send_multipart([b"autosim.run", b"not json"])
        for _ in range(100):
            watch.watch_timer()
            if s.watch_error:
                break
            pub.poll(10)
        assert "ignored a message" in s.watch_error
        import types

        from blender_addon import ui

        calls = []
        ui.AUTOSIM_PT_watch.draw(types.SimpleNamespace(layout=_Layout(calls)),
                                 types.SimpleNamespace(scene=bpy.context.scene))
        texts = [b.get("text", "") for name, b in calls if name == "label"]
        assert "Iteration" in texts and texts[texts.index("Metric") + 1] == "mIoU 0.2"
        assert {t for row in watch.params_text() for t in row if t is not None} <= set(texts)
        errors = [b for name, b in calls if name == "label" and b.get("icon") == "ERROR"]
        assert errors and "ignored a message" in errors[0]["text"]
    finally:
        assert watch.stop_watch()
        pub.close()
        ctx.term()
    assert not bpy.app.timers.is_registered(watch.watch_timer)
    assert not s.watch_running and watch.watch_timer() is None


def test_server_start_refuses_a_taken_address():
    ops = _ops()
    _built()
    endpoint = ops.start_server(bpy.context.scene, "tcp://127.0.0.1:*")
    try:
        with pytest.raises(RuntimeError, match="already running"):
            ops.start_server(bpy.context.scene, endpoint)
    finally:
        ops.stop_server()
    _settings().address = "not-an-endpoint"
    with pytest.raises(RuntimeError, match="Server not started"):
        bpy.ops.autosim.server_start()
    _settings().address = "tcp://127.0.0.1:5555"
    assert ops.running_server() is None
    assert not bpy.app.timers.is_registered(ops.server_timer)


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


class _Layout:
    """Stands in for bpy.types.UILayout (panels never draw in module mode): every call is
    checked against the real RNA function (argument names, icon names, property and operator
    names), so a typo fails here instead of in an artist's sidebar."""

    def __init__(self, calls):
        self._calls = calls

    def __getattr__(self, name):
        func = bpy.types.UILayout.bl_rna.functions.get(name)
        assert func is not None, f"UILayout has no {name}()"
        params = [p for p in func.parameters if not p.is_output]

        def call(*args, **kwargs):
            names = [p.identifier for p in params]
            assert len(args) <= len(names), f"{name}(): too many arguments"
            bound = dict(zip(names, args))
            for key in kwargs:
                assert key in names, f"{name}() has no argument {key!r}"
            bound.update(kwargs)
            for key, value in bound.items():
                p = func.parameters[key]
                if p.type == "ENUM":
                    assert value in {e.identifier for e in p.enum_items}, (name, key, value)
            if "data" in bound and "property" in bound:
                assert bound["property"] in bound["data"].bl_rna.properties, bound["property"]
            self._calls.append((name, bound))
            if name == "operator":
                return _OpProps(bound["operator"])
            return _Layout(self._calls)

        return call


class _OpProps:
    def __init__(self, idname):
        mod, op = idname.split(".")
        object.__setattr__(self, "_rna", getattr(getattr(bpy.ops, mod), op).get_rna_type())

    def __setattr__(self, key, value):
        assert key in self._rna.properties, f"operator has no property {key!r}"


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
