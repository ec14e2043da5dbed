"""The baselines (REINFORCE, Bayesian optimisation, random search) on the Gaussian-mixture toy."""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import pytest
import torch

from optimizer.algorithms import get
from optimizer.algorithms.blackbox import search_box
from optimizer.algorithms.objective import Evaluation
from optimizer.algorithms.reinforce import Reinforce
from optimizer.simulators.toy import COMPONENTS, ToySimulator
from protocol.space import LOG_STD_RANGE
from tests.fakes import PoisonedToy, toy_context

TOY = {"m": 64, "epochs": 5, "batch_size": 32, "lr_theta": 1e-2}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny models: intra-op threads only add contention on a busy machine (restored after)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _algo(name, sim=None, seed=0, **options):
    ctx, published = toy_context(sim, seed, val_n=200)
    return get(name)(ctx, **{**TOY, **options}), published


def _only_free(*names):
    """A toy simulator whose parameters other than `names` are fixed."""
    sim = ToySimulator()
    for name in COMPONENTS:
        if name not in names:
            sim.space = sim.space.with_fixed(name, True)
    return sim


def _fake_objective(algo, fn):
    """Replace the render-train-validate objective by fn(psi) -> metric; records the psi seen."""
    seen = []

    def evaluate(psi):
        seen.append(np.array(psi, dtype=np.float64))
        return Evaluation(metric=float(fn(np.asarray(psi))), train_loss=0.0, train_s=0.0)

    algo.evaluate = evaluate
    return seen


# ---------------------------------------------------------------------------- every method
@pytest.mark.parametrize("name,options,steps,images_per_step", [
    ("reinforce", {"k": 3, "m": 16}, 2, 3 * 16),
    ("reinforce", {"k": 2, "m": 16, "retain": True}, 2, 2 * 16),
    ("bayesopt", {"m": 16, "init_points": 2}, 4, 16),
    ("random", {"m": 16}, 3, 16),
])
def test_runs_on_the_toy_with_identical_budget_accounting(name, options, steps, images_per_step):
    sim = ToySimulator()
    sim.space = sim.space.with_fixed("c0a", True)
    algo, published = _algo(name, sim, **options)
    start = algo.space.unpack_psi()["c0a"]
    records = [algo.step() for _ in range(steps)]
    assert algo.budget.images == steps * images_per_step
    evals_per_step = options.get("k", 1)
    assert algo.budget.evaluations == steps * evals_per_step
    assert [r["evaluations"] for r in records] == [evals_per_step * (i + 1)
                                                   for i in range(steps)]
    assert algo.budget.train_s > 0 and algo.iteration == steps
    assert all(0.0 <= r["val_metric"] <= 1.0 for r in records)
    assert np.isfinite(algo.psi).all() and len(published) == steps
    np.testing.assert_array_equal(published[-1][0], algo.psi)
    assert published[-1][1]["val_metric"] == records[-1]["val_metric"]
    assert algo.space.unpack_psi()["c0a"] == start                 # fixed: never moves
    assert not np.array_equal(algo.psi, ToySimulator().space.psi)  # free: moved
    if name != "reinforce":
        low, high = algo.low, algo.high
        assert np.all(algo.psi[algo.free] >= low) and np.all(algo.psi[algo.free] <= high)
        assert records[-1]["val_metric"] == max(r["eval_metric"] for r in records)


def test_search_box_rule():
    space = ToySimulator().space
    psi = space.psi
    i = space.psi_labels.index("c1b.log_std[0]")
    psi[i] = 4.5
    space = space.with_fixed("c0a", True).with_psi(psi)
    low, high = search_box(space, radius=2.0, log_std_radius=1.0)
    labels = [lab for lab, f in zip(space.psi_labels, space.free_mask) if f]
    assert len(low) == 12 and not any(lab.startswith("c0a") for lab in labels)
    free_psi = space.psi[space.free_mask]
    for lab, lo, hi, p0 in zip(labels, low, high, free_psi):
        if lab == "c1b.log_std[0]":
            assert (lo, hi) == (3.5, LOG_STD_RANGE[1])
        elif ".log_std" in lab:
            assert (lo, hi) == pytest.approx((p0 - 1.0, p0 + 1.0))
        else:
            assert (lo, hi) == pytest.approx((p0 - 2.0, p0 + 2.0))


