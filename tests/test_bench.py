"""The judged bench: hidden targets, the judge, gap closed, images to close the gap, evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from optimizer.bench import images_to_reach, psi_at, summarise
from optimizer.bench_paired import markdown as paired_markdown
from optimizer.bench_paired import paired
from optimizer.bench_report import markdown
from optimizer.judge import Judge, gap_closed, mean_se, mean_std, paired_span
from optimizer.simulators.toy import ToySimulator
from optimizer.targets import draw_target, draw_targets, moved_parameters
from optimizer.tasks.classifier import ClassifierTask
from tests.test_optimize_cli import autosim


def _clevr_like():
    from protocol.space import ParameterSpace

    return ParameterSpace.from_dict({"format": "autosim.space", "version": 1, "params": [
        {"name": "light", "kind": "normal", "mean": [1.0], "log_std": [-0.5], "low": [0.0],
         "high": [10.0]},
        {"name": "xy", "kind": "normal", "mean": [0.0, 0.0], "log_std": [0.0, 0.0]},
        {"name": "material", "kind": "categorical", "choices": ["a", "b", "c"],
         "logits": [0.0, 0.0, 0.0]},
        {"name": "visible", "kind": "bernoulli", "logit": 0.0},
        {"name": "held", "kind": "normal", "mean": [5.0], "log_std": [0.0], "fixed": True}]})


def test_targets_move_several_free_parameters_inside_their_range_and_repeat_by_seed():
    space = _clevr_like()
    targets = draw_targets(space, 20, seed=3)
    assert [t.psi.tolist() for t in targets] == [t.psi.tolist()
                                                for t in draw_targets(space, 20, seed=3)]
    assert targets[0].psi.tolist() != draw_targets(space, 1, seed=4)[0].psi.tolist()
    for t in targets:
        moved = moved_parameters(space, t)
        assert len(moved) >= 2 and "held" not in moved
        light = t.unpack_psi()["light"]["mean"][0]
        assert 1.0 <= light <= 9.0  # the middle 80% of [0, 10]
        if "light" in moved:  # 10-35% of the range away from the start
            assert 1.0 - 1e-9 <= abs(light - 1.0) <= 3.5 + 1e-9
        xy = np.asarray(t.unpack_psi()["xy"]["mean"])  # no bounds: 6 start stds (+-3)
        assert (np.abs(xy) <= 2.4 + 1e-9).all()
    # every kind moves in some target
    assert {n for t in targets for n in moved_parameters(space, t)} == {
        "light", "xy", "material", "visible"}
    with pytest.raises(ValueError, match="nothing a target could move"):
        draw_target(space.with_fixed("light", True).with_fixed("xy", True)
                    .with_fixed("material", True).with_fixed("visible", True),
                    np.random.default_rng(0))


def test_gap_closed_and_mean_std_by_hand():
    assert gap_closed(0.3, 0.2, 0.4) == pytest.approx(0.5)
    assert gap_closed(0.1, 0.2, 0.4) == pytest.approx(-0.5)
    assert np.isnan(gap_closed(0.3, 0.2, 0.2))
    assert mean_std([1.0, 3.0, float("nan")]) == pytest.approx((2.0, 2 ** 0.5))
    assert all(np.isnan(mean_std([])))


def test_psi_at_and_images_to_reach_read_the_judged_checkpoints():
    records = [{"images_rendered": 16 * (i + 1), "psi": [float(i)]} for i in range(4)]
    assert psi_at(records, 8, np.array([-1.0])) == (0, [-1.0])   # before any step: the start
    images, psi = psi_at(records, 40, np.array([-1.0]))
    assert images == 32 and psi.tolist() == [1.0]
    checkpoints = [{"images": 16, "test": 0.2}, {"images": 32, "test": 0.35},
                   {"images": 64, "test": 0.5}]
    assert images_to_reach(checkpoints, 0.3) == 32
    assert images_to_reach(checkpoints, 0.5) == 64
    assert images_to_reach(checkpoints, 0.51) is None
    assert images_to_reach(checkpoints, 0.1) == 16


def test_summary_gap_closed_and_images_to_close_the_gap_by_hand():
    refs = {"t0": {"start": [0.2, 0.2], "target": [0.6, 0.6]},     # gap 0.4
            "t1": {"start": [0.5, 0.5], "target": [0.7, 0.7]},     # gap 0.2
            "own": {"start": [0.3], "target": None},               # a user's data
            "near": {"start": [0.90, 0.92], "target": [0.91, 0.93]},   # span 0.01
            # paired spans (.4, .05): mean .225, standard error .175 -> 2 se > span
            "noisy": {"start": [0.1, 0.5], "target": [0.5, 0.55]},
            # each seed gains .1/.12, though the seeds' scores spread .3: pairs tell it apart
            "paired": {"start": [0.2, 0.5], "target": [0.3, 0.62]}}
    def run(target, seed, tests):
        return {"method": "m", "seed": seed, "target": target, "wall_s": 1.0, "images": 64,
                "agreement": [], "checkpoints": [{"fraction": f, "images": int(64 * f),
                                                   "test": t} for f, t in zip((0.5, 1), tests)]}
    runs = [run("t0", 0, [0.3, 0.5]), run("t0", 1, [0.4, 0.6]),   # gaps (.25, .75), (.5, 1)
            run("t1", 0, [0.5, 0.68]), run("t1", 1, [0.6, 0.7]),  # gaps (0, .9), (.5, 1)
            run("own", 0, [0.4, 0.45]), run("near", 0, [0.0, 0.0]), run("noisy", 0, [0.0, 0.0]),
            # measured from the start's score under its own judge seed: gaps 1 and 0
            run("paired", 0, [0.2, 0.31]), run("paired", 1, [0.5, 0.5])]
    summary = summarise(runs, ["m"], refs, [0.5, 1.0])
    # the judge cannot tell near/noisy apart
    assert summary["separable"] == ["t0", "t1", "paired"]
    assert paired_span(refs["paired"]) == pytest.approx((0.11, 0.01))
    (row,) = summary["rows"]
    assert set(row["gap_per_target"]) == {"t0", "t1", "paired"}
    assert row["gap_per_target"]["paired"][1] == pytest.approx(0.5)
    assert row["gap_per_target_se"]["paired"][1] == pytest.approx(0.5)
    assert row["gap_per_target"]["paired"][0] == pytest.approx(0.0)
    del refs["paired"]
    runs = runs[:-2]
    summary = summarise(runs, ["m"], refs, [0.5, 1.0])
    (row,) = summary["rows"]
    # gap at 100%: t0 mean(.75, 1) = .875, t1 mean(.9, 1) = .95 -> mean .9125 over targets
    assert row["gap"][1][0] == pytest.approx(0.9125)
    assert row["gap"][1][1] == pytest.approx(np.std([0.875, 0.95], ddof=1))
    assert row["gap"][0][0] == pytest.approx(np.mean([0.375, 0.25]))
    # 50% of the gap: t0 needs 0.4 (seed 0 at 64 images, seed 1 at 32); t1 needs 0.6 (seed 0
    # at 64, seed 1 at 32). 90%: t0 0.56 (seed 0 never, seed 1 at 64); t1 0.68 (64, 64)
    assert row["reach_50"]["images"][0] == pytest.approx(48.0)
    assert (row["reach_50"]["reached"], row["reach_50"]["of"]) == (4, 4)
    assert row["reach_90"]["images"][0] == pytest.approx(64.0)
    assert (row["reach_90"]["reached"], row["reach_90"]["of"]) == (3, 4)
    # test metric over every run, the user's data included
    assert row["test"][1][0] == pytest.approx(np.mean([0.5, 0.6, 0.68, 0.7, 0.45, 0, 0]))
    table = markdown(summary, refs, "toy", "accuracy", 64, 2)
    assert "too close" in table
    assert "| m | 1.00 ± 0.00 | 64 ± 0 |" in table  # a run under 10 s is not "0 ± 0" seconds


def test_one_judge_seed_has_no_standard_error_and_min_span_alone_decides():
    """With one seed a span and a target's gap closed have no standard error (nan, printed
    without one, never '± 0.00'); the target still counts when its span passes MIN_SPAN."""
    assert np.isnan(mean_se([0.3])[1]) and mean_se([0.1, 0.3]) == pytest.approx((0.2, 0.1))
    assert np.isnan(mean_se([])[0])
    refs = {"t0": {"start": [0.2], "target": [0.6]}, "near": {"start": [0.2], "target": [0.21]}}
    run = {"method": "m", "seed": 0, "target": "t0", "wall_s": 1.0, "images": 64,
           "agreement": [], "checkpoints": [{"fraction": 1, "images": 64, "test": 0.4}]}
    summary = summarise([run], ["m"], refs, [1.0])
    assert summary["separable"] == ["t0"]
    (row,) = summary["rows"]
    assert row["gap_per_target"]["t0"] == [pytest.approx(0.5)]
    assert np.isnan(row["gap_per_target_se"]["t0"][0])
    table = markdown(summary, refs, "toy", "accuracy", 64, 1)
    assert "| t0 | - | 0.200 ± 0.000 | 0.600 ± 0.000 | 0.400 | 0.50 |" in table, table


def test_paired_differences_run_by_run_by_hand():
    refs = {"t0": {"start": [0.2, 0.3], "target": [0.6, 0.7]},    # paired span 0.4
            "own": {"start": [0.5], "target": None}}               # a user's data: no gap
    def run(method, target, seed, test):
        return {"method": method, "target": target, "seed": seed,
                "checkpoints": [{"fraction": 1.0, "images": 64, "test": test}]}
    runs = [run("a", "t0", 0, 0.4), run("a", "t0", 1, 0.3), run("a", "own", 0, 0.6),
            run("b", "t0", 0, 0.2), run("b", "t0", 1, 0.5), run("b", "own", 0, 0.4),
            run("c", "t0", 0, float("nan"))]                       # a failed judgement
    table = paired(runs, ["a", "b", "c"], refs, ["t0"])
    a = table["vs_start"]["a"]
    # each run minus the start under its own judge seed: 0.2, 0.0, 0.1
    assert a["per_run"]["mean"] == pytest.approx(0.1)
    assert a["per_run"]["se"] == pytest.approx(0.1 / np.sqrt(3))
    assert (a["per_run"]["better"], a["per_run"]["of"]) == (2, 3)
    assert a["gap"]["mean"] == pytest.approx(0.25) and a["gap"]["of"] == 1  # (0.2 + 0) / 2 / 0.4
    assert table["vs_start"]["c"]["per_run"]["of"] == 0
    ab, ac, bc = table["pairs"]
    assert (ab["a"], ab["b"], ac["b"], bc["a"]) == ("a", "b", "c", "b")
    # a - b: 0.2, -0.2, 0.2
    assert ab["per_run"]["mean"] == pytest.approx(0.2 / 3)
    assert ab["per_run"]["se"] == pytest.approx(np.std([0.2, -0.2, 0.2], ddof=1) / np.sqrt(3))
    assert ab["gap"]["mean"] == pytest.approx(0.0) and ab["gap"]["better"] == 0
    assert ac["per_run"]["of"] == 0
    lines = paired_markdown(table, "accuracy")
    assert "| a - start psi | +0.100 ± 0.058 | 2/3 | +0.25 | 1/1 |" in lines
    assert "| a - b | +0.067 ± 0.133 | 2/3 | +0.00 | 0/1 |" in lines
    assert "| a - c | n/a | n/a | n/a | n/a |" in lines


def test_the_judge_prefers_the_target_it_was_drawn_for():
    """A fresh model trained on a target configuration's data beats one trained on the start's,
    on that target's test set; the same judge seed gives the same score."""
    torch.set_num_threads(1)
    task, sim = ClassifierTask(), ToySimulator()
    start = sim.space
    target = start.with_psi(start.pack_psi({"c0a": {"mean": [0.0, 1.5]},
                                            "c0b": {"mean": [1.5, 1.0]},
                                            "c1a": {"mean": [0.0, -1.5]},
                                            "c1b": {"mean": [-1.5, -1.0]}}))
    test = task.to_data(ToySimulator(target).render(
        target.sample(400, np.random.default_rng(5))), "cpu")
    judge = Judge.from_protocol(sim.defaults.judge_protocol(),
                                overrides={"train_n": 256, "epochs": 10}, task=task,
                                space=start, render=sim.render, test=test, device="cpu")
    at_target, at_start = judge.scores(target, [0, 1]), judge.scores(start.psi, [0, 1])
    assert min(at_target) > max(at_start) + 0.1, (at_target, at_start)
    assert judge.score(target, 0) == at_target[0]


