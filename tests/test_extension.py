"""The add-on as something a user installs: the extension zip, validated and built with the
tooling inside the bpy wheel, and the legacy zip's own pyzmq unpacking. Installing the zips into
bpy and into Debian's Blender 3.4.1: test_extension_install.py."""

import ast
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from blender_addon import build_extension as bx
from tests.extension_zips import ROOT, _result, build_zips


@pytest.fixture(scope="module")
def zips(tmp_path_factory):
    """See build_zips."""
    return build_zips(tmp_path_factory)


def test_versions_agree():
    manifest = bx.manifest_info()
    with open(ROOT / "pyproject.toml", "rb") as fh:
        project = tomllib.load(fh)["project"]
    tree = ast.parse((ROOT / "blender_addon" / "__init__.py").read_text())
    bl_info = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                   and getattr(n.targets[0], "id", "") == "bl_info")
    assert manifest["version"] == project["version"] == ".".join(map(str, bl_info["version"]))
    assert manifest["id"] == "autosim" and manifest["type"] == "add-on"
    assert manifest["blender_version_min"] == "4.2.0" and manifest["license"] == ["SPDX:MIT"]
    assert set(manifest["permissions"]) == {"network", "files"}
    assert bl_info["blender"] == (3, 4, 0) and bl_info["category"] == "Render"


def test_plain_imports_do_not_load_bpy():
    code = ("import sys, blender_addon, blender_addon.server, blender_addon.labels, "
            "blender_addon.scenes, blender_addon.build_extension; "
            "assert 'bpy' not in sys.modules, 'bpy was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_source_manifest_validates():
    assert "Success" in bx.validate(ROOT / "blender_addon")


def test_build_zip_contents(zips):
    plain, _, legacy = zips
    names = set(zipfile.ZipFile(plain).namelist())
    for must in ("blender_manifest.toml", "__init__.py", "properties.py", "operators.py",
                 "ui.py", "preferences.py", "server.py", "scenes/clevr.json",
                 "_vendor/protocol/space.py", "_vendor/protocol/wire.py",
                 "_vendor/protocol/dataset.py"):
        assert must in names, must
    assert not [n for n in names if "__pycache__" in n or n.endswith("build_extension.py")]
    manifest = tomllib.loads(zipfile.ZipFile(plain).read("blender_manifest.toml").decode())
    assert "wheels" not in manifest and "platforms" not in manifest
    assert "Success" in bx.validate(plain)
    legacy_names = zipfile.ZipFile(legacy).namelist()
    assert all(n.startswith("autosim/") for n in legacy_names)
    assert "autosim/__init__.py" in legacy_names


def test_build_with_local_pyzmq_wheel(zips):
    _, with_wheel, _ = zips
    if with_wheel is None:
        pytest.skip("no pyzmq wheel on this machine (the build never downloads one)")
    zf = zipfile.ZipFile(with_wheel)
    manifest = tomllib.loads(zf.read("blender_manifest.toml").decode())
    (wheel,) = manifest["wheels"]
    assert wheel.startswith("./wheels/pyzmq-") and wheel[2:] in zf.namelist()
    assert manifest["platforms"] == ["linux-x64"]


def test_cli_builds_and_reports_bad_wheels(tmp_path):
    run = subprocess.run([sys.executable, "-m", "blender_addon.build_extension", "--out",
                          str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert Path(run.stdout.strip()) == tmp_path / "autosim-0.1.0.zip"
    bad = subprocess.run([sys.executable, "-m", "blender_addon.build_extension", "--out",
                          str(tmp_path), "--wheels", str(tmp_path / "missing.whl")],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        f"build_extension: --wheels {tmp_path / 'missing.whl'}: not a .whl file or a folder"]


def test_wheel_tag_check():
    import platform

    import blender_addon

    fits = blender_addon._wheel_fits
    machine = platform.machine().lower()
    assert fits("pyzmq-27.2.0-py3-none-any.whl")
    assert not fits("pyzmq-27.2.0-cp310-cp310-manylinux_2_28_x86_64.whl")
    if sys.platform.startswith("linux") and machine == "x86_64" and sys.version_info[:2] == (3, 11):
        assert fits("pyzmq-27.2.0-cp311-cp311-manylinux_2_26_x86_64.manylinux_2_28_x86_64.whl")
        assert not fits("pyzmq-27.2.0-cp311-cp311-manylinux_2_28_aarch64.whl")
        assert not fits("pyzmq-27.2.0-cp311-cp311-win_amd64.whl")


_ENSURE_ZMQ = r"""
import importlib.machinery, json, sys
class HideInstalledZmq:  # as if this Python had no pyzmq installed
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "zmq":
            paths = [p for p in sys.path if "site-packages" not in p]
            spec = importlib.machinery.PathFinder.find_spec(name, paths)
            if spec is None:
                raise ModuleNotFoundError("No module named 'zmq'", name="zmq")
            return spec
        return None
sys.meta_path.insert(0, HideInstalledZmq)
sys.path.insert(0, sys.argv[1])
import autosim
zmq = autosim.ensure_zmq()
print("AUTOSIM_RESULT " + json.dumps({"file": zmq.__file__, "version": zmq.zmq_version(),
                                      "bpy": "bpy" in sys.modules}))
"""


def test_legacy_install_unpacks_its_pyzmq_wheel(zips, tmp_path):
    """A legacy install has no wheel installer: ensure_zmq() unpacks the bundled wheel."""
    if zips[1] is None:
        pytest.skip("no pyzmq wheel on this machine")
    legacy = zips[1].with_name(zips[1].stem + "-legacy.zip")
    zipfile.ZipFile(legacy).extractall(tmp_path / "addons")
    proc = subprocess.run([sys.executable, "-c", _ENSURE_ZMQ, str(tmp_path / "addons")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = _result(proc)
    assert out["file"].startswith(str(tmp_path / "addons" / "autosim" / "_vendor" / "_wheels"))
    assert out["version"] and out["bpy"] is False