# ---------------------------------------------------------------------------- REINFORCE
def test_policy_gradient_by_hand():
    eps = np.array([[0.1, -0.2], [0.3, 0.0]])   # psi_k - omega
    rewards, baseline, sigma2 = np.array([1.0, 0.0]), 0.5, 0.05
    # advantages +0.5, -0.5; scores eps / 0.05 = [2, -4], [6, 0]; mean of [1, -2], [-3, 0]
    np.testing.assert_allclose(Reinforce.policy_gradient(eps, rewards, baseline, sigma2),
                               [-1.0, -1.0])


def test_reinforce_step_is_eq4_with_an_ema_baseline():
    algo, _ = _algo("reinforce", _only_free("c1a"), k=5, lr_policy=0.1, sigma2=0.05, ema=0.7)
    free, sigma2 = algo.free, 0.05
    c = algo.psi[free] + 0.3

    def reward(psi):
        return -float(np.sum((psi[free] - c) ** 2))

    seen = _fake_objective(algo, reward)
    omega0 = algo.psi.copy()
    rec1 = algo.step()
    psis = np.array(seen[:5])
    np.testing.assert_array_equal(psis[:, ~free], np.repeat(omega0[None, ~free], 5, axis=0))
    r1 = np.array([reward(p) for p in psis])
    b1 = r1.mean()                                  # baseline starts at the first mean reward
    expected = omega0.copy()
    expected[free] += 0.1 * np.mean([(p[free] - omega0[free]) / sigma2 * (r - b1)
                                     for p, r in zip(psis, r1)], axis=0)
    np.testing.assert_allclose(algo.psi, expected, rtol=1e-12)
    assert rec1["baseline"] == pytest.approx(b1) and algo.baseline == pytest.approx(b1)
    assert rec1["val_metric"] == pytest.approx(r1.max())
    assert rec1["reward_mean"] == pytest.approx(r1.mean())

    omega1 = algo.psi.copy()
    rec2 = algo.step()
    psis = np.array(seen[5:])
    r2 = np.array([reward(p) for p in psis])
    expected = omega1.copy()
    expected[free] += 0.1 * np.mean([(p[free] - omega1[free]) / sigma2 * (r - b1)
                                     for p, r in zip(psis, r2)], axis=0)
    np.testing.assert_allclose(algo.psi, expected, rtol=1e-12)
    assert rec2["baseline"] == pytest.approx(b1)                  # the one used this step
    assert algo.baseline == pytest.approx(0.7 * b1 + 0.3 * r2.mean())  # the next step's


def test_reinforce_moves_the_policy_mean_towards_the_best_psi():
    algo, _ = _algo("reinforce", _only_free("c0b", "c1a"), k=4, lr_policy=0.02)
    free = algo.free
    c = algo.psi[free] + np.tile([0.5, -0.5, 0.3, 0.3], 2)
    _fake_objective(algo, lambda psi: -np.sum((psi[free] - c) ** 2))
    d0 = np.linalg.norm(algo.psi[free] - c)
    for _ in range(60):
        algo.step()
    assert np.linalg.norm(algo.psi[free] - c) < 0.35 * d0


