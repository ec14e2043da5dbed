"""report.png: validation metric against images rendered, and every optimised parameter's path."""

from __future__ import annotations

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


def placement_grid(space: ParameterSpace, name: str = "config") -> tuple[np.ndarray, list, list]:
    """The 54 probabilities of a 'L{layout}_P{location}_{quality}' categorical as a
    (layouts * qualities, locations) array, with row and column labels."""
    param = space.params[space.names.index(name)]
    probs = param.summary()["probs"]
    layouts, locations, qualities = set(), set(), []
    parsed = {}
    for choice, p in probs.items():
        lay, loc, qual = choice.split("_")
        layouts.add(int(lay[1:]))
        locations.add(int(loc[1:]))
        if qual not in qualities:
            qualities.append(qual)
        parsed[(int(lay[1:]), int(loc[1:]), qual)] = p
    rows = [(lay, q) for lay in sorted(layouts) for q in qualities]
    grid = np.array([[parsed[(lay, loc, q)] for loc in sorted(locations)] for lay, q in rows])
    return grid, [f"layout {lay} {q}" for lay, q in rows], [f"P{j}" for j in sorted(locations)]


def write_placement_report(start: ParameterSpace, end: ParameterSpace,
                           hidden: ParameterSpace | None, path: str | Path) -> Path:
    """Start, learned and (when known) hidden distributions over the 54 placement configs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("start", start), ("learned", end)] + ([("hidden", hidden)] if hidden else [])
    grids = [(title, *placement_grid(space)) for title, space in panels]
    vmax = max(g.max() for _, g, _, _ in grids)
    fig, axes = plt.subplots(1, len(grids), figsize=(5.4 * len(grids), 3.2), squeeze=False,
                             gridspec_kw={"wspace": 0.55})
    for ax, (title, grid, rows, cols) in zip(axes[0], grids):
        im = ax.imshow(grid, vmin=0, vmax=vmax, cmap="viridis")
        ax.set_xticks(range(len(cols)), cols, fontsize=7)
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        ax.set_title(f"{title} (max p = {grid.max():.3f})", fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="probability")
    fig.savefig(Path(path), dpi=90, bbox_inches="tight")
    plt.close(fig)
    return Path(path)
