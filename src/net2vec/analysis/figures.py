"""Matplotlib (Agg) figures from the analysis tables; each function returns a Figure."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from net2vec.analysis.runs import Run  # noqa: E402
from net2vec.analysis.table import Table  # noqa: E402
from net2vec.analysis.uncertainty import above_null, fdr_of, significant, tested  # noqa: E402

NAMES = {"seg": "set IoU", "cls": "balanced accuracy"}


def grid(count: int, width: float = 4.2, height: float = 3.4, columns: int = 3):
    """A figure with ``count`` subplots on a grid; returns (figure, flat list of used axes)."""
    columns = max(1, min(columns, count))
    lines = max(1, math.ceil(count / columns))
    fig, axes = plt.subplots(
        lines, columns, figsize=(width * columns, height * lines), squeeze=False
    )
    flat = list(axes.ravel())
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:count]


def _keys(table: Table, **equal) -> list[tuple]:
    part = table.where(**equal) if equal else table
    return list(dict.fromkeys(zip(part["network"], part["layer"], part["task"])))


def table1_figure(table: Table) -> plt.Figure:
    """Bars of % concepts with all filters >= best single filter, per layer and task."""
    tasks = [c[:-8] for c in table.columns if c.endswith("_percent")]
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(table)), 3.6))
    x = np.arange(len(table))
    width = 0.8 / len(tasks)
    for t, task in enumerate(tasks):
        values = _floats(table[f"{task}_percent"])
        where = x + (t - (len(tasks) - 1) / 2) * width
        lo, hi = _column(table, f"{task}_percent_lo"), _column(table, f"{task}_percent_hi")
        yerr = error_bars(values, lo, hi, np.zeros_like(values))
        ax.bar(where, values, width, yerr=yerr, capsize=2, label=task)
        if f"{task}_percent_significant" in table.columns:
            significant = _column(table, f"{task}_percent_significant")
            ax.bar(where, significant, width * 0.4, color="black", alpha=0.45)
    ax.set_xticks(x, [f"{n}\n{layer}" for n, layer in zip(table["network"], table["layer"])])
    ax.set_ylabel("% concepts all ≥ single\n(dark: all > single significantly)")
    ax.set_ylim(0, 100)
    ax.legend()
    fig.tight_layout()
    return fig


def _floats(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _column(table: Table, name: str) -> np.ndarray:
    """A float column, empty when the table lacks it (runs written without statistics)."""
    return _floats(table[name]) if name in table.columns else np.zeros(0)


def error_bars(mean: np.ndarray, lo: np.ndarray, hi: np.ndarray, se: np.ndarray) -> np.ndarray:
    """(2, n) asymmetric error bars: the bootstrap interval [lo, hi] where there is one, else ± se."""
    if len(lo) != len(mean):
        lo = hi = np.full(len(mean), np.nan)
    known = np.isfinite(lo) & np.isfinite(hi)
    below = np.where(known, mean - lo, se)
    above = np.where(known, hi - mean, se)
    return np.nan_to_num(np.clip(np.stack([below, above]), 0, None))


def category_figure(table: Table, task: str) -> plt.Figure:
    """Fig. 2: mean per category with bootstrap intervals (± se without them), single vs all filters, one panel per (network, layer)."""
    keys = _keys(table, task=task)
    fig, axes = grid(len(keys))
    for ax, (network, layer, _) in zip(axes, keys):
        part = table.where(network=network, layer=layer, task=task)
        x = np.arange(len(part))
        for shift, name, label in ((-0.2, "single", "single filter"), (0.2, "all", "all filters")):
            mean = _floats(part[f"{name}_mean"])
            lo, hi = (_column(part, f"{name}_{end}") for end in ("lo", "hi"))
            yerr = error_bars(mean, lo, hi, _floats(part[f"{name}_se"]))
            ax.bar(x + shift, mean, 0.4, yerr=yerr, label=label, capsize=2)
        ax.set_xticks(x, part["category"], rotation=45, ha="right")
        ax.set_title(f"{network} {layer} ({task})")
        ax.set_ylabel(f"mean val {NAMES.get(task, task)}")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def subset_figure(table: Table) -> plt.Figure:
    """Fig. 3: mean score per category against the number of filters F (log scale)."""
    keys = _keys(table)
    fig, axes = grid(len(keys))
    for ax, (network, layer, task) in zip(axes, keys):
        part = table.where(network=network, layer=layer, task=task)
        for category in dict.fromkeys(part["category"]):
            line = part.where(category=category)
            mean = _floats(line["mean"])
            lo, hi = (_column(line, end) for end in ("lo", "hi"))
            ax.errorbar(
                line["F"],
                mean,
                yerr=error_bars(mean, lo, hi, _floats(line["se"])),
                marker="o",
                ms=3,
                capsize=2,
                label=category,
                lw=2.5 if category == "all" else 1.2,
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("F (filters kept)")
        ax.set_ylabel(f"mean val {NAMES.get(task, task)}")
        ax.set_title(f"{network} {layer} ({task})")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def null_figure(runs: list[Run]) -> plt.Figure:
    """Each concept's learned and single-filter score against its shuffled-mask null mean."""
    usable = [r for r in runs if f"null_{r.metric}_val" in r.results]
    fig, axes = grid(max(1, len(usable)))
    for ax, run in zip(axes, usable):
        metric = run.metric
        for prefix, label, colour in (
            ("", "all filters", "tab:blue"),
            ("single_", "single filter", "tab:orange"),
        ):
            if f"{prefix}null_{metric}_val" not in run.results:
                continue
            null = run.results[f"{prefix}null_{metric}_val"]
            score = run.results[f"{prefix}{metric}_val"]
            low_p = above_null(run, prefix)
            low_p = np.zeros(len(null), bool) if low_p is None else low_p
            ax.scatter(
                null[low_p], score[low_p], s=10, c=colour, label=f"{label}: q ≤ {fdr_of(run):g}"
            )
            ax.scatter(
                null[~low_p],
                score[~low_p],
                s=14,
                facecolors="none",
                edgecolors=colour,
                label=f"{label}: not",
            )
        top = max(1e-3, float(np.nanmax(ax.get_xlim() + ax.get_ylim())))
        ax.plot([0, top], [0, top], color="grey", lw=0.8)
        ax.set_xlabel(f"null val {NAMES.get(run.task, run.task)} (shuffled masks)")
        ax.set_ylabel(f"val {NAMES.get(run.task, run.task)}")
        ax.set_title(run.label)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def difference_figure(runs: list[Run]) -> plt.Figure:
    """Per run: every tested concept's all − single with its interval, sorted; coloured where it
    is significant (q ≤ fdr and the interval on one side of 0)."""
    usable = [r for r in runs if significant(r) is not None and tested(r).any()]
    fig, axes = grid(max(1, len(usable)))
    for ax, run in zip(axes, usable):
        chosen = np.flatnonzero(tested(run))
        diff = run.results["diff_val"][chosen]
        order = np.argsort(diff, kind="stable")
        lo, hi = (
            run.results["diff_val_lo"][chosen][order],
            run.results["diff_val_hi"][chosen][order],
        )
        better, worse = (s[chosen][order] for s in significant(run))
        x, y = np.arange(len(order)), diff[order]
        colour = np.where(better, "tab:blue", np.where(worse, "crimson", "grey"))
        ax.vlines(x, lo, hi, colors=colour, lw=0.8, alpha=0.6)
        ax.scatter(x, y, s=6, c=colour)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xlabel(
            f"tested concepts, sorted ({int(better.sum())} all, {int(worse.sum())} single)"
        )
        ax.set_ylabel(f"all − single val {NAMES.get(run.task, run.task)}")
        ax.set_title(run.label)
    fig.tight_layout()
    return fig


