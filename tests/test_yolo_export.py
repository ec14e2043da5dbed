"""`autosim render --format yolo` writes what ultralytics' own `yolo train data=...` accepts."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.blender


def test_yolo_format_passes_the_checker_and_trains_one_epoch_offline(tmp_path):
    data = tmp_path / "set"
    out = subprocess.run([sys.executable, "-m", "optimizer.cli", "render", "--scene", "placement",
                          "--n", "6", "--size", "64", "--out", str(data), "--format", "yolo",
                          "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert not (data / "masks").exists()
    assert len(list((data / "labels").glob("*.txt"))) == 6
    script = textwrap.dedent(f"""
        import socket
        def refuse(*a, **k):
            raise AssertionError("network access attempted: %r" % (a,))
        socket.socket.connect = refuse
        socket.getaddrinfo = refuse
        import optimizer
        from ultralytics import YOLO
        from ultralytics.data.utils import check_det_dataset
        info = check_det_dataset({str(data / "data.yaml")!r})
        assert info["nc"] == 8, info
        assert info["names"][6] == "monkey", info["names"]
        model = YOLO("yolo11n.yaml")
        res = model.train(data={str(data / "data.yaml")!r}, epochs=1, imgsz=64, batch=3,
                          device="cpu", workers=0, plots=False, amp=False, verbose=False,
                          project={str(tmp_path / "train")!r}, name="t", exist_ok=True)
        print("TRAINED", res.box.map50 >= 0)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "TRAINED True" in run.stdout
    assert (tmp_path / "train" / "t" / "weights" / "last.pt").exists()
