"""The artist's way in, in the bpy module: a scene built from scratch, properties bound through
the context-menu operator (a context override points it at the property, as Blender's button
context menu does), refusals, removal, missing targets flagged, "one of these" from the
selection, and preview / dataset / render server on the file's own bindings."""

import json
import math
import time
import types

import numpy as np
import pytest

# BLENDER_USER_RESOURCES: conftest.py has pointed it away from $HOME before this import
bpy = pytest.importorskip("bpy")

import blender_addon  # noqa: E402
from blender_addon.bindings import TEXT_NAME, read, resolve  # noqa: E402
from tests.addon_helpers import _Layout, gui_client  # noqa: E402

pytestmark = pytest.mark.blender
ROUGH = 'node_tree.nodes["Principled BSDF"].inputs["Roughness"].default_value'


@pytest.fixture(scope="module", autouse=True)
def addon():
    blender_addon.register()
    yield
    from blender_addon import examples

    examples.remove_previous()
    blender_addon.unregister()


def _link(obj, coll=None):
    (coll or bpy.context.scene.collection).objects.link(obj)
    return obj


@pytest.fixture
def scene():
    """An empty file, then a light, a camera, a cube with a node material, two empties, two
    layout collections and a collection of three slots."""
    bpy.ops.wm.read_homefile(use_empty=True)
    sc = bpy.context.scene
    sc.render.engine = "BLENDER_EEVEE" if bpy.app.version < (4, 2) else "BLENDER_EEVEE_NEXT"
    sc.world = bpy.data.worlds.new("World")
    key = _link(bpy.data.objects.new("KeyLight", bpy.data.lights.new("Key", "POINT")))
    key.location, key.data.energy = (2.0, -2.0, 4.0), 800.0
    cam = _link(bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera")))
    cam.location, cam.rotation_euler = (0.0, -6.0, 3.0), (math.radians(65), 0.0, 0.0)
    sc.camera = cam
    mesh = bpy.data.meshes.new("CubeMesh")
    mesh.from_pydata([(x, y, z) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], [],
                     [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4),
                      (1, 5, 7, 3)])
    mat = bpy.data.materials.new("Floor")
    mat.use_nodes = True
    mesh.materials.append(mat)
    mesh.materials.append(bpy.data.materials.new("Paint"))
    cube = _link(bpy.data.objects.new("Cube", mesh))
    cube["autosim_class"] = "box"
    for name, x in (("SiteA", -2.0), ("SiteB", 2.0)):
        _link(bpy.data.objects.new(name, None)).location = (x, 0.0, 0.0)
    for name in ("LayoutA", "LayoutB", "Slots"):
        sc.collection.children.link(bpy.data.collections.new(name))
    for name in ("WallA", "WallB"):
        _link(bpy.data.objects.new(name, mesh.copy()), bpy.data.collections["Layout" + name[-1]])
    for i in range(3):
        _link(bpy.data.objects.new(f"Slot{i}", mesh), bpy.data.collections["Slots"])
    return sc


def _randomize(pointer, prop):
    with bpy.context.temp_override(button_pointer=pointer,
                                   button_prop=pointer.bl_rna.properties[prop]):
        return bpy.ops.autosim.randomize_property()


def _text():
    t = bpy.data.texts.get(TEXT_NAME)
    return None if t is None else t.as_string()


def _select(*names, active=None):
    for o in bpy.data.objects:
        o.select_set(o.name in names)
    bpy.context.view_layer.objects.active = bpy.data.objects[active] if active else None


