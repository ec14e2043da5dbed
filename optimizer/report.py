"""report.png: validation metric against images rendered, and every optimised parameter's path."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from protocol.space import ParameterSpace


def write_report(records: Sequence[dict[str, Any]], space: ParameterSpace, path: str | Path, *,
                 metric_name: str = "validation metric", target: ParameterSpace | None = None,
                 title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    names = [p.name for p in space.params if not p.fixed]
    n_panels = 1 + len(names)
    cols = min(6, n_panels)
    rows = math.ceil(n_panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.4 * rows), squeeze=False)
    flat = axes.ravel()
    images = [r["images_rendered"] for r in records]
    metric = [np.nan if r.get("val_metric") is None else r["val_metric"] for r in records]
    ax = flat[0]
    ax.plot(images, metric, marker=".", color="C0")
    ax.set_xlabel("images rendered")
    ax.set_ylabel(metric_name)
    ax.set_title(title or metric_name, fontsize=9)
    ax.grid(alpha=0.3)
    psi = np.array([r["psi"] for r in records]) if records else np.zeros((0, space.psi_dim))
    labels = space.psi_labels
    for ax, name in zip(flat[1:], names):
        sl = space.psi_slices[name]
        for j in range(sl.start, sl.stop):
            line = ax.plot(images, psi[:, j], lw=1.2, label=labels[j].split(".", 1)[1])[0]
            if target is not None:
                ax.axhline(target.psi[j], color=line.get_color(), ls=":", lw=0.9)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        if sl.stop - sl.start <= 6:
            ax.legend(fontsize=6, loc="best")
        ax.grid(alpha=0.3)
    for ax in flat[n_panels:]:
        ax.axis("off")
    if target is not None:
        fig.suptitle("dotted: validation configuration", fontsize=8, y=0.995)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def product_grid(choices: Sequence[str], probs: Sequence[float]
                 ) -> tuple[np.ndarray, list[str], list[str]] | None:
    """Probabilities of a categorical whose choices are the full product of '_'-separated
    factors ("L0_P3_low": layout x place x quality) as a grid: the factor with the most values
    across (ties: the last), the others down (row and column labels); None for any other
    categorical."""
    parts = [c.split("_") for c in choices]
    if len(parts[0]) < 2 or any(len(p) != len(parts[0]) for p in parts):
        return None
    levels = [list(dict.fromkeys(p[i] for p in parts)) for i in range(len(parts[0]))]
    if math.prod(len(v) for v in levels) != len(choices):
        return None
    grid = np.zeros([len(v) for v in levels])
    for p, prob in zip(parts, probs):
        grid[tuple(levels[i].index(x) for i, x in enumerate(p))] = prob
    sizes = [len(v) for v in levels]
    across = len(sizes) - 1 - int(np.argmax(sizes[::-1]))  # ties: the last factor
    down = [levels[i] for i in range(len(levels)) if i != across]
    rows = ["_".join(combo) for combo in itertools.product(*down)]
    return np.moveaxis(grid, across, -1).reshape(len(rows), -1), rows, levels[across]


def write_choice_grids(start: ParameterSpace, end: ParameterSpace,
                       hidden: ParameterSpace | None, out: str | Path) -> list[Path]:
    """NAME_distribution.png for every optimised categorical whose choices form a product:
    start, learned and (when known) hidden probabilities side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for param in start.params:
        if param.kind != "categorical" or param.fixed:
            continue
        panels = [("start", start), ("learned", end)] + ([("hidden", hidden)] if hidden else [])
        grids = []
        for title, space in panels:
            probs = space.params[space.names.index(param.name)].summary()["probs"]
            grid = product_grid(list(probs), list(probs.values()))
            if grid is None:
                break
            grids.append((title, *grid))
        if not grids:
            continue
        vmax = max(g.max() for _, g, _, _ in grids)
        fig, axes = plt.subplots(1, len(grids), figsize=(5.4 * len(grids), 3.2), squeeze=False,
                                 gridspec_kw={"wspace": 0.55})
        for ax, (title, grid, rows, cols) in zip(axes[0], grids):
            im = ax.imshow(grid, vmin=0, vmax=vmax, cmap="viridis")
            ax.set_xticks(range(len(cols)), cols, fontsize=7)
            ax.set_yticks(range(len(rows)), rows, fontsize=7)
            ax.set_title(f"{param.name}, {title} (max p = {grid.max():.3f})", fontsize=9)
        fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="probability")
        path = Path(out) / f"{param.name}_distribution.png"
        fig.savefig(path, dpi=90, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


def categorical_agreement(start: ParameterSpace, end: ParameterSpace,
                          target: ParameterSpace) -> list[dict[str, Any]]:
    """Per optimised categorical that the target sets apart from the start: the probability
    on the choices the target favours (those above uniform) and the total-variation distance
    to the target's probabilities, at the start and the end."""
    rows = []
    for p_start, p_end, p_target in zip(start.params, end.params, target.params):
        if p_start.kind != "categorical" or p_start.fixed:
            continue
        q0, q1, qt = (np.asarray(list(p.summary()["probs"].values()))
                      for p in (p_start, p_end, p_target))
        if np.allclose(q0, qt, atol=1e-6):
            continue
        favoured = qt > 1.0 / len(qt) + 1e-9
        rows.append({"name": p_start.name, "favoured": int(favoured.sum()),
                     "mass_start": float(q0[favoured].sum()),
                     "mass_end": float(q1[favoured].sum()),
                     "mass_target": float(qt[favoured].sum()),
                     "tv_start": float(0.5 * np.abs(q0 - qt).sum()),
                     "tv_end": float(0.5 * np.abs(q1 - qt).sum())})
    return rows


def agreement_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for r in rows:
        n = r["favoured"]
        lines.append(f"{r['name']}: P(the {n} choice{'s' if n != 1 else ''} the validation "
                     f"configuration favours) {r['mass_start']:.3f} -> {r['mass_end']:.3f} "
                     f"(validation {r['mass_target']:.3f}); total variation to it "
                     f"{r['tv_start']:.3f} -> {r['tv_end']:.3f}")
    return lines
