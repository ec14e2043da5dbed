"""AutoSimulate end to end on the Gaussian-mixture toy, and its NaN guards."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from optimizer.algorithms import get
from optimizer.simulators.toy import ToySimulator
from tests.fakes import PoisonedToy, toy_context

TOY = {"k": 64, "epochs": 2, "batch_size": 32, "lr_theta": 1e-2, "hessian": "all"}


def _algo(sim=None, seed=0, **options):
    ctx, published = toy_context(sim, seed)
    return get("autosimulate")(ctx, **{**TOY, **options}), published


@pytest.mark.parametrize("approx", ["quadratic", "approx_quadratic", "linear"])
def test_toy_validation_accuracy_rises_and_psi_moves_the_right_way(approx):
    algo, published = _algo(approx=approx)
    first = algo.step()["val_metric"]
    records = [algo.step() for _ in range(60)]
    last = np.mean([r["val_metric"] for r in records[-5:]])
    assert first < 0.8 and last > first + 0.15, (first, last)
    # the real classes are split top/bottom, the start's left/right: the classes' vertical gap
    # must grow relative to their horizontal gap (start: 0.6 / 1.8)
    named = algo.space.unpack_psi()

    def gap(axis):
        return abs(np.mean([named[c]["mean"][axis] for c in ("c0a", "c0b")])
                   - np.mean([named[c]["mean"][axis] for c in ("c1a", "c1b")]))

    assert gap(1) / gap(0) > 0.6, (gap(1), gap(0))
    assert len(published) == 61 and published[-1][1]["val_metric"] == records[-1]["val_metric"]
    assert algo.budget.images == 61 * 64


def test_fixed_parameters_never_move():
    sim = ToySimulator()
    sim.space = sim.space.with_fixed("c0a", True)
    algo, _ = _algo(sim)
    before = algo.space.unpack_psi()["c0a"]
    for _ in range(5):
        algo.step()
    assert algo.space.unpack_psi()["c0a"] == before
    assert algo.space.unpack_psi()["c1a"] != ToySimulator().space.unpack_psi()["c1a"]


def test_nan_never_reaches_theta_or_psi():
    algo, _ = _algo(PoisonedToy({3}))
    algo.step()
    algo.step()
    psi_before = algo.psi.copy()
    theta_before = [p.detach().clone() for p in algo.model.parameters()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = algo.step()
    assert record["skipped"] and any("non-finite" in str(w.message) for w in caught)
    np.testing.assert_array_equal(algo.psi, psi_before)
    for p, q in zip(algo.model.parameters(), theta_before):
        torch.testing.assert_close(p.detach(), q)
    record = algo.step()  # and it carries on
    assert not record["skipped"] and np.isfinite(algo.psi).all()


def test_non_finite_hypergradient_is_skipped_and_damping_raised(monkeypatch):
    import optimizer.algorithms.autosimulate as mod

    algo, _ = _algo()
    algo.step()
    real = mod.hypergradient

    def broken(**kw):
        res = real(**kw)
        res.grad = res.grad * float("nan")
        return res

    monkeypatch.setattr(mod, "hypergradient", broken)
    psi = algo.psi.copy()
    damping = algo.damping
    with pytest.warns(UserWarning, match="non-finite hypergradient"):
        record = algo.step()
    assert record["skipped"] and algo.damping == damping * 10
    np.testing.assert_array_equal(algo.psi, psi)


def test_warmup_trains_theta_but_holds_psi_then_lets_it_move():
    algo, published = _algo(warmup=2)
    psi0 = algo.psi.copy()
    records = [algo.step() for _ in range(3)]
    assert [r.get("warmup", False) for r in records] == [True, True, False]
    assert "hypergrad_norm" not in records[0] and "hypergrad_norm" in records[2]
    np.testing.assert_array_equal(published[1][0], psi0)  # psi published, unchanged
    assert records[1]["train_loss"] < records[0]["train_loss"]  # theta did train
    assert not np.allclose(algo.psi, psi0)
    with pytest.raises(ValueError, match="warmup"):
        _algo(warmup=-1)


def _spy_hypergradient(monkeypatch):
    """Wrap the hypergradient autosimulate calls; returns the list of (kwargs, result)."""
    import optimizer.algorithms.autosimulate as mod

    calls = []
    real = mod.hypergradient

    def spy(**kw):
        result = real(**kw)
        calls.append((kw, result))
        return result

    monkeypatch.setattr(mod, "hypergradient", spy)
    return calls


def _rows_of(part, whole):
    """Index in `whole` of each row of `part` (every row must be found)."""
    match = (part[:, None, :] == whole[None, :, :]).all(-1)
    assert match.any(1).all(), "a row that is not in the data set"
    return match.float().argmax(1)


@pytest.mark.parametrize("hessian_subsample,val_batch", [(5, 40), (0, 0)])
def test_hessian_subsample_and_val_batch_take_effect(monkeypatch, hessian_subsample, val_batch):
    algo, _ = _algo(k=16, hessian_subsample=hessian_subsample, val_batch=val_batch)
    rendered = []
    real_render = algo.render
    algo.render = lambda latents: rendered.append(real_render(latents)) or rendered[-1]
    calls = _spy_hypergradient(monkeypatch)
    algo.step()
    (kw, _), = calls
    data, val, model = rendered[0], algo.ctx.val, algo.model  # theta unchanged since the call
    task = algo.ctx.task
    seen = []
    real_loss = task.loss
    monkeypatch.setattr(task, "loss", lambda m, d: seen.append(d) or real_loss(m, d))

    # validation gradient: a batch of val_batch distinct validation rows (else all of them)
    with torch.no_grad():
        got = kw["val_loss"]()
    (vdata,) = seen
    n_val = val_batch or len(val)
    assert len(vdata) == n_val
    rows = _rows_of(vdata.inputs, val.inputs)
    assert len(set(rows.tolist())) == n_val
    torch.testing.assert_close(vdata.targets, val.targets[rows])
    with torch.no_grad():
        want = F.cross_entropy(model(val.inputs[rows]), val.targets[rows])
    torch.testing.assert_close(got, want)

    # Hessian: the mean training loss of hessian_subsample of the K rendered samples
    if not hessian_subsample:
        assert kw["hessian_loss"] is None  # hypergradient's default: all K samples
        return
    assert kw["hessian_loss"] is not None
    seen.clear()
    with torch.no_grad():
        got = kw["hessian_loss"]()
    (hdata,) = seen
    assert len(hdata) == hessian_subsample
    rows = _rows_of(hdata.inputs, data.inputs)
    assert len(set(rows.tolist())) == hessian_subsample
    with torch.no_grad():
        want = F.cross_entropy(model(data.inputs[rows]), data.targets[rows])
    torch.testing.assert_close(got, want)


def test_cg_is_warm_started_from_the_previous_v(monkeypatch):
    calls = _spy_hypergradient(monkeypatch)
    algo, _ = _algo(k=16, cg_iters=2)
    for _ in range(3):
        algo.step()
    assert len(calls) == 3
    assert calls[0][0]["v0"] is None                  # nothing to start from yet
    for (kw, _), (_, previous) in zip(calls[1:], calls[:-1]):
        assert kw["v0"] is not None and previous.v is not None
        torch.testing.assert_close(kw["v0"], previous.v, rtol=0, atol=0)
    # and the solver really starts there: CG's x0 is that v
    import optimizer.hypergrad as hg

    starts = []
    real_cg = hg.conjugate_gradient
    monkeypatch.setattr(hg, "conjugate_gradient",
                        lambda *a, **kw: starts.append(kw.get("x0")) or real_cg(*a, **kw))
    algo.step()
    (x0,) = starts
    torch.testing.assert_close(x0, calls[2][1].v, rtol=0, atol=0)


def _toy_log_q(space, latents):
    """log q_psi of toy latents by scipy: the component categorical is fixed and uniform, so
    only the four 2-D Gaussians' densities change with psi."""
    from scipy.stats import norm

    named, sl = space.unpack_psi(), space.latent_slices
    total = np.zeros(len(latents))
    for c in ("c0a", "c0b", "c1a", "c1b"):
        mu, std = np.asarray(named[c]["mean"]), np.exp(np.asarray(named[c]["log_std"]))
        total += norm.logpdf(latents[:, sl[c]], mu, std).sum(1)
    return total