def test_randomize_binds_each_kind_of_property_at_its_current_value(scene):
    light, cube = bpy.data.lights["Key"], bpy.data.objects["Cube"]
    sock = bpy.data.materials["Floor"].node_tree.nodes["Principled BSDF"].inputs["Roughness"]
    before = float(sock.default_value)
    for pointer, prop in ((light, "energy"), (cube, "location"), (light, "type"),
                          (cube, "hide_render"), (sock, "default_value"),
                          (scene.cycles, "samples")):
        assert _randomize(pointer, prop) == {"FINISHED"}
    desc = read(bpy.data)
    got = {b.param: (b.data, b.id, b.path, b.type) for b in desc.bindings}
    assert got == {
        "Key_energy": ("lights", "Key", "energy", "float"),
        "Cube_location": ("objects", "Cube", "location", "vector"),
        "Key_type": ("lights", "Key", "type", "enum"),
        "Cube_hide_render": ("objects", "Cube", "hide_render", "bool"),
        "Floor_Roughness": ("materials", "Floor", ROUGH, "float"),  # by name, via its owner
        "Scene_samples": ("scenes", "Scene", "cycles.samples", "int")}
    p = {q.name: q for q in desc.space.params}
    assert p["Key_energy"].mean == (800.0,) and p["Key_energy"].high == (1e6,)
    assert p["Cube_location"].mean == (0.0, 0.0, 0.0) and p["Cube_location"].low is None
    assert p["Key_type"].choices == ("POINT", "SUN", "SPOT", "AREA")
    assert int(np.argmax(p["Key_type"].logits)) == 0
    assert p["Cube_hide_render"].logit < 0 and p["Floor_Roughness"].mean == \
        pytest.approx((before,))
    assert desc.classes == ("background", "box")  # found on the cube
    s = scene.autosim  # the panel shows it, the new one selected
    assert [q.name for q in s.params] == desc.space.names and s.active_param == 5
    assert [b.param for b in s.bindings] == list(got)
    # everything resolves, and the starting point is the scene as it is
    bound = resolve(desc, bpy.data)
    samples = scene.cycles.samples
    bound.apply({"Key_energy": [800.0], "Cube_location": [0, 0, 0], "Key_type": "POINT",
                 "Cube_hide_render": False, "Floor_Roughness": [before],
                 "Scene_samples": [samples]})
    assert (light.energy, *cube.location, sock.default_value) == \
        pytest.approx((800.0, 0, 0, 0, before))
    assert (light.type, cube.hide_render, scene.cycles.samples) == ("POINT", False, samples)


def test_refusals_report_and_change_nothing(scene):
    light, cube = bpy.data.lights["Key"], bpy.data.objects["Cube"]
    _randomize(light, "energy")
    text = _text()
    cases = [((light, "energy"), "already bound: parameter 'Key_energy'"),
             ((cube, "name"), "string property"),
             ((scene.render, "engine"), "nothing to choose from"),  # items listed at runtime
             ((scene.autosim, "preview_seed"), "AutoSim's own settings"),
             ((bpy.context.preferences.view, "show_splash"), "setting of Blender itself"),
             ((cube.data, "is_editmode"), "read-only")]
    for (pointer, prop), why in cases:
        with pytest.raises(RuntimeError, match=why):
            _randomize(pointer, prop)
        assert _text() == text
    with pytest.raises(RuntimeError, match="no property here"):
        bpy.ops.autosim.randomize_property()
    # by address, for scripts: the same checks
    with pytest.raises(RuntimeError, match="already bound"):
        bpy.ops.autosim.randomize_property(data="lights", id_name="Key", path="energy")
    assert bpy.ops.autosim.randomize_property(data="objects", id_name="Cube",
                                              path="scale") == {"FINISHED"}
    assert read(bpy.data).space.names == ["Key_energy", "Cube_scale"]


def test_remove_and_a_missing_target_is_flagged_red(scene):
    from blender_addon import ui_list

    light = bpy.data.lights["Key"]
    _randomize(light, "energy")
    _randomize(bpy.data.objects["Cube"], "location")
    s = scene.autosim
    bpy.data.objects.remove(bpy.data.objects["Cube"])
    item = s.params["Cube_location"]
    assert ui_list.row_info(s, item) == ("PLACEMENT", 'objects["Cube"] is gone')
    assert ui_list.row_info(s, s.params["Key_energy"]) == ("LIGHTS", "")
    calls = []
    ui_list.AUTOSIM_UL_params.draw_item(None, bpy.context, _Layout(calls), s, item, 0, s,
                                        "active_param", 1)
    icons = [b.get("icon") for name, b in calls if name == "label"]
    assert "ERROR" in icons
    calls = []
    ui_list.draw_details(_Layout(calls), s, item, False)
    assert 'objects["Cube"] is gone' in [b.get("text") for n, b in calls if n == "label"]
    # rendering names the broken binding and changes nothing; the panel shows why
    text = _text()
    with pytest.raises(RuntimeError, match=r'Cube_location.*objects\["Cube"\] does not exist'):
        bpy.ops.autosim.render_preview()
    with pytest.raises(RuntimeError, match="Server not started.*Cube_location"):
        bpy.ops.autosim.server_start()
    assert "Cube_location" in s.last_error and _text() == text
    # filtering by group hides it under "Lights"
    s.group_filter = "LIGHTS"
    ul = types.SimpleNamespace(filter_name="", bitflag_filter_item=1 << 30,
                               use_filter_invert=False, use_filter_sort_alpha=False)
    flags, _ = ui_list.AUTOSIM_UL_params.filter_items(ul, bpy.context, s, "params")
    assert [bool(f) for f in flags] == [True, False]
    s.group_filter = "ALL"
    # remove from the panel, and from the context menu
    assert bpy.ops.autosim.remove_param(name="Cube_location") == {"FINISHED"}
    assert read(bpy.data).space.names == ["Key_energy"] and len(s.params) == 1
    with bpy.context.temp_override(button_pointer=light,
                                   button_prop=light.bl_rna.properties["energy"]):
        assert bpy.ops.autosim.unbind_property() == {"FINISHED"}
    assert read(bpy.data).space.names == [] and len(s.params) == 0


