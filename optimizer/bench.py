"""`autosim bench`: every method on the same targets and budget, judged by one judge.

Per target, method and seed the method runs until the image budget (its own run folder, as
`autosim optimize` writes it). Its psi at several points of the budget (`--judge-at`, e.g. 25,
50 and 100%) is then judged: a fresh task model trained on images from that psi, scored on the
target's test set, which no method and no default ever sees. Validation curves mean different
things per method (a continually trained model, the best of a step, the best so far) and are
not compared; the judged test metric is.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optimizer import algorithms
from optimizer.algorithms.base import Context
from optimizer.bench_paired import paired
from optimizer.bench_report import markdown, plot
from optimizer.bench_setup import BenchConfig, BenchSetup, Target, open_bench
from optimizer.errors import CliError
from optimizer.judge import gap_closed, mean_se, mean_std, paired_span, start_score
from optimizer.optimize import device_of, effective_options
from optimizer.run import Runner, read_metrics, strict_json
from optimizer.tasks.base import TaskData

AUTOSIM_VARIANTS = {"autosimulate": "quadratic", "approx_quadratic": "approx_quadratic",
                    "linear": "linear", "no_val": "no_val"}
ALL_METHODS = ("autosimulate", "approx_quadratic", "linear", "no_val", "reinforce", "bayesopt",
               "random")
# Images to close these fractions of the gap between the start's and the target's judged
# test metric. (A fraction of the target's metric itself would be met by any psi on a
# balanced 2-class toy, where chance accuracy is 0.5.)
REACH = (0.5, 0.9)


def resolve_method(name: str) -> tuple[str, dict[str, Any]]:
    """Bench names -> (registered algorithm, fixed options): AutoSimulate's Table 1 variants."""
    if name in AUTOSIM_VARIANTS:
        return "autosimulate", {"approx": AUTOSIM_VARIANTS[name]}
    if name in algorithms.REGISTRY:
        return name, {}
    raise CliError(f"unknown method {name!r}; known: {', '.join(ALL_METHODS)}")


def psi_at(records: list[dict[str, Any]], images: float, start: np.ndarray
           ) -> tuple[int, np.ndarray]:
    """The psi a run held once it had rendered at most `images` (the start before any step)."""
    done = [r for r in records if r["images_rendered"] <= images + 1e-9]
    if not done:
        return 0, np.asarray(start, float)
    return int(done[-1]["images_rendered"]), np.asarray(done[-1]["psi"], float)


def build(method: str, seed: int, setup: BenchSetup, target: Target,
          options: dict[str, Any]) -> Any:
    """One method's algorithm for one run; a bad option is one CliError line, as optimize
    says it."""
    algo_name, fixed = resolve_method(method)
    ctx = Context(space=setup.space, task=setup.task, val=target.val, device=setup.device,
                  render_fn=setup.make_render(), publish_fn=setup.publish, seed=seed)
    try:
        return algorithms.get(algo_name)(ctx, **{**options, **fixed})
    except (KeyError, ValueError) as exc:
        raise CliError(f"{method}: {str(exc).strip(chr(39) + chr(34))}") from exc


def run_one(method: str, seed: int, setup: BenchSetup, target: Target, budget: int,
            run_dir: Path, options: dict[str, Any], fractions: list[float],
            publisher: Any = None) -> dict[str, Any]:
    algo = build(method, seed, setup, target, options)
    runner = Runner(algo, run_dir, budget, progress=False)
    if publisher is not None:  # --publish: each run under its own name, its space first
        publisher.run, publisher.sent = f"{target.name}/{method}-seed{seed}", 0
        runner.on_iteration = publisher.hook(algo, budget)
    if not runner.resume():  # an interrupted bench picks up where each run stopped
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    runner.run()
    records = read_metrics(run_dir)
    started = time.perf_counter()
    judge = setup.judge(target)
    checkpoints = []
    for f in fractions:
        images, psi = psi_at(records, f * budget, setup.space.psi)
        checkpoints.append({"fraction": f, "images": images, "test": judge.score(psi, seed)})
    agreement = []
    if target.space is not None:
        from optimizer.report import categorical_agreement

        agreement = categorical_agreement(setup.space, algo.space, target.space)
    return {"method": method, "seed": seed, "target": target.name, "records": records,
            "final_psi": algo.psi.tolist(), "checkpoints": checkpoints,
            "test_metric": checkpoints[-1]["test"], "agreement": agreement,
            "wall_s": records[-1]["wall_s"] if records else 0.0,
            "images": records[-1]["images_rendered"] if records else 0,
            "evaluations": records[-1].get("evaluations", 0) if records else 0,
            "judge_s": time.perf_counter() - started}


def images_to_reach(checkpoints: list[dict[str, Any]], level: float) -> int | None:
    """Images at the first judged checkpoint whose test metric is >= level (None: never)."""
    for c in checkpoints:
        if c["test"] is not None and np.isfinite(c["test"]) and c["test"] >= level:
            return int(c["images"])
    return None


