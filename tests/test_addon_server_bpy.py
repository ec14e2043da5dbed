"""The Blender add-on in the real bpy module: the GUI render server driven by its timer function,
and watching a run."""

import json
import math

import numpy as np
import pytest

# BLENDER_USER_RESOURCES: conftest.py has pointed it away from $HOME before this import
bpy = pytest.importorskip("bpy")

from blender_addon.scenes import space_dict  # noqa: E402
from protocol.space import ParameterSpace  # noqa: E402
from tests.addon_helpers import (  # noqa: E402
    _built,
    _f32,
    _Layout,
    _ops,
    _props,
    _settings,
    gui_client,
)
from tests.fakes import FAKE_SPACE  # noqa: E402

pytestmark = [pytest.mark.blender, pytest.mark.usefixtures("addon_registered")]


# ---------------------------------------------------------------------------- live server


def test_gui_server_shows_set_params_live():
    import zmq

    ops, P = _ops(), _props()
    s = _built()
    P.space_to_props(ParameterSpace.from_dict(space_dict("clevr")), s)
    endpoint = ops.start_server(bpy.context.scene, "tcp://127.0.0.1:*")
    assert s.server_running and s.server_endpoint == endpoint
    ctx = zmq.Context()
    req, call = gui_client(ctx, endpoint)

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