def test_replay_pools_recent_samples_with_importance_weights(monkeypatch):
    calls = _spy_hypergradient(monkeypatch)
    algo, _ = _algo(k=16, replay=2, lr_psi=0.2)
    drawn, spaces = [], []
    real_sample = algo.space.sample

    def sample(n, rng, stratified=False, antithetic=False, paired=False):
        spaces.append(algo.space)
        drawn.append(real_sample(n, rng, stratified, antithetic, paired))
        return drawn[-1]

    monkeypatch.setattr(type(algo.space), "sample",
                        lambda self, n, rng, **kw: sample(n, rng, **kw))
    for _ in range(4):
        algo.step()
    assert [len(kw["score"]) for kw, _ in calls] == [16, 32, 48, 48]  # a window of 2 + 1
    kw, _ = calls[0]
    assert kw["weights"] is None and kw["baseline"] == "loo"  # nothing to replay yet
    kw, _ = calls[3]  # steps 1, 2 (replayed) and 3 (this one), each under its own psi
    now = spaces[3]
    latents = np.concatenate(drawn[1:4])
    log_w = _toy_log_q(now, latents) - np.concatenate(
        [_toy_log_q(spaces[i], drawn[i]) for i in (1, 2, 3)])
    want = np.exp(log_w - log_w.max())
    np.testing.assert_allclose(kw["weights"].numpy(), want / want.sum(), rtol=1e-4)
    assert kw["baseline"] == "mean"
    np.testing.assert_allclose(kw["score"].numpy(), now.score(latents), rtol=1e-5, atol=1e-6)
    assert len(kw["per_sample_loss"]()) == 48
    assert kw["hessian_loss"] is not None  # the Hessian stays this step's 16 samples


