"""The recipe files of docs/farm.md (examples/farm/) are what the doc shows, and the keys the
Kubernetes Job mounts are the ones a connecting render server reads."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from protocol import curve

ROOT = Path(__file__).resolve().parents[1]
FARM = ROOT / "examples" / "farm"
# What a render server that connects (a CURVE client) reads from its --curve folder
NEEDED = {f"{curve.CLIENT}.key_secret", f"{curve.SERVER}.key"}


def fenced_blocks(markdown: str) -> list[str]:
    """The bodies of a Markdown file's ``` blocks, each with its final newline."""
    return re.findall(r"^```[\w-]*\n(.*?)^```$", markdown, flags=re.M | re.S)


@pytest.mark.parametrize("name", ["render.sbatch", "render-job.yaml", "autosim-render.service"])
def test_farm_md_shows_each_recipe_file_as_is(name) -> None:
    blocks = fenced_blocks((ROOT / "docs" / "farm.md").read_text())
    assert (FARM / name).read_text() in blocks


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("curve") / "farm-keys"
    done = subprocess.run([sys.executable, "-m", "optimizer.cli", "keys", "--out", str(out)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    return out


def test_a_connecting_server_needs_exactly_two_key_files(tmp_path, keys) -> None:
    """NEEDED is what secure_client reads: enough, and neither file can be left out."""
    import zmq

    ctx = zmq.Context()
    try:
        for left_out in [None, *sorted(NEEDED)]:
            folder = tmp_path / f"without-{left_out}"
            folder.mkdir()
            for name in NEEDED - {left_out}:
                (folder / name).write_bytes((keys / name).read_bytes())
            with ctx.socket(zmq.DEALER) as sock:
                if left_out is None:
                    curve.secure_client(sock, folder)
                else:
                    with pytest.raises(curve.KeysError, match=re.escape(left_out)):
                        curve.secure_client(sock, folder)
    finally:
        ctx.term()