MIN_SPAN = 0.02  # a target closer to the start than this (in metric units) has no gap to close


def separable(ref: dict[str, Any]) -> bool:
    """Whether the judge tells the target's configuration from the start: the paired span
    exceeds MIN_SPAN and twice its standard error (unknown with one judge seed: MIN_SPAN
    alone then). A target the judge cannot tell apart has no gap to close; its gap closed
    would be noise over noise."""
    if ref.get("target") is None:
        return False
    span, se = paired_span(ref)
    floor = max(MIN_SPAN, 2.0 * se) if np.isfinite(se) else MIN_SPAN
    return bool(np.isfinite(span)) and span > floor


def _choices(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per choice (categorical) some run's target moved, over those runs: the probability on
    the target's favoured choices at the start and the end, and how much closer the end is to
    the target's probabilities in total variation (start - end; > 0: towards the target)."""
    seen: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        for a in r.get("agreement") or []:
            seen.setdefault(a["name"], []).append(a)
    return {name: {"runs": len(rows), "start": mean_std([a["mass_start"] for a in rows]),
                   "end": mean_std([a["mass_end"] for a in rows]),
                   "closer": mean_se([a["tv_start"] - a["tv_end"] for a in rows])}
            for name, rows in seen.items()}


def summarise(runs: list[dict[str, Any]], methods: list[str], refs: dict[str, dict[str, Any]],
              fractions: list[float]) -> dict[str, Any]:
    """Per method: the judged test metric at each checkpoint, gap closed (mean and spread over
    the separable targets, each target's seeds averaged first), images to close REACH of the
    gap. A run judged with seed s is measured from the start's score under seed s."""
    spans = {name: paired_span(ref)[0] for name, ref in refs.items() if separable(ref)}
    rows = []
    for method in methods:
        mine = [r for r in runs if r["method"] == method]
        row: dict[str, Any] = {"method": method, "runs": len(mine),
                               "wall_s": mean_std([r["wall_s"] for r in mine]),
                               "images": mean_std([r["images"] for r in mine])}
        row["test"] = [mean_std([r["checkpoints"][i]["test"] for r in mine])
                       for i in range(len(fractions))]
        gaps, per_target, per_target_se = [], {}, {}
        for name, span in spans.items():
            ts = [r for r in mine if r["target"] == name]
            starts = [start_score(refs[name], r["seed"]) for r in ts]
            ms = [mean_se([gap_closed(r["checkpoints"][i]["test"], s0, s0 + span)
                           for r, s0 in zip(ts, starts)]) for i in range(len(fractions))]
            per_target[name] = [m for m, _ in ms]
            per_target_se[name] = [se for _, se in ms]
            gaps.append(per_target[name])
        row["gap"] = [mean_std([g[i] for g in gaps]) for i in range(len(fractions))]
        row["gap_per_target"] = per_target
        row["gap_per_target_se"] = per_target_se
        for level in REACH:
            reach, total = [], 0
            for r in mine:
                if r["target"] not in spans:
                    continue
                total += 1
                s0 = start_score(refs[r["target"]], r["seed"])
                hit = images_to_reach(r["checkpoints"], s0 + level * spans[r["target"]])
                if hit is not None:
                    reach.append(hit)
            row[f"reach_{int(level * 100)}"] = {"images": mean_std(reach) if reach else None,
                                                "reached": len(reach), "of": total}
        # each run's mean over the choices its target moved (report.categorical_agreement)
        row["favoured_mass"] = mean_std([float(np.mean([a["mass_end"] for a in r["agreement"]]))
                                         for r in mine if r.get("agreement")])
        row["choices"] = _choices(mine)
        rows.append(row)
    return {"rows": rows, "fractions": fractions, "separable": list(spans),
            "paired": paired(runs, methods, refs, list(spans))}


def _digest(data: TaskData) -> str:
    h = hashlib.sha256()
    for t in (data.inputs, data.targets):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def reference_key(setup: BenchSetup, target: Target) -> dict[str, Any]:
    """What a target's judged references depend on (as JSON)."""
    return strict_json({
        "protocol": setup.eval, "start": setup.space.psi,
        "target": None if target.space is None else target.space.psi,
        "test": _digest(target.test),
        # a score is reproducible only under one numerical setting (see optimizer.judge)
        "device": str(setup.device), "threads": torch.get_num_threads(),
        "torch": torch.__version__})


def judge_references(setup: BenchSetup, target: Target, seeds: int,
                     cache: Path | None = None) -> dict[str, Any]:
    """The judge's own range on a target: the start psi (no optimisation) and, where known,
    the target configuration itself, each judged exactly as a method's psi, seed by seed.
    Kept in `cache` (a JSON file) with what they were judged under (protocol, psis, test set,
    device, threads, torch), and reused while that matches: an interrupted or extended bench
    does not judge them again."""
    key = reference_key(setup, target)
    if cache is not None and cache.is_file():
        try:
            kept = json.loads(cache.read_text())
            refs = kept["refs"]
            if kept["key"] == key and len(refs["start"]) >= seeds:
                return {**refs, "start": refs["start"][:seeds],
                        "target": None if refs["target"] is None else refs["target"][:seeds]}
        except (json.JSONDecodeError, KeyError, TypeError):
            pass  # unreadable: judge again
    judge = setup.judge(target)
    refs: dict[str, Any] = {"start": judge.scores(setup.space.psi, range(seeds)),
                            "target": None, "moved": target.moved}
    if target.space is not None:
        refs["target"] = judge.scores(target.space, range(seeds))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(strict_json({"key": key, "refs": refs})))
    return refs


