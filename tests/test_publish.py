"""`--publish`: a watcher subscribed to a real toy run gets every iteration's psi and metric as
JSON, the space to decode psi with; CURVE keeps key-less watchers out; a non-loopback address
without keys is refused before anything runs."""

from __future__ import annotations

import json
import socket

import pytest
import zmq

from optimizer.cli import main as cli
from optimizer.publish import TOPIC, VERSION
from optimizer.run import read_metrics
from protocol import curve
from protocol.space import ParameterSpace


def _free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def _subscriber(ctx, endpoint, keys=None):
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RECONNECT_IVL, 10)  # dial often: the PUB binds only when the run starts
    if keys is not None:
        curve.secure_client(sub, keys)
    sub.setsockopt(zmq.SUBSCRIBE, TOPIC)
    sub.connect(endpoint)
    return sub


def _drain(sub, wait_ms=500):
    got = []
    while sub.poll(wait_ms):
        topic, body = sub.recv_multipart()
        assert topic == TOPIC
        got.append(json.loads(body))
    return got


def _toy_run(out, endpoint, *extra):
    return cli(["optimize", "--scene", "toy", "--budget-images", "192", "--k", "64",
                "--out", str(out), "--no-progress", "--publish", endpoint, *extra])


def test_a_watcher_gets_every_iteration_of_a_toy_run(tmp_path):
    endpoint = _free_endpoint()
    ctx = zmq.Context()
    sub = _subscriber(ctx, endpoint)
    try:
        assert _toy_run(tmp_path / "run", endpoint) == 0
        got = _drain(sub)
    finally:
        sub.close()
        ctx.term()
    metrics = read_metrics(tmp_path / "run")
    assert len(got) == len(metrics) >= 2
    for msg, rec in zip(got, metrics):
        assert msg["version"] == VERSION and msg["run"] == "run" and msg["scene"] == "toy"
        assert msg["metric_name"] == "accuracy"
        for key in ("iteration", "images_rendered", "val_metric", "psi"):
            assert msg[key] == rec[key], key
    assert [m["final"] for m in got] == [False] * (len(got) - 1) + [True]
    assert "space" in got[0] and "space" not in got[1]
    space = ParameterSpace.from_dict(got[0]["space"])
    assert space.psi_dim == len(got[-1]["psi"])


def test_curve_watcher_needs_the_keys(tmp_path):
    keys = tmp_path / "keys"
    assert cli(["keys", "--out", str(keys)]) == 0
    endpoint = _free_endpoint()
    ctx = zmq.Context()
    anon = _subscriber(ctx, endpoint)
    keyed = _subscriber(ctx, endpoint, keys)
    try:
        assert _toy_run(tmp_path / "run", endpoint, "--curve", str(keys)) == 0
        got = _drain(keyed)
        assert _drain(anon, wait_ms=100) == []
    finally:
        anon.close()
        keyed.close()
        ctx.term()
    assert [m["iteration"] for m in got] == [r["iteration"] for r in read_metrics(tmp_path / "run")]


def test_non_loopback_without_keys_is_refused(tmp_path, capsys):
    assert _toy_run(tmp_path / "run", "tcp://0.0.0.0:5999") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--publish tcp://0.0.0.0:5999 is not a loopback address" in err[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:5999", "tcp://[::1]:5999",
                                      "ipc:///tmp/x"])
def test_loopback_needs_no_keys(endpoint):
    from optimizer.publish import check

    check(endpoint, None)


def test_bench_publishes_each_run_under_its_own_name(tmp_path):
    endpoint = _free_endpoint()
    ctx = zmq.Context()
    sub = _subscriber(ctx, endpoint)
    try:
        assert cli(["bench", "--scene", "toy", "--methods", "autosimulate,random", "--seeds", "1",
                    "--budget-images", "128", "--judge-at", "1", "--judge-train-n", "64",
                    "--judge-epochs", "1", "--judge-val-n", "64", "--judge-test-n", "64",
                    "--k", "64", "--m", "64", "--out", str(tmp_path / "b"),
                    "--publish", endpoint]) == 0
        got = _drain(sub)
    finally:
        sub.close()
        ctx.term()
    runs = [m["run"] for m in got]
    names = sorted(set(runs))
    assert len(names) == 2 and names[0].endswith("/autosimulate-seed0") \
        and names[1].endswith("/random-seed0"), names
    for name in set(runs):
        mine = [m for m in got if m["run"] == name]
        assert "space" in mine[0] and mine[-1]["final"] and not any(m["final"] for m in mine[:-1])