def test_reinforce_leaves_a_failed_evaluation_out():
    algo, _ = _algo("reinforce", k=3, lr_policy=0.1)
    calls = iter([0.5, float("nan"), 0.7, float("nan"), float("nan"), float("nan")])
    seen = _fake_objective(algo, lambda psi: next(calls))
    omega0 = algo.psi.copy()
    record = algo.step()
    assert record["failed"] == 1 and record["val_metric"] == 0.7
    assert algo.baseline == pytest.approx(0.6)
    free = algo.free
    expected = omega0.copy()
    expected[free] += 0.1 * np.mean([(seen[i][free] - omega0[free]) / 0.05 * (r - 0.6)
                                     for i, r in ((0, 0.5), (2, 0.7))], axis=0)
    np.testing.assert_allclose(algo.psi, expected, rtol=1e-12)
    psi = algo.psi.copy()
    with pytest.warns(UserWarning, match="every evaluation failed"):
        record = algo.step()
    assert record["failed"] == 3 and math.isnan(record["val_metric"])
    np.testing.assert_array_equal(algo.psi, psi)
    assert algo.baseline == pytest.approx(0.6)


def test_reinforce_retain_keeps_the_best_model_not_the_last():
    """Every psi_k fine-tunes the same start model; the one kept is the best-scoring's."""
    algo, _ = _algo("reinforce", k=4, retain=True)
    first = next(algo.model.parameters())
    rewards = iter([0.2, 0.9, float("nan"), 0.5,    # step 1: the second is best, NaN skipped
                    0.1, 0.3, 0.8, 0.6])            # step 2: the third
    starts = []

    def evaluate(psi):
        starts.append(first.detach().clone())
        with torch.no_grad():  # "training": leave a mark saying which evaluation this was
            first.fill_(float(len(starts)))
        return Evaluation(metric=next(rewards), train_loss=0.0, train_s=0.0)

    algo.evaluate = evaluate
    start = first.detach().clone()
    algo.step()
    assert all(torch.equal(s, start) for s in starts)        # each from the same start
    assert torch.equal(first, torch.full_like(first, 2.0))   # evaluation 2 scored 0.9
    algo.step()
    assert all(torch.equal(s, torch.full_like(first, 2.0)) for s in starts[4:])
    assert torch.equal(first, torch.full_like(first, 7.0))   # evaluation 7 scored 0.8


@pytest.mark.parametrize("retain", [False, True])
def test_reinforce_nan_render_never_reaches_psi(retain):
    algo, _ = _algo("reinforce", PoisonedToy({2}), k=3, m=16, retain=retain)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one failed sample of three is no warning
        record = algo.step()
    assert record["failed"] == 1 and math.isfinite(record["val_metric"])
    assert np.isfinite(algo.psi).all()
    if retain:
        assert all(torch.isfinite(p).all() for p in algo.model.parameters())


# ---------------------------------------------------------------------------- BO and random
def test_bayesopt_beats_random_search_on_a_known_maximum():
    offset = np.array([0.7, -1.2, 0.4, -0.5])  # means +-2, log-stds +-1: inside the box

    def run(name):
        algo, _ = _algo(name, _only_free("c1b"), seed=3)
        free = algo.free
        c = algo.psi[free] + offset
        _fake_objective(algo, lambda psi: -np.sum((psi[free] - c) ** 2))
        return [algo.step()["val_metric"] for _ in range(16)]

    bo, rnd = run("bayesopt"), run("random")
    assert bo[-1] > -0.1, bo            # BO gets close to the maximum (0) in 16 evaluations
    assert bo[-1] > rnd[-1] + 0.1, (bo[-1], rnd[-1])
    hit = [next((i for i, v in enumerate(curve) if v > -0.3), 99) for curve in (bo, rnd)]
    assert hit[0] < hit[1], hit