def parse_fractions(text: str) -> list[float]:
    try:
        values = sorted({float(v) for v in text.split(",") if v.strip()})
    except ValueError as exc:
        raise CliError(f"--judge-at: expected comma-separated fractions, got {text!r}") from exc
    if not values or values[0] <= 0 or values[-1] > 1:
        raise CliError(f"--judge-at: fractions must be in (0, 1], got {text!r}")
    return values if values[-1] == 1.0 else values + [1.0]


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Every method of cfg on every target, judged; writes bench.md/json/png into cfg.out."""
    for m in cfg.methods:
        resolve_method(m)
    device = device_of(cfg.device)
    cfg.out.mkdir(parents=True, exist_ok=True)
    runs, refs = [], {}
    with open_bench(cfg, device) as setup, contextlib.ExitStack() as stack:
        task_name = cfg.ref.task_given(setup.defaults)
        budget, seeds = setup.defaults.budget(cfg.quick, task_name)
        budget = budget if cfg.budget_images is None else cfg.budget_images
        seeds = seeds if cfg.seeds is None else cfg.seeds
        if seeds < 1 or budget < 1:
            raise CliError("--seeds and --budget-images must be at least 1")
        metric = setup.task.metric_name
        publisher = None
        if cfg.publish:
            from optimizer.publish import Publisher

            publisher = stack.enter_context(Publisher(
                cfg.publish, run="", scene=setup.label, metric_name=metric,
                curve=cfg.simulator.curve))
            print(f"publishing every run to watchers on {publisher.endpoint}", flush=True)
        options, recorded = {}, {}  # recorded: every option a method ran with, for --combine
        for method in cfg.methods:  # a bad option fails now, before any reference is judged
            algo_name, fixed = resolve_method(method)
            known = algorithms.get(algo_name).defaults
            options[method] = {k: v for k, v in effective_options(
                algo_name, setup.defaults, cfg.options).items() if k in known}
            recorded[method] = {**known, **options[method], **fixed}
            if setup.targets:
                build(method, 0, setup, setup.targets[0], options[method])
        for target in setup.targets:
            refs[target.name] = judge_references(
                setup, target, seeds, cfg.out / "targets" / target.name / "references.json")
            ref = refs[target.name]
            print(f"target {target.name}: judged start {mean_std(ref['start'])[0]:.3f}"
                  + (f", target {mean_std(ref['target'])[0]:.3f}" if ref["target"] else "")
                  + (f" (moved: {', '.join(target.moved)})" if target.moved else ""), flush=True)
            for method in cfg.methods:
                for seed in range(seeds):
                    run = run_one(method, seed, setup, target, budget,
                                  cfg.out / "runs" / target.name / f"{method}-seed{seed}",
                                  options[method], list(cfg.fractions), publisher)
                    runs.append(run)
                    curve = ", ".join(f"{c['test']:.3f}" for c in run["checkpoints"])
                    print(f"  {method:16s} seed {seed}: test {metric} at "
                          f"{'/'.join(f'{f:g}' for f in cfg.fractions)} of the budget: {curve} "
                          f"({run['wall_s']:.0f} s)", flush=True)
    result = {"scene": setup.label, "metric": metric, "budget_images": budget, "seeds": seeds,
              "targets": len(refs), "target_seed": cfg.target_seed if cfg.targets else None,
              "device": str(device), "fractions": list(cfg.fractions),
              "methods": list(cfg.methods), "options": recorded, "references": refs,
              "runs": runs}
    return write_results(cfg.out, result)


def write_results(out: Path, result: dict[str, Any]) -> dict[str, Any]:
    """Summarise result's runs and write bench.md, bench.json and (with runs) bench.png."""
    refs, runs, budget, seeds = (result["references"], result["runs"], result["budget_images"],
                                 result["seeds"])
    metric = result.get("metric", "metric")
    result["summary"] = summarise(runs, result["methods"], refs, result["fractions"])
    table = markdown(result["summary"], refs, result["scene"], metric, budget, seeds)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.md").write_text(table)
    (out / "bench.json").write_text(json.dumps(strict_json(result), indent=1,
                                               allow_nan=False))
    if runs:
        plot(result["summary"], refs, budget, out / "bench.png", metric,
             f"{result['scene']}: {len(refs)} target(s), {seeds} seed(s)")
    print()
    print(table)
    print("bench.json, bench.md" + (", bench.png" if runs else "") + f" in {out}")
    return result
