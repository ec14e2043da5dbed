"""Any bound .blend, end to end: the example builds one from scratch, and it is served with the
bpy module and with Debian's `blender -b`, rendered by `autosim render --blend` and optimised
by `autosim optimize --blend`, over real ZeroMQ sockets; a broken binding stops the server
before it serves, naming the binding.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from optimizer.cli import main as cli
from optimizer.simulators.client import RenderClient, ServerError
from optimizer.simulators.local_servers import LocalServers
from optimizer.simulators.remote import RemoteSimulator
from tests.system_blender import system_blender_env
from tests.test_blender_binary import SERVE, _blender, _wait_ready

pytestmark = pytest.mark.blender
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "tabletop.py"
NAMES = ["sun", "ambient", "ground_roughness", "samples", "count", "finish", "obj1_xy",
         "obj2_xy", "obj3_xy", "obj4_xy"]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


@pytest.fixture(scope="module")
def blend(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("blend") / "tabletop.blend"
    run = subprocess.run([sys.executable, str(EXAMPLE), "--out", str(out)], env=_env(),
                         capture_output=True, text=True, timeout=120, cwd=str(out.parent))
    assert run.returncode == 0, run.stderr[-2000:]
    assert "10 bindings" in run.stdout and out.is_file()
    return out


def _latent(space, **changes) -> np.ndarray:
    named = {"sun": 3.0, "ambient": 0.3, "ground_roughness": 0.8, "samples": "2",
             "count": "4", "finish": "Rubber", "obj1_xy": [-1.5, -0.5], "obj2_xy": [1.5, 0.0],
             "obj3_xy": [0.0, 0.5], "obj4_xy": [0.0, 1.5], **changes}
    return space.pack_latent(named)


def test_bpy_module_server_serves_the_blend_deterministically(blend):
    with LocalServers("blend", 1, threads=1, blend=str(blend)) as eps:
        client = RenderClient(eps[0])
        try:
            hello = client.request("hello", {"client": "test"}).fields
        finally:
            client.close()
        desc = hello["description"]
        assert hello["scene"] == "tabletop" and hello["classes"] == ["background", "box", "ball"]
        assert desc["format"] == "autosim.scene" and len(desc["bindings"]) == 10
        with RemoteSimulator(eps) as sim:
            assert sim.space.names == NAMES
            base = _latent(sim.space)
            lat = np.stack([base, base, _latent(sim.space, sun=8.0),
                            _latent(sim.space, count="1"), _latent(sim.space, finish="Metal")])
            b = sim.render(lat, 32, 32)
    np.testing.assert_array_equal(b.images[0], b.images[1])  # same latent, same pixels
    np.testing.assert_array_equal(b.masks[0], b.masks[1])
    assert sorted(b.classes[0].tolist()) == [1, 1, 2, 2]  # 4 objects shown: 2 boxes, 2 balls
    # the sun changes the light, not the labels; fewer objects change the labels
    assert b.images[2].mean() > b.images[0].mean() + 5
    np.testing.assert_array_equal(b.masks[2], b.masks[0])
    assert b.classes[3].tolist() == [1] and set(np.unique(b.masks[3])) == {0, 1}
    assert not np.array_equal(b.images[4], b.images[0])  # Obj1's material
    np.testing.assert_array_equal(b.masks[4], b.masks[0])


def test_a_bad_latent_gets_an_error_reply_and_the_server_keeps_serving(blend):
    with LocalServers("blend", 1, threads=1, blend=str(blend)) as eps:
        client = RenderClient(eps[0])
        dim = len(client.request("hello", {}).fields["space"]["params"])
        assert dim == len(NAMES)
        bad = [[3.0, 0.3, 0.8, 1.0, 7.0, 0.0, 0, 0, 0, 0, 0, 0, 0, 0]]  # count index 7
        with pytest.raises(ServerError, match="count"):
            client.request("render", {"latents": bad, "width": 16, "height": 16})
        ok = client.request("render", {"latents": [[3.0, 0.3, 0.8, 1.0, 3.0, 0.0] + [0.0] * 8],
                                       "width": 16, "height": 16})
        assert len(ok.fields["items"]) == 1
        client.close()


def test_a_broken_binding_stops_the_server_and_names_the_binding(blend, tmp_path):
    broken = tmp_path / "broken.blend"
    script = ("import bpy, sys; bpy.ops.wm.open_mainfile(filepath=sys.argv[1]); "
              "bpy.data.lights.remove(bpy.data.lights['Key']); "
              "bpy.ops.wm.save_as_mainfile(filepath=sys.argv[2])")
    subprocess.run([sys.executable, "-c", script, str(blend), str(broken)], check=True,
                   env=_env(), capture_output=True, timeout=120)
    run = subprocess.run([sys.executable, "-m", "blender_addon.serve", "--blend", str(broken),
                          "--bind", "tcp://127.0.0.1:*"], env=_env(), capture_output=True,
                         text=True, timeout=120, cwd=str(ROOT))
    assert run.returncode == 2
    assert "AUTOSIM_READY" not in run.stdout
    assert "'sun'" in run.stderr and 'lights["Key"]' in run.stderr, run.stderr[-1000:]
    assert "Traceback" not in run.stderr
    assert cli(["serve", "--blend", str(tmp_path / "missing.blend")]) == 2


def test_debian_blender_builds_and_serves_a_bound_blend(tmp_path):
    """The example runs inside Debian's Blender 3.4 too, and `blender -b my.blend -P
    serve.py` serves the open file's bindings with no --scene."""
    exe = _blender()
    env = system_blender_env(tmp_path / "user")
    out = tmp_path / "t34.blend"
    run = subprocess.run([exe, "-b", "--factory-startup", "-P", str(EXAMPLE), "--",
                          "--out", str(out)], env=env, capture_output=True, text=True,
                         timeout=180, cwd=str(tmp_path))
    assert run.returncode == 0 and out.is_file(), run.stderr[-2000:]
    log_path = tmp_path / "serve.log"
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen([exe, "-b", str(out), "-P", str(SERVE), "--", "--bind",
                                 "tcp://127.0.0.1:*", "--threads", "1"], stdout=subprocess.PIPE,
                                stderr=log, text=True, cwd=str(tmp_path), env=env)
    try:
        endpoint = _wait_ready(proc, log_path)
        with RemoteSimulator([endpoint]) as sim:
            assert sim.scene == "tabletop" and sim.space.names == NAMES
            b = sim.render(np.stack([_latent(sim.space), _latent(sim.space, count="2")]),
                           32, 32)
            sim.shutdown_servers()
        assert sorted(b.classes[0].tolist()) == [1, 1, 2, 2]
        assert sorted(b.classes[1].tolist()) == [1, 2]
        assert proc.wait(30) == 0  # shutdown: a clean exit
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.stdout.close()


def test_render_and_optimize_a_blend_from_the_cli(blend, tmp_path, capsys):
    val = tmp_path / "val"
    assert cli(["render", "--blend", str(blend), "--n", "12", "--size", "32", "--out", str(val),
                "--threads", "1"]) == 0
    assert len(list((val / "images").iterdir())) == 12
    run = tmp_path / "run"
    assert cli(["optimize", "--blend", str(blend), "--val", str(val), "--budget-images", "24",
                "--k", "8", "--epochs", "1", "--out", str(run), "--threads", "1",
                "--no-progress"]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["images_rendered"] for r in records] == [8, 16, 24]
    assert all(r["skipped"] == "" for r in records)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run))
    acc.Reload()
    assert [e.step for e in acc.Scalars("val/mIoU")] == [8, 16, 24]
    assert "batch/latest" in acc.Tags()["images"] and "psi/sun/mean" in acc.Tags()["scalars"]
    final = json.loads((run / "final_space.json").read_text())
    assert [p["name"] for p in final["params"]] == NAMES
    # the detection task reads a YOLO folder rendered from the same file
    yolo = tmp_path / "yolo"
    assert cli(["render", "--blend", str(blend), "--n", "4", "--size", "32", "--out", str(yolo),
                "--format", "yolo", "--threads", "1"]) == 0
    assert cli(["optimize", "--blend", str(blend), "--task", "classifier", "--val", str(val),
                "--out", str(tmp_path / "bad"), "--budget-images", "8"]) == 2
    assert "segmentation or detection" in capsys.readouterr().err


def test_a_blend_brings_its_own_defaults(blend, tmp_path):
    """Defaults stored in the file's description reach the optimizer with hello: its fixed
    parameters and method settings, with no flag and no scene name."""
    own = tmp_path / "own.blend"
    script = ("import bpy, sys, json; bpy.ops.wm.open_mainfile(filepath=sys.argv[1]); "
              "from blender_addon.bindings import read, store; "
              "from protocol.scene import SceneDescription; d = read(bpy.data).to_dict(); "
              "d['defaults'] = json.loads(sys.argv[3]); "
              "store(SceneDescription.from_dict(d), bpy.data); "
              "bpy.ops.wm.save_as_mainfile(filepath=sys.argv[2])")
    defaults = {"fixed": ["obj*"], "methods": {"autosimulate": {"k": 8, "epochs": 1}}}
    subprocess.run([sys.executable, "-c", script, str(blend), str(own), json.dumps(defaults)],
                   check=True, env=_env(), capture_output=True, timeout=120, cwd=str(ROOT))
    val = tmp_path / "val"
    assert cli(["render", "--blend", str(own), "--n", "6", "--size", "32", "--out", str(val),
                "--threads", "1", "--no-progress"]) == 0
    run = tmp_path / "run"
    assert cli(["optimize", "--blend", str(own), "--val", str(val), "--budget-images", "16",
                "--out", str(run), "--threads", "1", "--no-progress"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["fix"] == ["obj*"] and config["task"] == "segmentation"
    assert config["options"]["k"] == 8 and config["options"]["epochs"] == 1
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["images_rendered"] for r in records] == [8, 16]
    final = json.loads((run / "final_space.json").read_text())
    assert [p["name"] for p in final["params"] if p.get("fixed")] == NAMES[6:]


def test_evaluate_and_bench_a_blend(blend, tmp_path, capsys):
    test = tmp_path / "test"
    assert cli(["render", "--blend", str(blend), "--n", "8", "--size", "32", "--out", str(test),
                "--threads", "1", "--no-progress"]) == 0
    space = tmp_path / "space.json"
    space.write_text((test / "space.json").read_text())
    capsys.readouterr()
    assert cli(["evaluate", "--blend", str(blend), "--params", str(space), "--test", str(test),
                "--train-n", "8", "--epochs", "1", "--seeds", "1", "--threads", "1"]) == 0
    assert "test mIoU:" in capsys.readouterr().out
    out = tmp_path / "bench"
    assert cli(["bench", "--blend", str(blend), "--targets", "1", "--target-seed", "3",
                "--methods", "autosimulate", "--seeds", "1", "--budget-images", "16", "--k",
                "8", "--epochs", "1", "--judge-train-n", "8", "--judge-epochs", "1",
                "--judge-val-n", "8", "--judge-test-n", "8", "--size", "32", "--threads", "1",
                "--out", str(out)]) == 0
    bench = json.loads((out / "bench.json").read_text())
    assert bench["scene"] == blend.stem and [r["method"] for r in bench["runs"]] == ["autosimulate"]
    assert (out / "targets" / "t0" / "test-set" / "images").is_dir()