def failure_figure(runs: list[Run]) -> plt.Figure:
    """All-filter minus single-filter score against training images, per run (failures below 0)."""
    usable = [r for r in runs if "n_train" in r.results]
    fig, axes = grid(max(1, len(usable)))
    for ax, run in zip(axes, usable):
        gain = run.all - run.single
        fail = gain <= 0
        n_train = np.maximum(run.results["n_train"], 1)
        ax.scatter(n_train[~fail], gain[~fail], s=8, alpha=0.6, label="all > single")
        ax.scatter(n_train[fail], gain[fail], s=10, c="crimson", label="single ≥ all")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("training images")
        ax.set_ylabel("all − single")
        ax.set_title(run.label)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def usage_figure(table: Table) -> plt.Figure:
    """Fig. 5: per run, histogram of how many concepts choose each filter as best single filter."""
    keys = _keys(table)
    fig, axes = grid(len(keys))
    for ax, (network, layer, task) in zip(axes, keys):
        counts = np.array(table.where(network=network, layer=layer, task=task)["concepts"])
        ax.hist(counts, bins=np.arange(counts.max(initial=0) + 2) - 0.5, color="slateblue")
        ax.set_xlabel("concepts choosing the filter")
        ax.set_ylabel("filters")
        ax.set_title(
            f"{network} {layer} ({task}): {int((counts == 0).sum())}/{len(counts)} never chosen",
            fontsize=9,
        )
    fig.tight_layout()
    return fig


def shared_figure(table: Table) -> plt.Figure:
    """Fig. 4 without images: the single-filter scores of the concepts sharing the top filter."""
    first = table.rows[0]
    part = table.where(network=first[0], layer=first[1], task=first[2], filter=first[3])
    fig, ax = plt.subplots(figsize=(max(5, 0.45 * len(part)), 3.8))
    ax.bar(np.arange(len(part)), part["single"], color="darkorange")
    ax.set_xticks(np.arange(len(part)), part["concept"], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel(f"val {NAMES.get(first[2], first[2])} of filter {first[3]}")
    ax.set_title(
        f"{first[0]} {first[1]} ({first[2]}): filter {first[3]} is best for {len(part)} concepts"
    )
    fig.tight_layout()
    return fig
