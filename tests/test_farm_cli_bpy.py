"""The render farm from the command line, real processes only: `autosim optimize` with
recycling local servers (--max-renders). Small clevr runs (32 px, K=4, one epoch)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.blender,
    pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="needs the bpy module"),
]

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "optimizer.cli"]
SMALL = ["--scene", "clevr", "--k", "4", "--epochs", "1", "--no-progress", "--threads", "1"]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def assert_complete(run: Path, budget: int) -> None:
    """Every iteration logged once, in order, up to the budget; the run's files written."""
    records = metrics(run)
    assert [r["iteration"] for r in records] == list(range(budget // 4))
    assert [r["images_rendered"] for r in records] == list(range(4, budget + 1, 4))
    assert (run / "final_space.json").exists() and (run / "report.png").exists()


@pytest.fixture(scope="module")
def val(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("farm") / "val"
    done = subprocess.run([*CLI, "render", "--scene", "clevr", "--n", "4", "--size", "32",
                           "--out", str(out), "--threads", "1", "--no-progress"],
                          capture_output=True, text=True, timeout=120, env=env(), cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return out


def test_optimize_with_max_renders_keeps_its_local_servers(tmp_path, val) -> None:
    run = tmp_path / "run"
    done = subprocess.run([*CLI, "optimize", *SMALL, "--val", str(val), "--budget-images",
                           "24", "--out", str(run), "--local-servers", "2",
                           "--max-renders", "6"],
                          capture_output=True, text=True, timeout=300, env=env(), cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_complete(run, 24)
    # 24 images, 6 per process: the first two recycled mid-run, fresh ones took their place
    restarted = re.findall(r"local render server (\d) recycled: restarted", done.stderr)
    assert sorted(set(restarted)) == ["0", "1"], done.stderr[-3000:]
    assert "not restarted" not in done.stderr and "Traceback" not in done.stderr
