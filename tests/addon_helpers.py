"""Helpers shared by the add-on tests in the real bpy module (test_addon*_bpy.py, and _Layout for
test_authoring_bpy.py): the add-on's modules and settings, the example scene built once, random
spaces, and a checked stand-in for UILayout. The add-on is registered for each of those modules by
conftest.py's addon_registered fixture."""

import numpy as np
import pytest

# BLENDER_USER_RESOURCES: conftest.py has pointed it away from $HOME before this import
bpy = pytest.importorskip("bpy")

from blender_addon.scenes import space_dict  # noqa: E402
from protocol.space import ParameterSpace  # noqa: E402


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


def gui_client(ctx, endpoint: str):
    """A REQ socket on the add-on's in-GUI server and call(kind, fields) -> reply. Timers never
    fire in module mode, so call() runs the server's timer function itself while it waits."""
    import zmq

    from protocol import wire

    ops = _ops()
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(endpoint)

    def call(kind, fields=None):
        req.send_multipart(wire.encode(kind, kind, fields or {}))
        for _ in range(500):
            assert ops.server_timer() == ops.TIMER_INTERVAL
            if req.poll(10):
                return wire.decode(req.recv_multipart())
        raise AssertionError(f"no reply to {kind}")

    return req, call
