"""The `autosim` command line, as a user runs it: real processes, real local render servers."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from protocol.space import ParameterSpace


def autosim(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "optimizer.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_help_and_version():
    out = autosim("--help")
    assert out.returncode == 0
    for command in ("demo", "render", "serve"):
        assert command in out.stdout
    version = autosim("--version")
    assert version.returncode == 0 and version.stdout.startswith("autosim 0.")


@pytest.mark.parametrize("args,needle", [
    (["render", "--scene", "nope", "--n", "1", "--out", "x"], "unknown scene 'nope'"),
    (["render", "--n", "0", "--out", "x"], "--n must be at least 1"),
    (["render", "--n", "1", "--size", "3", "--out", "x"], "--size"),
    (["render", "--n", "1", "--out", "x", "--server", "tcp://127.0.0.1:9", "--timeout", "1"],
     "did not answer"),
    (["render", "--n", "1", "--out", "x", "--server", "tcp://127.0.0.1:9", "--max-renders",
      "5"], "servers you start take it themselves"),
    (["render", "--n", "1", "--out", "x", "--max-renders", "-1"], "--max-renders must be >= 0"),
])
def test_bad_input_is_one_readable_line(args, needle):
    out = autosim(*args, timeout=60)
    assert out.returncode != 0
    assert needle in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_bad_params_file(tmp_path):
    bad = tmp_path / "p.json"
    bad.write_text('{"format": "autosim.space", "version": 1, "params": [{"name": "x"}]}')
    out = autosim("render", "--params", str(bad), "--n", "1", "--out", str(tmp_path / "o"))
    assert out.returncode == 2
    assert "p.json" in out.stderr and "kind" in out.stderr and "Traceback" not in out.stderr
    out = autosim("render", "--params", str(tmp_path / "missing.json"), "--n", "1",
                  "--out", str(tmp_path / "o"))
    assert out.returncode == 2 and "missing.json" in out.stderr


@pytest.mark.blender
def test_render_writes_a_consistent_dataset(tmp_path):
    out_dir = tmp_path / "val"
    out = autosim("render", "--scene", "clevr", "--n", "5", "--seed", "3", "--size", "32",
                  "--out", str(out_dir), "--threads", "2")
    assert out.returncode == 0, out.stderr
    assert "rendered 5 images" in out.stdout
    items = [json.loads(line) for line in (out_dir / "items.jsonl").read_text().splitlines()]
    assert [it["file"] for it in items] == [f"{i:06d}" for i in range(5)]
    from blender_addon.scenes import space_dict

    space = ParameterSpace.from_json((out_dir / "space.json").read_text())
    assert space == ParameterSpace.from_dict(space_dict("clevr")).preset("validation")
    # item i's latent is the validation preset's draw from its own generator [seed, i]
    np.testing.assert_allclose([it["latent"] for it in items], np.concatenate(
        [space.sample(1, np.random.default_rng([3, i])) for i in range(5)]))
    from PIL import Image

    for it in items:
        image = np.array(Image.open(out_dir / "images" / f"{it['file']}.png"))
        mask = np.array(Image.open(out_dir / "masks" / f"{it['file']}.png"))
        assert image.shape == (32, 32, 3) and mask.shape == (32, 32)
        labels = (out_dir / "labels" / f"{it['file']}.txt").read_text().split("\n")
        classes = sorted({int(line.split()[0]) + 1 for line in labels if line})
        assert classes == sorted(set(np.unique(mask)) - {0})


def test_the_command_line_and_serve_do_not_import_torch():
    # a render node runs `autosim serve`: it must not pay for (or need) torch at startup
    code = ("import sys; from optimizer.cli import build_parser; build_parser(); "
            "import blender_addon.serve; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr
