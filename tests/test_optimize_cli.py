"""`autosim optimize` as a user runs it: real processes, files, resume, and failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from protocol.space import ParameterSpace

PY = [sys.executable, "-m", "optimizer.cli"]


def autosim(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*PY, *args], capture_output=True, text=True, timeout=timeout)


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _wait_lines(run: Path, n: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        path = run / "metrics.jsonl"
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError(f"no {n} metric lines within {timeout} s")


def test_toy_run_writes_everything_and_improves(tmp_path):
    run = tmp_path / "run"
    out = autosim("optimize", "--scene", "toy", "--budget-images", "10240", "--seed", "3",
                  "--out", str(run), "--device", "auto")
    assert out.returncode == 0, out.stderr
    assert "accuracy:" in out.stdout and "report:" in out.stdout
    records = _metrics(run)
    assert [r["iteration"] for r in records] == list(range(40))
    for key in ("iteration", "images_rendered", "wall_s", "val_metric", "psi", "overhead"):
        assert key in records[0]
    assert records[-1]["images_rendered"] == 10240
    assert max(r["val_metric"] for r in records[-5:]) > records[0]["val_metric"] + 0.1
    final = ParameterSpace.from_json((run / "final_space.json").read_text())
    assert final.psi.tolist() == records[-1]["psi"]
    assert (run / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    state = torch.load(run / "checkpoint.pt", weights_only=False)
    assert state["algorithm"]["iteration"] == 40


def test_interrupted_run_resumes_without_gaps(tmp_path):
    run = tmp_path / "run"
    # SIG_DFL in the child: a test run started in the background by a shell inherits SIGINT
    # ignored, and Python then never raises KeyboardInterrupt (the run just finishes).
    # 20 epochs per iteration: the run lasts a few seconds, so the interrupt lands mid-run.
    proc = subprocess.Popen([*PY, "optimize", "--scene", "toy", "--budget-images", "6400",
                             "--out", str(run), "--k", "64", "--epochs", "20"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_lines(run, 3, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err
    done = len(_metrics(run))
    assert done < 100
    out = autosim("optimize", "--resume", str(run))
    assert out.returncode == 0, out.stderr
    records = _metrics(run)
    assert [r["iteration"] for r in records] == list(range(100))
    images = [r["images_rendered"] for r in records]
    assert images == sorted(images) and images[-1] == 6400
    assert records[-1]["wall_s"] >= records[done - 1]["wall_s"]


@pytest.mark.parametrize("args,needle", [
    (["--scene", "moon"], "unknown scene 'moon'"),
    (["--scene", "toy", "--method", "magic"], "unknown method 'magic'"),
    (["--scene", "clevr"], "needs --val"),
    (["--scene", "clevr", "--val", "/nonexistent/val"], "no such folder"),
    (["--scene", "toy", "--approx", "cubic"], "invalid choice"),
    (["--scene", "toy", "--fix", "nothing*"], "matches no parameter"),
    (["--scene", "toy", "--device", "tpu"], "--device"),
])
def test_bad_arguments_give_one_line(tmp_path, args, needle):
    out = autosim("optimize", "--budget-images", "64", "--out", str(tmp_path / "r"), *args)
    assert out.returncode != 0
    assert needle in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_bad_val_folder_and_resume_errors(tmp_path):
    val = tmp_path / "val"
    (val / "images").mkdir(parents=True)
    out = autosim("optimize", "--scene", "clevr", "--val", str(val), "--budget-images", "16",
                  "--out", str(tmp_path / "r"))
    assert out.returncode == 2 and "masks/" in out.stderr and "Traceback" not in out.stderr
    (val / "masks").mkdir()
    (val / "images" / "a.png").write_bytes(b"not a png")
    (val / "masks" / "a.png").write_bytes(b"not a png")
    out = autosim("optimize", "--scene", "clevr", "--val", str(val), "--budget-images", "16",
                  "--out", str(tmp_path / "r2"))
    assert out.returncode == 2 and "a.png" in out.stderr and "not a readable image" in out.stderr
    out = autosim("optimize", "--resume", str(tmp_path / "nothing"))
    assert out.returncode == 2 and "config.json" in out.stderr


def test_unreachable_server_fails_fast_and_clearly(tmp_path):
    val = tmp_path / "val"
    import numpy as np

    from protocol.dataset import DatasetWriter

    with DatasetWriter(val, ["background", "sphere", "cube", "cylinder"]) as w:
        w.add(np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32), np.uint8), np.zeros((0, 4)),
              np.zeros(0), {})
    started = time.monotonic()
    out = autosim("optimize", "--scene", "clevr", "--val", str(val), "--budget-images", "16",
                  "--out", str(tmp_path / "r"), "--server", "tcp://127.0.0.1:9", "--timeout", "2")
    assert out.returncode == 3 and "tcp://127.0.0.1:9" in out.stderr
    assert "did not answer" in out.stderr and "Traceback" not in out.stderr
    assert time.monotonic() - started < 60


def _start_server(log: Path) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "blender_addon.serve", "--scene", "clevr",
                             "--bind", "tcp://127.0.0.1:*", "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=open(log, "w"), text=True, env=env)
    line = proc.stdout.readline()
    assert line.startswith("AUTOSIM_READY"), log.read_text()
    return proc, json.loads(line.split(" ", 1)[1])["endpoint"]


@pytest.mark.blender
def test_clevr_run_against_a_server_that_dies_then_resume(tmp_path):
    val = tmp_path / "val"
    out = autosim("render", "--scene", "clevr", "--n", "6", "--size", "32", "--out", str(val),
                  "--threads", "1")
    assert out.returncode == 0, out.stderr
    server, endpoint = _start_server(tmp_path / "s1.log")
    run = tmp_path / "run"
    try:
        proc = subprocess.Popen(
            [*PY, "optimize", "--scene", "clevr", "--val", str(val), "--budget-images", "400",
             "--k", "4", "--epochs", "1", "--out", str(run), "--server", endpoint,
             "--timeout", "5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_lines(run, 2, proc)
        server.kill()
        _, err = proc.communicate(timeout=120)
    finally:
        server.kill()
        server.wait()
    assert proc.returncode == 3, err
    assert endpoint in err and "Traceback" not in err
    records = _metrics(run)
    state = torch.load(run / "checkpoint.pt", weights_only=False)
    assert state["algorithm"]["iteration"] >= len(records) >= 2
    # a fresh server, and the run carries on from its checkpoint
    server, endpoint = _start_server(tmp_path / "s2.log")
    try:
        out = autosim("optimize", "--resume", str(run), "--server", endpoint,
                      "--budget-images", str(4 * (len(records) + 2)))
    finally:
        server.terminate()
        server.wait(30)
    assert out.returncode == 0, out.stderr
    again = _metrics(run)
    assert [r["iteration"] for r in again] == list(range(len(again)))
    assert len(again) == len(records) + 2
    assert (run / "report.png").exists()


@pytest.mark.blender
def test_demo_runs_end_to_end_small(tmp_path):
    out = autosim("demo", "--out", str(tmp_path / "demo"), "--n", "4", "--size", "32",
                  "--budget-images", "32", "--k", "8", "--threads", "1", "--no-progress",
                  "--judge-seeds", "1", "--judge-train-n", "8", "--test-n", "4")
    assert out.returncode == 0, out.stderr
    for needle in ("AutoSimulate (quadratic approximation)", "validation mIoU", "key_light",
                   "distance of the optimised psi", "report:", "test mIoU, start psi",
                   "test mIoU, learned psi", "test mIoU, validation psi", "gap closed"):
        assert needle in out.stdout
    judged = json.loads((tmp_path / "demo" / "judged.json").read_text())
    assert set(judged) == {"start", "learned", "validation", "gap"}
    assert all(0.0 <= judged[k]["mean"] <= 1.0 for k in ("start", "learned", "validation"))
    assert len(list((tmp_path / "demo" / "test" / "images").iterdir())) == 4
    records = _metrics(tmp_path / "demo" / "run")
    assert len(records) == 4 and records[-1]["images_rendered"] == 32
    assert (tmp_path / "demo" / "run" / "report.png").exists()
    fixed = ParameterSpace.from_json((tmp_path / "demo" / "run" / "final_space.json").read_text())
    assert not fixed.free_mask[fixed.psi_slices["obj0_xy"]].any()


def test_bench_toy_writes_table_json_and_plot(tmp_path):
    out = autosim("bench", "--scene", "toy", "--methods", "autosimulate,no_val", "--seeds", "2",
                  "--budget-images", "640", "--k", "64", "--out", str(tmp_path / "b"))
    assert out.returncode == 0, out.stderr
    table = (tmp_path / "b" / "bench.md").read_text()
    assert "| autosimulate |" in table and "| no_val |" in table
    assert "The judge's own range (test accuracy" in table and "| real | - |" in table
    data = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert len(data["runs"]) == 4 and len(data["references"]["real"]["start"]) == 2
    assert data["references"]["real"]["target"] is None  # the toy's real data: no config
    for run in data["runs"]:
        assert run["images"] == 640 and 0.0 <= run["test_metric"] <= 1.0
        assert [c["images"] for c in run["checkpoints"]] == [128, 320, 640]
    assert (tmp_path / "b" / "bench.png").read_bytes()[:4] == b"\x89PNG"
    bad = autosim("bench", "--scene", "toy", "--methods", "autosimulate,nope", "--out",
                  str(tmp_path / "c"))
    assert bad.returncode == 2 and "unknown method 'nope'" in bad.stderr


@pytest.mark.blender
def test_placement_detection_run_writes_the_54_config_plot(tmp_path):
    val = tmp_path / "val"
    out = autosim("render", "--scene", "placement", "--n", "4", "--size", "64", "--format",
                  "yolo", "--out", str(val), "--threads", "1")
    assert out.returncode == 0, out.stderr
    run = tmp_path / "run"
    out = autosim("optimize", "--scene", "placement", "--task", "detection", "--val", str(val),
                  "--budget-images", "12", "--k", "4", "--epochs", "1", "--batch-size", "4",
                  "--warmup", "1", "--out", str(run), "--threads", "1", "--no-progress")
    assert out.returncode == 0, out.stderr
    assert "mAP50:" in out.stdout and "config: P(the 5 choices" in out.stdout
    records = _metrics(run)
    assert len(records) == 3 and all(np.isfinite(r["psi"]).all() for r in records)
    start = ParameterSpace.from_json((run / "final_space.json").read_text()).with_psi(
        np.asarray(records[0]["psi"]))
    end = ParameterSpace.from_json((run / "final_space.json").read_text())
    config = start.psi_slices["config"]
    assert records[0].get("warmup") and np.allclose(start.psi[config], 0.0)  # held in warm-up
    assert not np.allclose(end.psi[config], 0.0)  # then the 54-way categorical moves
    # the scene's default: everything but the 54-way categorical held fixed
    assert end.free_mask[config].all() and end.free_mask.sum() == len(end.psi[config])
    assert json.loads((run / "config.json").read_text())["fix"] == ["object_set", "cluster_*"]
    assert (run / "config_distribution.png").read_bytes()[:4] == b"\x89PNG"
    bad = autosim("optimize", "--scene", "placement", "--task", "segmentation", "--val",
                  str(val), "--budget-images", "8", "--out", str(tmp_path / "r2"))
    assert bad.returncode == 2 and "trains a detection model" in bad.stderr


@pytest.mark.blender
def test_bench_placement_small(tmp_path):
    out = autosim("bench", "--scene", "placement", "--methods", "autosimulate,random",
                  "--seeds", "1", "--budget-images", "64", "--judge-val-n", "4",
                  "--judge-test-n", "4", "--judge-train-n", "8", "--judge-epochs", "1",
                  "--threads", "1", "--out", str(tmp_path / "b"))
    assert out.returncode == 0, out.stderr
    data = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert {r["method"] for r in data["runs"]} == {"autosimulate", "random"}
    for run in data["runs"]:  # random's one evaluation is 64 images: both use the budget
        assert run["images"] == 64 and run["checkpoints"][-1]["images"] == 64
        (config,) = run["agreement"]  # the 54-way categorical, the only one optimised
        assert config["name"] == "config" and config["favoured"] == 5
        assert abs(config["mass_start"] - 5 / 54) < 1e-9 and config["mass_target"] > 0.8
    ref = data["references"]["shipped"]  # the scene's own validation configuration
    assert set(data["references"]) == {"shipped"} and len(ref["target"]) == 1
    table = (tmp_path / "b" / "bench.md").read_text()
    assert "P(favoured)" in table and "| shipped | config |" in table
    assert "mAP50" in (tmp_path / "b" / "bench.md").read_text()
    assert (tmp_path / "b" / "targets" / "shipped" / "test-set" / "labels").is_dir()


def test_categorical_agreement_reports_mass_on_favoured_choices_and_tv():
    from optimizer.report import agreement_lines, categorical_agreement

    spec = {"format": "autosim.space", "version": 1, "name": "t", "params": [
        {"name": "config", "kind": "categorical", "choices": ["a", "b", "c", "d"],
         "logits": [0.0, 0.0, 0.0, 0.0]},
        {"name": "same", "kind": "categorical", "choices": ["x", "y"], "logits": [0.0, 0.0]}]}
    start = ParameterSpace.from_json(json.dumps(spec))
    target = start.with_psi(np.array([np.log(7.0), 0, 0, 0, 0, 0]))  # p = .7 .1 .1 .1
    end = start.with_psi(np.array([np.log(3.0), 0, 0, 0, 0, 0]))     # p = .5 1/6 1/6 1/6
    (line,) = agreement_lines(categorical_agreement(start, end, target))  # "same": no line
    assert line.startswith("config: P(the 1 choice the validation configuration favours)")
    assert "0.250 -> 0.500 (validation 0.700)" in line
    # TV: start 0.5*(0.45 + 3*0.15) = 0.45; end 0.5*(0.2 + 3*(1/6 - 0.1)) = 0.2
    assert "total variation to it 0.450 -> 0.200" in line


def test_scene_default_fix_and_fix_none():
    from blender_addon.scenes import defaults
    from optimizer.optimize import fix_parameters, resolve_fix

    space = ParameterSpace.from_json(
        (Path(__file__).parents[1] / "blender_addon/scenes/placement.json").read_text())
    own = defaults("placement")
    assert resolve_fix([], own) == ["object_set", "cluster_*"]
    assert resolve_fix(["none"], own) == ["none"]
    assert resolve_fix([], defaults("clevr")) == ["obj*", "color"]
    fixed = fix_parameters(space, resolve_fix([], own))
    assert [p.name for p in fixed.params if not p.fixed] == ["config"]
    assert fix_parameters(space, ["none"]).free_mask.all()



def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.blender
def test_a_sigkilled_clevr_run_resumes_to_the_same_psi(tmp_path):
    val = tmp_path / "val"
    out = autosim("render", "--scene", "clevr", "--n", "6", "--size", "32", "--out", str(val),
                  "--threads", "1")
    assert out.returncode == 0, out.stderr
    common = ["optimize", "--scene", "clevr", "--val", str(val), "--budget-images", "24",
              "--k", "4", "--epochs", "1", "--threads", "1", "--seed", "1", "--no-progress"]
    whole = autosim(*common, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    run = tmp_path / "killed"
    proc = subprocess.Popen([*PY, *common, "--out", str(run)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        _wait_lines(run, 3, proc)
        servers = _children(proc.pid)
        proc.kill()  # no atexit, no finally: the optimizer just vanishes
        proc.wait(30)
    finally:
        proc.kill()
    assert servers, "the run started no local server"
    end = time.monotonic() + 30  # its local servers notice and stop by themselves
    while any(_alive(p) for p in servers) and time.monotonic() < end:
        time.sleep(0.2)
    assert not any(_alive(p) for p in servers), "local servers outlived their optimizer"
    assert len(_metrics(run)) < 6
    out = autosim("optimize", "--resume", str(run))
    assert out.returncode == 0, out.stderr
    a, b = _metrics(tmp_path / "whole"), _metrics(run)
    assert [r["iteration"] for r in b] == list(range(6))
    for ra, rb in zip(a, b):
        assert ra["images_rendered"] == rb["images_rendered"]
        np.testing.assert_array_equal(ra["psi"], rb["psi"])
    final = [ParameterSpace.from_json((d / "final_space.json").read_text()).psi
             for d in (tmp_path / "whole", run)]
    np.testing.assert_array_equal(*final)