def test_bench_toy_on_drawn_targets_judges_checkpoints(tmp_path):
    out = autosim("bench", "--scene", "toy", "--methods", "autosimulate,random", "--seeds", "1",
                  "--budget-images", "256", "--targets", "2", "--target-seed", "7",
                  "--judge-at", "0.5", "--judge-train-n", "128", "--judge-epochs", "5",
                  "--k", "32", "--m", "64", "--out", str(tmp_path / "b"))
    assert out.returncode == 0, out.stderr
    def reject(name):
        raise ValueError(f"{name} is not JSON")

    data = json.loads((tmp_path / "b" / "bench.json").read_text(), parse_constant=reject)
    assert data["fractions"] == [0.5, 1.0] and set(data["references"]) == {"t0", "t1"}
    for name, ref in data["references"].items():
        assert len(ref["start"]) == len(ref["target"]) == 1 and len(ref["moved"]) >= 2
        target = json.loads((tmp_path / "b" / "targets" / name / "target_space.json")
                            .read_text())
        assert target["params"]
    assert len(data["runs"]) == 4
    for run in data["runs"]:
        assert [c["images"] for c in run["checkpoints"]] == [128, 256]
        assert all(0.0 <= c["test"] <= 1.0 for c in run["checkpoints"])
    table = (tmp_path / "b" / "bench.md").read_text()
    assert "Gap closed at 100%" in table and "| t1 |" in table
    assert "| autosimulate - random |" in table and "| random - start psi |" in table
    assert data["summary"]["paired"]["pairs"][0]["per_run"]["of"] == 2
    # methods run apart on the same references combine into the same bench
    for method in ("autosimulate", "random"):
        part = {**data, "runs": [r for r in data["runs"] if r["method"] == method]}
        (tmp_path / method).mkdir()
        (tmp_path / method / "bench.json").write_text(json.dumps(part))
    parts = [str(tmp_path / "random"), str(tmp_path / "autosimulate")]
    res = autosim("bench", "--combine", *parts, "--out", str(tmp_path / "both"))
    assert res.returncode == 0, res.stderr
    both = json.loads((tmp_path / "both" / "bench.json").read_text())
    (pair,), (apart,) = data["summary"]["paired"]["pairs"], both["summary"]["paired"]["pairs"]
    assert (apart["a"], apart["b"]) == ("random", "autosimulate")  # in the folders' order
    for key in ("per_run", "gap"):
        assert apart[key]["mean"] == pytest.approx(-pair[key]["mean"])
        assert (apart[key]["se"], apart[key]["of"]) == (pair[key]["se"], pair[key]["of"])
    assert both["summary"]["paired"]["vs_start"] == data["summary"]["paired"]["vs_start"]
    assert both["summary"]["rows"][1] == data["summary"]["rows"][0]  # autosimulate's row
    assert "| random - autosimulate |" in (tmp_path / "both" / "bench.md").read_text()
    # one method under two settings: refused as the same runs twice, paired once labelled
    assert data["options"]["autosimulate"]["lr_psi"] == 0.05  # bench.json records the options
    tuned = json.loads((tmp_path / "autosimulate" / "bench.json").read_text())
    tuned["options"]["autosimulate"]["lr_psi"] = 0.2
    for run in tuned["runs"]:  # as if the setting had scored 0.01 higher on every run
        run["test_metric"] += 0.01
        for point in run["checkpoints"]:
            point["test"] += 0.01
    (tmp_path / "tuned").mkdir()
    (tmp_path / "tuned" / "bench.json").write_text(json.dumps(tuned))
    two = [parts[1], str(tmp_path / "tuned")]
    res = autosim("bench", "--combine", *two, "--out", str(tmp_path / "two"))
    assert res.returncode == 2 and "other options" in res.stderr and "lr_psi" in res.stderr
    res = autosim("bench", "--combine", *two, "--labels", "defaults,lr 0.2",
                  "--out", str(tmp_path / "two"))
    assert res.returncode == 0, res.stderr
    two_data = json.loads((tmp_path / "two" / "bench.json").read_text())
    assert two_data["methods"] == ["autosimulate (defaults)", "autosimulate (lr 0.2)"]
    assert two_data["options"]["autosimulate (lr 0.2)"]["lr_psi"] == 0.2
    (pair,) = two_data["summary"]["paired"]["pairs"]
    assert pair["per_run"]["mean"] == pytest.approx(-0.01)
    assert "| autosimulate (defaults) - autosimulate (lr 0.2) |" in (
        tmp_path / "two" / "bench.md").read_text()
    for bad, why in ((["--combine", *two, "--labels", "one"], "one distinct, non-empty label"),
                     (["--combine", *two, "--labels", "x,x"], "one distinct, non-empty label"),
                     (["--combine", *two, "--labels", "x, x"], "one distinct, non-empty label"),
                     (["--scene", "toy", "--labels", "x,y"], "--labels goes with --combine")):
        res = autosim("bench", *bad, "--out", str(tmp_path / "e"))
        assert res.returncode == 2 and why in res.stderr, res.stderr
    other = json.loads((tmp_path / "random" / "bench.json").read_text())
    other["references"]["t0"]["start"] = [0.5]
    (tmp_path / "random" / "bench.json").write_text(json.dumps(other))
    for bad, why in (([parts[1], parts[1]], "is in another folder too"),
                     (parts, "not the same references"),
                     ([parts[1], str(tmp_path / "nowhere")], "no bench.json"),
                     ([parts[1], str(tmp_path / "e")], "is one of the folders to combine")):
        res = autosim("bench", "--combine", *bad, "--out", str(tmp_path / "e"))
        assert res.returncode == 2 and why in res.stderr, res.stderr
    assert (tmp_path / "b" / "bench.png").read_bytes()[:4] == b"\x89PNG"
    for bad, why in ((["--judge-at", "0,2"], "fractions must be in (0, 1]"),
                     (["--val", str(tmp_path)], "--val and --test go together"),
                     (["--methods", "autosimulate,nope"], "unknown method 'nope'")):
        res = autosim("bench", "--scene", "toy", "--out", str(tmp_path / "c"), *bad)
        assert res.returncode == 2 and why in res.stderr, res.stderr
    res = autosim("bench", "--scene", "toy", "--seeds", "1", "--budget-images", "64", "--k", "32",
                  "--judge-train-n", "64", "--judge-epochs", "1", "--shrink", "-1",
                  "--out", str(tmp_path / "d"))  # a bad method option: one line, no traceback
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "autosimulate: shrink must be >= 0" in res.stderr, res.stderr
    assert not list((tmp_path / "d").rglob("references.json"))  # it failed before judging


