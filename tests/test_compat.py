"""torchvision on a CPU torch and ultralytics offline must just work after importing autosim."""

import subprocess
import sys
import textwrap

import pytest

import optimizer  # noqa: F401  (installs the import hook)

torch = pytest.importorskip("torch")


def _reference_nms(boxes, scores, thr):
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    keep = []
    for i in order:
        ok = True
        for j in keep:
            x0 = max(boxes[i][0], boxes[j][0])
            y0 = max(boxes[i][1], boxes[j][1])
            x1 = min(boxes[i][2], boxes[j][2])
            y1 = min(boxes[i][3], boxes[j][3])
            inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
            a_i = (boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1])
            a_j = (boxes[j][2] - boxes[j][0]) * (boxes[j][3] - boxes[j][1])
            if inter / (a_i + a_j - inter) > thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", range(5))
def test_nms_matches_reference(seed):
    from torchvision.ops import batched_nms, nms

    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(60, 2, generator=g) * 50
    wh = torch.rand(60, 2, generator=g) * 20 + 1
    boxes = torch.cat([xy, xy + wh], 1)
    scores = torch.rand(60, generator=g)
    for thr in (0.1, 0.5, 0.7):
        ref = _reference_nms(boxes.tolist(), scores.tolist(), thr)
        assert nms(boxes, scores, thr).tolist() == ref
    idx = torch.randint(0, 3, (60,), generator=g)
    kept = batched_nms(boxes, scores, idx, 0.5)
    for c in range(3):
        sel = (idx == c).nonzero().flatten()
        ref = {int(sel[k]) for k in _reference_nms(boxes[sel].tolist(), scores[sel].tolist(), 0.5)}
        assert {int(k) for k in kept if idx[k] == c} == ref


def test_nms_empty():
    from torchvision.ops import nms

    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0


def test_ultralytics_builds_and_predicts_with_network_blocked(tmp_path):
    """A fresh process with every socket call failing: import autosim, build YOLO, run NMS."""
    code = textwrap.dedent("""
        import socket
        def refuse(*a, **k):
            raise AssertionError("network access attempted: %r" % (a,))
        socket.socket.connect = refuse
        socket.getaddrinfo = refuse
        socket.create_connection = refuse
        import optimizer
        import torch
        from ultralytics.nn.tasks import DetectionModel
        from ultralytics.utils.nms import non_max_suppression
        m = DetectionModel("yolo11n.yaml", nc=3, verbose=False).eval()
        with torch.no_grad():
            out = m(torch.rand(1, 3, 64, 64))
        det = non_max_suppression(out[0] if isinstance(out, (list, tuple)) else out)
        print("OK", len(det))
    """)
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "AUTOSIM_CACHE_DIR": str(tmp_path / "c")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=300, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK 1" in proc.stdout
    assert (tmp_path / "c" / "ultralytics" / "Arial.ttf").exists()