def test_panel_edits_are_stored_and_a_hand_edit_waits_for_reload(scene, tmp_path):
    from blender_addon import source

    _randomize(bpy.data.lights["Key"], "energy")
    s = scene.autosim
    s.params["Key_energy"].components[0].mean = 500.0
    s.params["Key_energy"].fixed = True
    p = read(bpy.data).space.params[0]
    assert p.mean == (500.0,) and p.fixed
    d = json.loads(_text())  # edited by hand in the Text Editor
    d["space"]["params"][0]["mean"] = [42.0]
    bpy.data.texts[TEXT_NAME].from_string(json.dumps(d))
    assert source.stale(scene)
    s.params["Key_energy"].components[0].mean = 1.0  # not written over the hand edit
    assert read(bpy.data).space.params[0].mean == (42.0,)
    with pytest.raises(RuntimeError, match="press Reload first"):
        _randomize(bpy.data.objects["Cube"], "location")
    assert bpy.ops.autosim.reload_description() == {"FINISHED"}
    assert s.params["Key_energy"].components[0].mean == 42.0 and not source.stale(scene)
    # reopening the file re-attaches the panel
    path = str(tmp_path / "bound.blend")
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.read_homefile(use_empty=True)
    assert len(bpy.context.scene.autosim.params) == 0
    bpy.ops.wm.open_mainfile(filepath=path)
    assert [q.name for q in bpy.context.scene.autosim.params] == ["Key_energy"]


def test_one_of_these_from_the_selection(scene):
    _select("WallA", "WallB")
    assert bpy.ops.autosim.one_of(kind="COLLECTIONS") == {"FINISHED"}
    _select("SiteA", "SiteB", "Cube", active="Cube")
    assert bpy.ops.autosim.one_of(kind="SITES") == {"FINISHED"}
    with pytest.raises(RuntimeError, match="already bound: parameter 'site_Cube'"):
        bpy.ops.autosim.one_of(kind="SITES")
    _select("Slot0", active="Slot0")
    assert bpy.ops.autosim.one_of(kind="COUNT") == {"FINISHED"}
    with pytest.raises(RuntimeError, match="at least two"):
        bpy.ops.autosim.one_of(kind="MESHES")  # one mesh among the selected
    desc = read(bpy.data)
    kinds = {b.param: (b.kind, b.id) for b in desc.bindings}
    assert kinds == {"show_LayoutA": ("one_of", ""), "site_Cube": ("site", "Cube"),
                     "count_Slots": ("count", "Slots")}
    assert desc.space.params[2].choices == ("0", "1", "2", "3")
    bound = resolve(desc, bpy.data)
    bound.apply({"show_LayoutA": "LayoutB", "site_Cube": "SiteB", "count_Slots": "1"})
    assert tuple(bpy.data.objects["Cube"].location) == (2.0, 0.0, 0.0)
    assert bpy.data.collections["LayoutA"].hide_viewport
    hidden = [(o.hide_render, o.hide_viewport) for o in bpy.data.collections["Slots"].objects]
    assert hidden == [(False, False), (True, True), (True, True)]  # hidden in the viewport too


def test_preview_dataset_and_server_on_the_files_bindings(scene, tmp_path):
    import zmq

    from blender_addon import operators as ops
    from blender_addon import preview

    _randomize(bpy.data.lights["Key"], "energy")
    _randomize(bpy.data.objects["Cube"], "location")
    s = scene.autosim
    s.preview_size = 32
    r = scene.render
    before = (r.engine, r.resolution_x, r.image_settings.file_format, scene.cycles.samples)
    assert bpy.ops.autosim.render_preview() == {"FINISHED"}
    assert (r.engine, r.resolution_x, r.image_settings.file_format,
            scene.cycles.samples) == before  # the artist's settings are back
    img = bpy.data.images[preview.PREVIEW_IMAGE]
    px = np.empty(32 * 32 * 4, np.float32)
    img.pixels.foreach_get(px)
    assert px.reshape(-1, 4)[:, :3].mean() > 0.02  # not black
    assert not img.is_dirty and not img.use_fake_user and img.users == 0  # never asks to save
    out = ops.generate_dataset(scene, str(tmp_path / "ds"), 2, 32, 0)
    items = [json.loads(x) for x in open(f"{out}/items.jsonl")]
    assert len(items) == 2 and "Key_energy" in items[0]["latent_named"]

    endpoint = ops.start_server(scene, "tcp://127.0.0.1:*")
    ctx = zmq.Context()
    req, call = gui_client(ctx, endpoint)

    try:
        hello = call("hello", {"client": "pytest"})
        assert hello.fields["description"]["bindings"][0]["path"] == "energy"
        space = read(bpy.data).space
        psi = space.pack_psi({"Key_energy": {"mean": [300.0]}})
        call("set_params", {"psi": psi.tolist(), "metrics": {"val_metric": 0.5},
                            "metric_name": "mIoU"})
        assert (s.server_client, s.metric_name, s.server_updates) == ("pytest", "mIoU", 1)
        assert read(bpy.data).space.params[0].mean == (300.0,)  # the file follows the psi
        items = call("render", {"n": 1, "seed": 0, "width": 32, "height": 32,
                                "return": ["image"]}).fields["items"]
        assert items[0]["image"].mean() > 5
        req.close(0)
        for _ in range(300):  # the optimizer left: its name goes
            ops.server_timer()
            if not s.server_client:
                break
            time.sleep(0.01)
        assert s.server_client == ""
    finally:
        ctx.term()
        ops.stop_server()