def test_evaluate_toy_prints_mean_and_spread_and_rejects_bad_input(tmp_path):
    space = tmp_path / "space.json"
    space.write_text(ToySimulator().space.to_json())
    out = autosim("evaluate", "--scene", "toy", "--params", str(space), "--seeds", "2",
                  "--train-n", "128", "--epochs", "3")
    assert out.returncode == 0, out.stderr
    assert "test accuracy: " in out.stdout and "over 2 judge seed(s)" in out.stdout
    bad = autosim("evaluate", "--scene", "toy", "--params", str(tmp_path / "missing.json"))
    assert bad.returncode == 2 and "cannot read parameter file" in bad.stderr
    bad = autosim("evaluate", "--scene", "toy", "--params", str(space), "--test", "x")
    assert bad.returncode == 2 and "drop --test" in bad.stderr


@pytest.mark.blender
def test_evaluate_and_bench_on_your_own_folders(tmp_path):
    for name, seed in (("val", 1), ("test", 2)):
        out = autosim("render", "--scene", "clevr", "--n", "4", "--size", "32", "--seed",
                      str(seed), "--out", str(tmp_path / name), "--threads", "1")
        assert out.returncode == 0, out.stderr
    space = tmp_path / "val" / "space.json"
    out = autosim("evaluate", "--scene", "clevr", "--params", str(space), "--test",
                  str(tmp_path / "test"), "--train-n", "8", "--epochs", "1", "--seeds", "1",
                  "--threads", "1")
    assert out.returncode == 0, out.stderr
    assert "test mIoU: " in out.stdout
    out = autosim("bench", "--scene", "clevr", "--methods", "autosimulate", "--seeds", "1",
                  "--budget-images", "8", "--k", "4", "--epochs", "1", "--val",
                  str(tmp_path / "val"), "--test", str(tmp_path / "test"), "--judge-train-n",
                  "8", "--judge-epochs", "1", "--threads", "1", "--out", str(tmp_path / "b"))
    assert out.returncode == 0, out.stderr
    data = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert set(data["references"]) == {"user"} and data["references"]["user"]["target"] is None
    (run,) = data["runs"]
    assert run["images"] == 8 and 0.0 <= run["test_metric"] <= 1.0
    assert "unknown" in (tmp_path / "b" / "bench.md").read_text()


