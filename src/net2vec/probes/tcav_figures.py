"""Matplotlib (Agg) figures of a TCAV run, from tcav.csv / ablation.csv as named columns.

- ``score_heatmap``: concept × class TCAV scores; cells that are not significant are grey;
- ``top_concepts``: per class, the highest-scoring significant concepts with their intervals
  and the random concepts' mean score;
- ``ablation_bars``: per class, the class-probability drop when each concept's direction is
  ablated, against the mean (and max) drop along random directions.

The run's W&B log (``probes.tcav_outcome``) and evaluate.py's report (analysis/tcav_report.py)
draw the same figures.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _grid(count: int, width: float = 4.0, height: float = 3.0, columns: int = 4):
    columns = max(1, min(columns, count))
    lines = max(1, math.ceil(count / columns))
    fig, axes = plt.subplots(
        lines, columns, figsize=(width * columns, height * lines), squeeze=False
    )
    for ax in axes.ravel()[count:]:
        ax.set_visible(False)
    return fig, list(axes.ravel()[:count])


def _matrix(columns: dict, value: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    concepts = np.array(list(dict.fromkeys(columns["concept"])))
    classes = np.array(list(dict.fromkeys(columns["class"])))
    return concepts, classes, np.asarray(columns[value], float).reshape(len(concepts), len(classes))


def score_heatmap(tcav: dict) -> plt.Figure:
    """Concept × class scores, non-significant cells greyed."""
    concepts, classes, score = _matrix(tcav, "score")
    significant = _matrix(tcav, "significant")[2] == 1
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * len(classes), 1.2 + 0.3 * len(concepts)))
    ax.imshow(np.ones_like(score), cmap="Greys", vmin=0, vmax=6)  # grey background
    image = ax.imshow(np.ma.masked_where(~significant, score), cmap="RdBu_r", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(concepts)), concepts, fontsize=7)
    ax.set_title("TCAV score (grey: not significant)", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    return fig


def top_concepts(tcav: dict, top: int = 5) -> plt.Figure:
    """Per class, the top significant concepts' scores with intervals; dashed: random mean."""
    classes = list(dict.fromkeys(tcav["class"]))
    fig, axes = _grid(len(classes))
    for ax, name in zip(axes, classes):
        rows = np.flatnonzero((tcav["class"] == name) & (tcav["significant"] == 1))
        rows = rows[np.argsort(-tcav["score"][rows], kind="stable")][:top][::-1]
        score = tcav["score"][rows]
        error = [score - tcav["score_lo"][rows], tcav["score_hi"][rows] - score]
        ax.barh(range(len(rows)), score, xerr=error, color="tab:blue", capsize=2)
        ax.set_yticks(range(len(rows)), tcav["concept"][rows], fontsize=7)
        random = tcav["random_mean"][tcav["class"] == name]
        if len(random) and np.isfinite(random[0]):
            ax.axvline(random[0], color="k", linestyle="--", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_title(f"{name}" + ("" if len(rows) else " (none significant)"), fontsize=8)
    fig.tight_layout()
    return fig


def ablation_bars(ablation: dict, variant: str = "project", top: int = 5) -> plt.Figure:
    """Per class, the largest class-probability drops (concept ablated) vs random directions."""
    part = {k: v[ablation["variant"] == variant] for k, v in ablation.items()}
    classes = list(dict.fromkeys(part["class"]))
    fig, axes = _grid(len(classes))
    for ax, name in zip(axes, classes):
        rows = np.flatnonzero(part["class"] == name)
        rows = rows[np.argsort(-np.nan_to_num(part["prob_drop"][rows], nan=-1), kind="stable")]
        rows = rows[:top][::-1]
        colours = ["tab:red" if p <= 0.05 else "tab:gray" for p in part["p"][rows]]
        ax.barh(range(len(rows)), part["prob_drop"][rows], color=colours)
        ax.set_yticks(range(len(rows)), part["concept"][rows], fontsize=7)
        if len(rows):
            ax.axvline(part["random_prob_drop"][rows[0]], color="k", linestyle="--", linewidth=1)
        ax.set_title(f"{name}: probability drop ({variant})", fontsize=8)
    fig.tight_layout()
    return fig


def all_figures(tcav: dict, ablation: dict | None) -> list[tuple[str, plt.Figure]]:
    """(name, figure) of every TCAV figure (the ablation bars only with ablation rows)."""
    figures = [("tcav_scores", score_heatmap(tcav)), ("tcav_top_concepts", top_concepts(tcav))]
    if ablation is not None and len(ablation["concept"]):
        figures += [(f"ablation_{v}", ablation_bars(ablation, v)) for v in ("project", "clamp")]
    return figures
