"""The request loop with a fake backend, in plain Python and over real ZeroMQ sockets."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blender_addon.server import Limits, RenderServer
from protocol import wire
from tests.fakes import FakeBackend


def ask(server: RenderServer, type_: str, fields=None, id_: str = "r1") -> wire.Message:
    return wire.decode(server.handle(wire.encode(type_, id_, fields)))


@pytest.fixture
def server():
    return RenderServer(FakeBackend(), limits=Limits(max_n=8, max_side=128))


def test_hello_describes_scene_space_and_generation(server):
    rep = ask(server, "hello", {"client": "pytest"})
    assert rep.type == "hello" and rep.id == "r1"
    f = rep.fields
    assert f["protocol"] == wire.PROTOCOL_VERSION
    assert f["scene"] == "fake" and f["classes"] == ["background", "sphere", "cube"]
    assert f["generation"] == 0
    assert f["psi"] == server.backend.space.psi.tolist()
    assert server.state.client == "pytest"


def test_set_params_bumps_generation_and_changes_sampling(server):
    seen = []
    server.on_change = lambda state: seen.append(state.generation)
    psi = server.state.space.psi
    psi[0] = 5.0
    rep = ask(server, "set_params", {"psi": psi.tolist(), "metrics": {"val_metric": 0.5}})
    assert rep.fields["generation"] == 1 and seen == [1]
    assert server.state.metrics == {"val_metric": 0.5}
    got = ask(server, "get_params").fields
    assert got["generation"] == 1 and got["psi"][0] == 5.0
    items = ask(server, "render", {"n": 4, "seed": 1}).fields["items"]
    assert all(it["generation"] == 1 for it in items)
    assert np.mean([it["latent_named"]["light"] for it in items]) > 3.5


def test_render_by_seed_is_reproducible_and_labels_items(server):
    a = ask(server, "render", {"n": 3, "seed": 7, "width": 32, "height": 16}).fields["items"]
    b = ask(server, "render", {"n": 3, "seed": 7, "width": 32, "height": 16}).fields["items"]
    assert [it["latent"] for it in a] == [it["latent"] for it in b]
    assert len({it["item_id"] for it in a + b}) == 6
    for it in a:
        assert it["image"].shape == (16, 32, 3) and it["image"].dtype == np.uint8
        assert it["mask"].shape == (16, 32)
        assert it["boxes"].shape == (1, 4) and it["classes"].tolist() in ([1], [2])
        assert it["seed"] == 7


def test_render_explicit_latents_echoes_them(server):
    space = server.state.space
    lat = space.sample(2, np.random.default_rng(0))
    items = ask(server, "render", {"latents": lat, "return": ["mask"]}).fields["items"]
    assert np.allclose([it["latent"] for it in items], lat)
    assert "image" not in items[0] and "mask" in items[0]


def test_set_params_with_a_stale_expected_generation_is_rejected(server):
    psi0 = server.state.space.psi
    psi1, psi2 = psi0.copy(), psi0.copy()
    psi1[0], psi2[0] = 2.0, 4.0
    rep = ask(server, "set_params", {"psi": psi1.tolist(), "expected_generation": 0})
    assert rep.type == "set_params" and rep.fields["generation"] == 1
    # a second writer that still believes the server is at generation 0
    rep = ask(server, "set_params", {"psi": psi2.tolist(), "expected_generation": 0}, id_="s2")
    assert rep.type == "error" and rep.id == "s2"
    assert rep.fields["code"] == "stale_generation"
    assert "expected_generation 0" in rep.fields["message"]
    assert server.state.generation == 1
    assert ask(server, "get_params").fields["psi"][0] == 2.0  # psi2 was not applied
    # ahead of the server is stale too; the current generation is accepted
    rep = ask(server, "set_params", {"psi": psi2.tolist(), "expected_generation": 5})
    assert rep.fields["code"] == "stale_generation" and server.state.generation == 1
    rep = ask(server, "set_params", {"psi": psi2.tolist(), "expected_generation": 1})
    assert rep.fields["generation"] == 2
    assert ask(server, "get_params").fields["psi"][0] == 4.0


BAD_REQUESTS = [
    ("render", {"n": 100, "seed": 0}, "bad_value", "n"),
    ("render", {"n": 1, "seed": 0, "width": 100000}, "bad_value", "width"),
    ("render", {"n": 2, "seed": 0, "return": ["depth"]}, "bad", "return"),
    ("render", {"latents": np.zeros((2, 3))}, "bad_value", "latents"),
    ("render", {"latents": np.array([[1.0, 0.0, 0.0, 5.0, 0.0]])}, "bad_value", "shape"),
    ("render", {"n": 1, "seed": 0, "generation": 99}, "stale_generation", "generation"),
    ("set_params", {"psi": [1.0, 2.0]}, "bad_value", "psi"),
    ("set_params", {"psi": [0.0, 9.0, 0, 0, 0, 0, 0, 0, 0]}, "bad_value", "log_std"),
    ("teleport", {}, "unknown_type", "teleport"),
]


@pytest.mark.parametrize("type_,fields,code,needle", BAD_REQUESTS)
def test_bad_requests_get_error_replies_and_server_keeps_serving(server, type_, fields, code,
                                                                 needle):
    rep = ask(server, type_, fields, id_="bad-1")
    assert rep.type == "error" and rep.id == "bad-1"
    assert rep.fields["code"].startswith(code)
    assert needle in rep.fields["message"]
    assert ask(server, "hello").type == "hello"
    assert server.state.generation == 0


def test_render_failure_is_reported_not_fatal(server):
    space = server.state.space
    lat = space.sample(2, np.random.default_rng(0))
    lat[1, space.latent_slices["explode"]] = 1.0
    rep = ask(server, "render", {"latents": lat})
    assert rep.fields["code"] == "render_failed" and "item 1" in rep.fields["message"]
    assert ask(server, "render", {"n": 1, "seed": 0}).type == "render"


def test_wrong_version_and_garbage_frames(server):
    frames = wire.encode("hello", "x")
    frames[0] = frames[0].replace(b'"v": 1', b'"v": 7').replace(b'"v":1', b'"v":7')
    rep = wire.decode(server.handle(frames))
    assert rep.fields["code"] == "bad_version"
    rep = wire.decode(server.handle([b"\xff\x00garbage"]))
    assert rep.type == "error" and rep.fields["code"] == "bad_json"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=200), max_size=4))
def test_fuzz_never_kills_handle(frames):
    server = RenderServer(FakeBackend(), limits=Limits(max_n=4, max_side=64))
    rep = wire.decode(server.handle(frames))
    assert rep.type in ("error",) + wire.REQUEST_TYPES
    assert ask(server, "hello").type == "hello"


@pytest.fixture
def live_server():
    server = RenderServer(FakeBackend(), limits=Limits(max_n=8, max_side=128))
    endpoint = server.bind("tcp://127.0.0.1:*")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_ms": 20}, daemon=True)
    thread.start()
    yield server, endpoint
    if thread.is_alive():
        ctx = zmq.Context.instance()
        s = ctx.socket(zmq.REQ)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(endpoint)
        s.send_multipart(wire.encode("shutdown", "bye"))
        s.poll(5000)
        s.close(0)
    thread.join(10)
    assert not thread.is_alive()
    server.close()


def test_over_zmq_req_and_dealer_and_shutdown(live_server):
    server, endpoint = live_server
    assert endpoint.startswith("tcp://127.0.0.1:")
    ctx = zmq.Context.instance()
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(endpoint)
    req.send_multipart(wire.encode("render", "a", {"n": 2, "seed": 3}))
    assert req.poll(10000)
    rep = wire.decode(req.recv_multipart())
    assert rep.id == "a" and len(rep.fields["items"]) == 2
    # malformed bytes over the socket: an error reply, and the socket keeps working
    req.send_multipart([b"not json at all"])
    assert req.poll(10000)
    assert wire.decode(req.recv_multipart()).fields["code"] == "bad_json"
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(endpoint)
    for rid in ("p1", "p2", "p3"):
        dealer.send_multipart([b"", *wire.encode("get_params", rid)])
    got = []
    for _ in range(3):
        assert dealer.poll(10000)
        frames = dealer.recv_multipart()
        got.append(wire.decode(frames[1:]).id)
    assert got == ["p1", "p2", "p3"]
    req.send_multipart(wire.encode("shutdown", "s"))
    assert req.poll(10000)
    assert wire.decode(req.recv_multipart()).type == "shutdown"
    req.close(0)
    dealer.close(0)


def test_a_hello_starts_a_run_and_set_params_names_the_metric(server):
    psi = server.state.space.psi.tolist()
    ask(server, "render", {"n": 2, "seed": 1})
    ask(server, "set_params", {"psi": psi, "metrics": {"val_metric": 0.4, "loss": 2.0},
                               "metric_name": "mIoU"})
    st = server.state
    assert (st.updates, st.images, st.metric_name, st.metrics["val_metric"]) == \
        (1, 2, "mIoU", 0.4)
    generation = st.generation
    ask(server, "hello", {"client": "second-run"})
    assert (st.requests, st.images, st.updates, st.metrics, st.metric_name, st.client) == \
        (1, 0, 0, {}, "", "second-run")
    assert st.generation == generation  # psi versions keep counting: stale work stays stale


def test_tracked_peers_clear_the_client_when_it_leaves():
    server = RenderServer(FakeBackend(), track_peers=True)
    endpoint = server.bind("tcp://127.0.0.1:*")
    ctx = zmq.Context.instance()
    try:
        req = ctx.socket(zmq.REQ)
        req.setsockopt(zmq.LINGER, 0)
        req.connect(endpoint)
        req.send_multipart(wire.encode("hello", "h", {"client": "opt"}))
        for _ in range(200):
            server.step(timeout_ms=10)
            if req.poll(0):
                break
        req.recv_multipart()
        for _ in range(200):  # the monitor's "accepted" event may come after the reply
            if server.state.peers:
                break
            server.step(timeout_ms=10)
        assert server.state.client == "opt" and server.state.peers == 1
        req.close(0)
        for _ in range(200):
            server.step(timeout_ms=10)
            if not server.state.client:
                break
        assert server.state.client == "" and server.state.peers == 0
    finally:
        server.close()


def test_remote_simulator_over_two_servers_survives_one_dying():
    from optimizer.simulators.remote import RemoteSimulator

    servers, threads, endpoints = [], [], []
    for _ in range(2):
        s = RenderServer(FakeBackend())
        endpoints.append(s.bind("tcp://127.0.0.1:*"))
        t = threading.Thread(target=s.serve_forever, kwargs={"poll_ms": 20}, daemon=True)
        t.start()
        servers.append(s)
        threads.append(t)
    with RemoteSimulator(endpoints, timeout_s=3) as sim:
        lat = sim.sample(6, np.random.default_rng(0))
        batch = sim.render(lat, 32, 32)
        assert batch.images.shape == (6, 32, 32, 3)
        assert sum(len(s.backend.calls) for s in servers) == 6
        assert all(len(s.backend.calls) == 3 for s in servers)
        psi = sim.space.psi
        psi[0] = 4.0
        sim.set_psi(psi, {"val_metric": 0.25})
        assert all(s.state.generation == 1 for s in servers)
        # server 1 stops answering: its share is re-rendered by server 0
        sim.clients[1].request("shutdown")
        threads[1].join(5)
        batch = sim.render(lat, 32, 32)
        assert len(batch) == 6 and endpoints[1] in sim.dead
        np.testing.assert_array_equal(batch.latents, lat)
        sim.shutdown_servers()
    threads[0].join(5)
    for s in servers:
        s.close()


def test_the_last_reply_is_delivered_although_close_follows_at_once():
    """A recycle (or shutdown) reply of several MB is still queued when close() runs; the
    socket lingers for it instead of dropping it as the process exits."""
    server = RenderServer(FakeBackend(), max_renders=1)
    endpoint = server.bind("tcp://127.0.0.1:*", heartbeat=None)
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(endpoint)
    try:
        dealer.send_multipart([b"", *wire.encode("render", "big", {"n": 1, "seed": 0,
                                                                   "width": 1024,
                                                                   "height": 1024})])
        assert server.step(timeout_ms=10000) is False  # recycled: the loop ends
        server.close()
        assert dealer.poll(10000)
        rep = wire.decode(dealer.recv_multipart()[1:])
        assert rep.id == "big" and rep.fields["recycle"] is True
        assert rep.fields["items"][0]["image"].shape == (1024, 1024, 3)
    finally:
        dealer.close(0)
        server.close()
        ctx.term()


def test_latents_must_be_two_dimensional_and_the_message_says_so(server):
    one = server.state.space.sample(1, np.random.default_rng(0))  # (1, 5)
    rep = ask(server, "render", {"latents": np.zeros((1, 6))})
    assert rep.fields["code"] == "bad_value"
    assert rep.fields["message"] == "latents: expected shape (K, 5), got (1, 6)"
    for flat in (one[0], one[0].tolist()):  # a single row without its K axis is refused
        assert ask(server, "render", {"latents": flat}).fields["code"] == "bad_type"
    assert ask(server, "render", {"latents": one}).type == "render"