def test_build_example_keeps_the_artists_scene(scene):
    from blender_addon import examples

    mine = scene.name
    assert bpy.ops.autosim.build_scene() == {"FINISHED"}
    new = bpy.context.scene
    assert new.name == "AutoSim clevr" and examples.scene_handle(new) is not None
    assert "Cube" in bpy.data.objects and "Cube" in bpy.data.scenes[mine].objects
    assert len(bpy.data.scenes[mine].objects) == 10
    hidden = [o for o in new.objects if o.name.startswith("obj") and o.hide_render]
    assert hidden and all(o.hide_viewport for o in hidden)  # unused slots: not in the viewport
    with pytest.raises(RuntimeError, match="built-in example"):
        _randomize(bpy.data.objects["Cube"], "location")
    assert bpy.ops.autosim.build_scene() == {"FINISHED"}  # a rebuild replaces only its own
    assert sorted(sc.name for sc in bpy.data.scenes) == sorted([mine, "AutoSim clevr"])
    examples.remove_previous()
    assert [sc.name for sc in bpy.data.scenes] == [mine]


def test_panels_draw_nothing_bound_bound_and_stale(scene):
    from blender_addon import ui

    context = types.SimpleNamespace(scene=scene)

    def labels():
        calls = []
        for panel in ui.classes:
            assert panel.poll(context)
            panel.draw(types.SimpleNamespace(layout=_Layout(calls)), context)
        return [b.get("text", "") for name, b in calls if name == "label"]

    assert "Nothing bound yet." in labels()
    _randomize(bpy.data.lights["Key"], "type")
    _randomize(bpy.data.objects["Cube"], "hide_render")
    s = scene.autosim
    for logits in (False, True):
        s.show_logits = logits
        for i, target in enumerate(("Key.type", "Cube.hide_render")):
            s.active_param = i
            got = labels()
            assert "2 bound in this file" in got and target in got
    bpy.data.texts[TEXT_NAME].from_string(_text().replace('"POINT"', '"POINT" '))
    assert "Description changed" in labels()


def test_watch_a_run_on_the_files_bindings(scene):
    """A run of this file's space moves its bound distributions; the stored description stays."""
    import zmq

    from blender_addon import properties as P
    from blender_addon import source, watch

    _randomize(bpy.data.lights["Key"], "energy")
    _randomize(bpy.data.objects["Cube"], "location")
    s = scene.autosim
    space = P.current_space(s)
    stored = source.text_hash()
    ctx = zmq.Context()
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind("tcp://127.0.0.1:*")
    endpoint = pub.getsockopt_string(zmq.LAST_ENDPOINT)
    try:
        watch.start_watch(scene, endpoint)
        assert pub.poll(5000) and pub.recv() == b"\x01autosim.run"
        for i in range(3):
            psi = space.psi + 0.05 * (i + 1)
            msg = {"version": 1, "run": "mine", "scene": "blend", "metric_name": "mIoU",
                   "iteration": i, "images_rendered": 8 * (i + 1), "val_metric": 0.1 * i,
                   "psi": psi.tolist(), "final": i == 2}
            if i == 0:
                msg["space"] = space.to_dict()
            pub.send_multipart([b"autosim.run", json.dumps(msg).encode()])
        for _ in range(200):
            watch.watch_timer()
            if s.watch_messages == 3:
                break
            pub.poll(10)
        assert s.watch_messages == 3 and s.watch_shown == "PANEL"
        np.testing.assert_allclose(P.current_space(s).psi, psi, atol=1e-5)
        assert [n for n, _ in watch.history()] == [8, 16, 24]
        assert source.text_hash() == stored and not source.stale(scene)
    finally:
        watch.stop_watch()
        pub.close()
        ctx.term()