def test_judge_references_are_kept_and_reused_only_while_their_key_matches(tmp_path,
                                                                             monkeypatch):
    """An interrupted or extended bench does not judge the start and target again; a changed
    protocol or more seeds than were kept does."""
    from optimizer.bench import judge_references
    from optimizer.bench_setup import BenchConfig, open_bench
    from optimizer.scene_ref import SceneRef

    torch.set_num_threads(1)
    calls = []
    real = Judge.scores
    monkeypatch.setattr(Judge, "scores", lambda self, psi, seeds: calls.append(list(seeds))
                        or real(self, psi, seeds))
    cfg = BenchConfig(ref=SceneRef.from_flags("toy"), methods=[], out=tmp_path, targets=1,
                      target_seed=3, judge={"train_n": 64, "epochs": 2})
    cache = tmp_path / "refs.json"
    with open_bench(cfg, torch.device("cpu")) as setup:
        (target,) = setup.targets
        first = judge_references(setup, target, 2, cache)
        assert calls == [[0, 1], [0, 1]] and cache.is_file()
        again = judge_references(setup, target, 2, cache)
        fewer = judge_references(setup, target, 1, cache)
        assert calls == [[0, 1], [0, 1]]                 # nothing judged again
        assert again == json.loads(json.dumps(first))
        assert fewer["start"] == first["start"][:1] and fewer["target"] == first["target"][:1]
        judge_references(setup, target, 3, cache)          # more seeds than were kept
        assert calls[2:] == [[0, 1, 2], [0, 1, 2]]
        setup.eval = {**setup.eval, "epochs": 3}           # another protocol
        judge_references(setup, target, 1, cache)
        assert calls[4:] == [[0], [0]]
        threads = torch.get_num_threads()
        torch.set_num_threads(threads + 1)                 # another numerical setting
        try:
            judge_references(setup, target, 1, cache)
        finally:
            torch.set_num_threads(threads)
        assert len(calls) == 8
        cache.write_text("{not json")                      # unreadable: judged again
        judge_references(setup, target, 1, cache)
        assert len(calls) == 10