def test_bayesopt_never_registers_nan():
    algo, _ = _algo("bayesopt", _only_free("c1b"), init_points=2)
    values = iter([float("nan"), 0.4, float("nan"), 0.6, 0.5])
    seen = _fake_objective(algo, lambda psi: next(values))
    with pytest.warns(UserWarning, match="not registered"):
        rec = algo.step()
    assert len(algo.bo.space) == 0 and math.isnan(rec["val_metric"])
    np.testing.assert_array_equal(algo.psi, ToySimulator().space.psi)   # nothing better yet
    algo.step()
    with pytest.warns(UserWarning, match="worst value seen"):
        rec = algo.step()
    points, targets = algo.registered
    assert targets.tolist() == [0.4, 0.4] and np.isfinite(points).all()
    assert rec["val_metric"] == 0.4
    np.testing.assert_array_equal(algo.psi[algo.free], seen[1][algo.free])
    algo.step()
    algo.step()
    assert algo.registered[1].tolist() == [0.4, 0.4, 0.6, 0.5]
    assert algo.best_metric == 0.6 and np.isfinite(algo.psi).all()
    np.testing.assert_allclose(algo.psi[algo.free], seen[3][algo.free])


@pytest.mark.parametrize("name", ["bayesopt", "random"])
def test_a_failed_render_is_never_the_best_psi(name):
    algo, _ = _algo(name, PoisonedToy({2}), m=16, init_points=2) if name == "bayesopt" \
        else _algo(name, PoisonedToy({2}), m=16)
    first = algo.step()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        second = algo.step()
    assert math.isnan(second["eval_metric"]) and not second["improved"]
    assert second["val_metric"] == first["val_metric"] and np.isfinite(algo.psi).all()


# ---------------------------------------------------------------------------- resume
@pytest.mark.parametrize("name,options", [
    ("reinforce", {"k": 2, "m": 16}),
    ("reinforce", {"k": 2, "m": 16, "retain": True}),
    ("bayesopt", {"m": 16, "init_points": 2}),
    ("random", {"m": 16}),
])
def test_state_dict_round_trip_continues_identically(name, options):
    straight, _ = _algo(name, _only_free("c0b", "c1a"), seed=5, **options)
    expected = [straight.step() for _ in range(5)]

    first, _ = _algo(name, _only_free("c0b", "c1a"), seed=5, **options)
    for _ in range(3):
        first.step()
    buf = io.BytesIO()
    torch.save({"algorithm": first.state_dict()}, buf)  # as the Runner checkpoints
    buf.seek(0)
    resumed, _ = _algo(name, _only_free("c0b", "c1a"), seed=5, **options)
    resumed.load_state_dict(torch.load(buf, weights_only=False)["algorithm"])
    got = [resumed.step() for _ in range(2)]

    np.testing.assert_array_equal(resumed.psi, straight.psi)
    assert [r["val_metric"] for r in got] == [r["val_metric"] for r in expected[3:]]
    assert resumed.budget.images == straight.budget.images
    assert resumed.budget.evaluations == straight.budget.evaluations
    if name == "bayesopt":
        for a, b in zip(resumed.registered, straight.registered):
            np.testing.assert_array_equal(a, b)
        assert [r["source"] for r in got] == ["gp", "gp"]
    if name == "reinforce":
        assert resumed.baseline == straight.baseline
        if options.get("retain"):
            for p, q in zip(resumed.model.parameters(), straight.model.parameters()):
                torch.testing.assert_close(p, q, rtol=0, atol=0)


# ---------------------------------------------------------------------------- options
@pytest.mark.parametrize("name,options,match", [
    ("reinforce", {"learning_rate": 1}, "no option"),
    ("reinforce", {"sigma2": 0.0}, "sigma2"),
    ("reinforce", {"ema": 1.0}, "ema"),
    ("reinforce", {"k": 0}, "k must"),
    ("bayesopt", {"acq": "poi"}, "acq"),
    ("bayesopt", {"acq": "ucb", "init_points": -1}, "init_points"),
    ("bayesopt", {"radius": 0.0}, "radius"),
    ("random", {"m": 0}, "m must"),
])
def test_bad_options_are_rejected(name, options, match):
    with pytest.raises(ValueError, match=match):
        _algo(name, **options)


@pytest.mark.parametrize("name", ["reinforce", "bayesopt", "random"])
def test_all_fixed_is_rejected(name):
    with pytest.raises(ValueError, match="every parameter is fixed"):
        _algo(name, _only_free())