@pytest.mark.parametrize("order,same", [("fresh", True), ("paper", False)])
def test_fresh_order_takes_the_hypergradient_before_theta_sees_the_samples(monkeypatch, order,
                                                                          same):
    import optimizer.algorithms.autosimulate as mod

    algo, _ = _algo(k=16, order=order)
    algo.step()
    seen = []
    real = mod.hypergradient
    monkeypatch.setattr(mod, "hypergradient", lambda **kw: seen.append(
        [p.detach().clone() for p in algo.model.parameters()]) or real(**kw))
    before = [p.detach().clone() for p in algo.model.parameters()]
    algo.step()
    (at_call,) = seen
    assert all(torch.equal(a, b) for a, b in zip(at_call, before)) is same


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="no option"):
        _algo(learning_rate=1)
    with pytest.raises(ValueError, match="order"):
        _algo(order="sideways")
    with pytest.raises(ValueError, match="replay"):
        _algo(replay=-1)
    with pytest.raises(ValueError, match="approximation"):
        _algo(approx="cubic")


def test_stratified_sampling_and_active_only_reach_the_estimator(monkeypatch):
    """sampling='stratified' draws Latin-hypercube latents (the toy's uniform 4-way component:
    exactly K/4 each) and active_only hands the estimator the score with the unused
    components' terms zeroed."""
    calls = _spy_hypergradient(monkeypatch)
    algo, _ = _algo(k=16, sampling="stratified", active_only=True)
    drawn = []
    real_sample = algo.space.sample
    monkeypatch.setattr(type(algo.space), "sample",
                        lambda self, n, rng, stratified=False, **pairs:
                        drawn.append((stratified, real_sample(n, rng, stratified, **pairs)))
                        or drawn[-1][1])
    space = algo.space
    algo.step()
    (stratified, latents), = drawn
    assert stratified
    comp = latents[:, space.latent_slices["component"]][:, 0].astype(int)
    assert np.bincount(comp, minlength=4).tolist() == [4, 4, 4, 4]
    score = calls[0][0]["score"].numpy()
    np.testing.assert_allclose(score, space.score(latents, active_only=True), rtol=1e-5,
                               atol=1e-6)
    for i, name in enumerate(("c0a", "c0b", "c1a", "c1b")):
        rows = comp != i
        assert np.all(score[rows, space.psi_slices[name]] == 0.0)
        assert np.all(score[~rows, space.psi_slices[name]] != 0.0)
    with pytest.raises(ValueError, match="sampling must be"):
        _algo(sampling="sobol")