def test_choices_are_summarised_per_categorical_over_the_runs_whose_target_moved_them():
    """P(favoured) is each run's mean over the categoricals its target moved; the table per
    categorical gives the start's and the end's mass and the total variation closed."""
    def agree(name, m0, m1, tv0, tv1):
        return {"name": name, "favoured": 1, "mass_start": m0, "mass_end": m1,
                "mass_target": 0.9, "tv_start": tv0, "tv_end": tv1}
    refs = {"t0": {"start": [0.2, 0.2], "target": [0.6, 0.6]}}
    runs = [{"method": "m", "seed": i, "target": "t0", "wall_s": 1.0, "images": 64,
             "agreement": ag, "checkpoints": [{"fraction": 1, "images": 64, "test": 0.4}]}
            for i, ag in enumerate([[agree("count", 0.25, 0.45, 0.5, 0.3),
                                     agree("kind", 0.5, 0.3, 0.2, 0.4)],
                                    [agree("count", 0.25, 0.35, 0.5, 0.4)]])]
    summary = summarise(runs, ["m"], refs, [1.0])
    (row,) = summary["rows"]
    assert row["favoured_mass"] == pytest.approx((np.mean([0.375, 0.35]),
                                                  np.std([0.375, 0.35], ddof=1)))
    assert row["choices"]["count"]["runs"] == 2
    assert row["choices"]["count"]["closer"] == pytest.approx((0.15, 0.05))
    assert row["choices"]["kind"]["runs"] == 1 and np.isnan(row["choices"]["kind"]["closer"][1])
    table = markdown(summary, refs, "toy", "accuracy", 64, 2)
    assert "| count | 2 | 0.250 ± 0.000 | 0.400 ± 0.071 | +0.150 ± 0.050 |" in table, table
    assert "| kind | 1 | 0.500 ± 0.000 | 0.300 ± 0.000 | -0.200 |" in table, table
