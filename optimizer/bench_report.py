"""bench.md and bench.png: the judged comparison as a table and as curves against images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from optimizer import bench_paired
from optimizer.judge import mean_std, paired_span


def _ms(pair: tuple[float, float] | None, fmt: str) -> str:
    return "n/a" if pair is None else bench_paired.pm(pair[0], pair[1], fmt)


def _choices_table(rows: list[dict[str, Any]]) -> list[str]:
    """Per categorical: P(favoured) at the start and per method at the end (mean ± std), and
    the total-variation distance to the target's probabilities closed (mean ± standard error)
    over the runs whose target moved it."""
    names = list(dict.fromkeys(n for r in rows for n in r.get("choices", {})))
    head = ["Categorical", "Runs", "P(favoured) at the start"] + [
        f"{r['method']}: {what}" for r in rows for what in ("P(favoured)", "TV closer by")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        first = next(r["choices"][name] for r in rows if name in r.get("choices", {}))
        cells = [name, str(first["runs"]), _ms(first["start"], ".3f")]
        for r in rows:
            c = r.get("choices", {}).get(name)
            cells += ([_ms(c["end"], ".3f"), bench_paired.pm(*c["closer"], ".3f", signed=True)]
                      if c else ["n/a", "n/a"])
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _reach(cell: dict[str, Any]) -> str:
    if not cell["of"]:
        return "n/a"
    if cell["images"] is None:
        return f"not reached (0/{cell['of']})"
    return f"{_ms(cell['images'], '.0f')} ({cell['reached']}/{cell['of']})"


def markdown(summary: dict[str, Any], refs: dict[str, dict[str, Any]], scene: str, metric: str,
             budget: int, seeds: int) -> str:
    fractions = summary["fractions"]
    known = summary.get("separable", [])
    agreement = any(np.isfinite(r["favoured_mass"][0]) for r in summary["rows"])
    at = [f"{int(round(f * 100))}%" for f in fractions]
    lines = [f"Scene `{scene}`, budget {budget} images, {seeds} seed(s) per method, "
             f"{len(refs)} target(s) ({', '.join(refs)}); judged test {metric} of a fresh model "
             f"trained on each psi; mean ± std over runs (targets x seeds).", ""]
    head = (["Method", "Time (s)", "Images"] + [f"Test {metric} at {a}" for a in at]
            + ([f"Gap closed at {a}" for a in at[-1:]] + ["Images to 50% of gap",
                                                            "Images to 90% of gap"]
               if known else []) + (["P(favoured)"] if agreement else []))
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in summary["rows"]:
        wall = r["wall_s"]  # a toy run takes well under a second: not "0 ± 0"
        cells = [r["method"], _ms(wall, ".2f" if wall and wall[0] < 10 else ".0f"),
                 _ms(r["images"], ".0f")]
        cells += [_ms(t, ".3f") for t in r["test"]]
        if known:
            cells += [_ms(r["gap"][-1], ".2f"), _reach(r["reach_50"]), _reach(r["reach_90"])]
        if agreement:
            cells.append(_ms(r["favoured_mass"], ".3f"))
        lines.append("| " + " | ".join(cells) + " |")
    if known:
        close = [n for n, r in refs.items() if r.get("target") is not None and n not in known]
        lines += ["", "Gap closed = (test(psi) - test(start)) / (test(target) - test(start)), "
                  f"averaged over a target's seeds, then mean ± std over the {len(known)} "
                  "target(s) the judge tells apart from the start"
                  + (f" (left out, too close to the start: {', '.join(close)})" if close
                     else "") + "."]
    lines += ["", f"The judge's own range (test {metric}, mean ± std over {seeds} judge "
              f"seed(s)); the span target - start, measured seed by seed (mean ± standard "
              f"error); and gap closed at the end of the budget per target (mean ± standard "
              f"error over the seeds, each from the start's score under its own judge seed):",
              ""]
    methods = [r["method"] for r in summary["rows"]]
    head = ["Target", "Moved", "Start psi", "Target psi", "Span"] + methods
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, ref in refs.items():
        cells = [name, ", ".join(ref.get("moved") or []) or "-", _ms(mean_std(ref["start"]),
                                                                      ".3f"),
                 _ms(mean_std(ref["target"]), ".3f") if ref.get("target") else "unknown",
                 _ms(paired_span(ref), ".3f") if ref.get("target") else "n/a"]
        for r in summary["rows"]:
            g = r["gap_per_target"].get(name)
            se = r.get("gap_per_target_se", {}).get(name)
            if ref.get("target") is not None and name not in known:
                cells.append("too close")
            elif g and np.isfinite(g[-1]):
                cells.append(_ms((g[-1], se[-1]), ".2f") if se else f"{g[-1]:.2f}")
            else:
                cells.append("n/a")
        lines.append("| " + " | ".join(cells) + " |")
    if agreement:
        lines += ["", "P(favoured): the final psi's probability on the choices the target "
                  "configuration favours (a uniform start puts favoured/choices there), a "
                  "run's mean over the categoricals its target moved; per categorical:", "",
                  *_choices_table(summary["rows"])]
    if summary.get("paired"):
        lines += ["", *bench_paired.markdown(summary["paired"], metric)]
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], refs: dict[str, dict[str, Any]], budget: int, path: Path,
         metric: str, title: str) -> None:
    """Gap closed against images where targets are known, else the test metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    known = bool(summary.get("separable"))
    xs = [0] + [f * budget for f in summary["fractions"]]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, row in enumerate(summary["rows"]):
        if known:
            ys = [(0.0, 0.0)] + row["gap"]
        else:
            start = mean_std([v for r in refs.values() for v in r["start"]])
            ys = [start] + row["test"]
        mean = np.array([y[0] for y in ys])
        std = np.array([y[1] for y in ys])
        ax.plot(xs, mean, marker="o", color=f"C{i}", label=row["method"])
        ax.fill_between(xs, mean - std, mean + std, color=f"C{i}", alpha=0.12)
    if known:
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.axhline(0.0, color="k", lw=0.8)
    ax.set_xlabel("images rendered by the method")
    ax.set_ylabel("gap closed (judged)" if known else f"judged test {metric}")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