@pytest.mark.parametrize("sampling", ["antithetic", "paired"])
def test_paired_samplings_reach_the_estimator_in_pairs(monkeypatch, sampling):
    """sampling='antithetic' renders K/2 mirrored pairs and 'paired' K/2 pairs sharing the
    fixed parameters, and tells the estimator so (antithetic: its baseline leaves each pair
    out; paired: the partner is every entry's baseline); odd K or replay is an error."""
    calls = _spy_hypergradient(monkeypatch)
    algo, _ = _algo(k=8, sampling=sampling)
    algo.step()
    (kwargs, *_), = calls
    assert kwargs["pairs"] is True
    if sampling == "paired":
        assert kwargs["partner"].all() and len(kwargs["partner"]) == algo.space.psi_dim
    else:
        assert kwargs["partner"] is None
    for bad in ({"k": 7}, {"k": 8, "replay": 2}):
        with pytest.raises(ValueError, match=f"{sampling} sampling needs"):
            _algo(sampling=sampling, **bad)
    if sampling == "paired":  # nothing fixed to share: independent pairs, a worse baseline
        free = ToySimulator(ToySimulator().space.with_fixed("component", False))
        with pytest.raises(ValueError, match="fixes none"):
            _algo(free, sampling="paired")


def test_the_cli_offers_the_algorithms_own_choices():
    """The flags' choices are spelled out in cli/options (it must not import torch); they
    must stay the algorithm's own."""
    from optimizer.algorithms.autosimulate import SAMPLINGS
    from optimizer.cli.options import METHOD_FLAGS
    from optimizer.hypergrad import APPROXIMATIONS
    flags = dict(METHOD_FLAGS)
    assert tuple(flags["sampling"]["choices"]) == SAMPLINGS
    assert tuple(flags["approx"]["choices"]) == APPROXIMATIONS


def test_shrink_scales_each_psi_entry_by_its_evidence_and_survives_a_checkpoint():
    """With shrink, the first psi step is Adam's step times the gate's factor entry by entry
    (the same seed draws the same samples and hypergradient with and without it)."""
    plain, _ = _algo()
    gated, _ = _algo(shrink=1.0)
    start = plain.psi.copy()
    plain.step()
    record = gated.step()
    free = plain.space.free_mask
    f = np.clip(1 - gated.gate.v / gated.gate.m ** 2, 0, 1)
    assert 0 < f[free].min() < 1 or 0 < f[free].max() < 1  # the gate really gates
    np.testing.assert_allclose((gated.psi - start)[free], (f * (plain.psi - start))[free],
                               rtol=1e-6, atol=1e-9)
    assert record["psi_gate"] == pytest.approx(f[free].mean())
    again, _ = _algo(shrink=1.0)
    again.load_state_dict(gated.state_dict())
    np.testing.assert_array_equal(again.gate.m, gated.gate.m)
    for bad in ({"shrink": -1.0}, {"shrink": 1.0, "replay": 2}):
        with pytest.raises(ValueError, match="shrink must be"):
            _algo(**bad)
