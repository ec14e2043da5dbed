"""Paired comparisons of a bench, run by run: each method against the start psi, each pair of
methods against each other.

Runs on the same target under the same judge seed share the judge's latents and initialisation,
so their difference cancels what the seed alone does to a score (a start psi scored 0.13 and
0.20 under two seeds on one clevr target). The spread over separately judged runs is the
standard error to set a difference against; a difference within two of them is not one.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from optimizer.judge import finite, mean_se, paired_span, start_score


def _final(run: dict[str, Any]) -> float:
    return float(run["checkpoints"][-1]["test"]) if run["checkpoints"] else float("nan")


def _stats(diffs: list[float]) -> dict[str, Any]:
    """Mean, standard error and how many of the differences are above zero."""
    diffs = [d for d in diffs if finite(d)]
    mean, se = mean_se(diffs)
    return {"mean": mean, "se": se, "better": sum(d > 0 for d in diffs), "of": len(diffs)}


def paired(runs: list[dict[str, Any]], methods: list[str], refs: dict[str, dict[str, Any]],
           separable: list[str]) -> dict[str, Any]:
    """Per method, its final test metric minus the start's under the same target and judge seed
    (every target, a user's own data included) and its gap closed per separable target; per pair
    of methods, the same two differences between them. Gap differences divide by the target's
    paired span, as gap closed does."""
    final = {(r["method"], r["target"], r["seed"]): _final(r) for r in runs}
    spans = {name: paired_span(refs[name])[0] for name in separable}

    def per_target(values: dict[tuple[str, int], float]) -> list[float]:
        """Each separable target's mean over its seeds, in units of its span."""
        out = []
        for name, span in spans.items():
            mine = [v for (t, _), v in values.items() if t == name and finite(v)]
            if mine and span:
                out.append(float(np.mean(mine)) / span)
        return out

    vs_start = {}
    for m in methods:
        diffs = {(t, s): v - start_score(refs[t], s) for (mm, t, s), v in final.items() if mm == m}
        vs_start[m] = {"per_run": _stats(list(diffs.values())),
                       "gap": _stats(per_target(diffs))}
    pairs = []
    for a, b in itertools.combinations(methods, 2):
        diffs = {(t, s): v - final[(b, t, s)] for (mm, t, s), v in final.items()
                 if mm == a and (b, t, s) in final}
        pairs.append({"a": a, "b": b, "per_run": _stats(list(diffs.values())),
                      "gap": _stats(per_target(diffs))})
    return {"vs_start": vs_start, "pairs": pairs}


def pm(mean: float, spread: float, fmt: str, signed: bool = False) -> str:
    """'mean ± spread' for bench.md: 'n/a' without a mean, and the mean alone where the
    spread is unknown (one value has no spread, which is not a spread of zero)."""
    if not np.isfinite(mean):
        return "n/a"
    head = f"{mean:{'+' if signed else ''}{fmt}}"
    return head + (f" ± {spread:{fmt}}" if np.isfinite(spread) else "")


def _cell(s: dict[str, Any], fmt: str) -> list[str]:
    if not s["of"]:
        return ["n/a", "n/a"]
    return [pm(s["mean"], s["se"], fmt, signed=True), f"{s['better']}/{s['of']}"]


def markdown(table: dict[str, Any], metric: str) -> list[str]:
    """The paired table's lines for bench.md."""
    head = ["Comparison", f"Test {metric} difference per run", "Better runs",
            "Gap closed difference per separable target", "Better targets"]
    lines = ["Paired run by run (same target, same judge seed; mean ± standard error; a "
             "difference within two standard errors of zero is not one):", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, s in table["vs_start"].items():
        lines.append("| " + " | ".join([f"{m} - start psi", *_cell(s["per_run"], ".3f"),
                                         *_cell(s["gap"], ".2f")]) + " |")
    for p in table["pairs"]:
        lines.append("| " + " | ".join([f"{p['a']} - {p['b']}", *_cell(p["per_run"], ".3f"),
                                         *_cell(p["gap"], ".2f")]) + " |")
    return lines
