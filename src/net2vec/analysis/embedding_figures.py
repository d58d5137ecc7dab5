"""Figures for the per-image IoU distribution (Fig. 7), weight/score correlation (Fig. 9), the
embedding map (t-SNE + k-means) and the distance between embedding spaces (Fig. 10)."""

from __future__ import annotations

import numpy as np

from net2vec.analysis.figures import grid, plt
from net2vec.analysis.runs import Run
from net2vec.analysis.table import Table


def per_image_figure(runs: list[Run]) -> plt.Figure:
    """Fig. 7: histograms of the non-zero per-image IoU, best single filter vs learned weights."""
    usable = [
        r for r in runs if r.embeddings is not None and "single_iou" in r.embeddings.per_image
    ]
    fig, axes = grid(max(1, len(usable)))
    for ax, run in zip(axes, usable):
        for key, label in (("single_iou", "single filter"), ("all_iou", "all filters")):
            values = np.asarray(run.embeddings.per_image.get(key, []), np.float64)
            values = values[np.isfinite(values) & (values > 0)]
            if len(values):
                ax.hist(
                    values,
                    bins=np.linspace(0, 1, 41),
                    alpha=0.55,
                    label=f"{label}: μ={values.mean():.2f} σ={values.std():.2f}",
                )
        ax.set_xlabel("per-image IoU (non-zero part)")
        ax.set_ylabel("image-concept pairs")
        ax.set_title(run.label)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def correlation_figure(correlations: Table, summary: Table, shares: Table) -> plt.Figure:
    """Fig. 9: r distribution per run, % p < 0.01 per run, mean sorted filter share |w_k|/||w||_1."""
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(14, 3.8))
    keys = list(
        dict.fromkeys(zip(correlations["network"], correlations["layer"], correlations["task"]))
    )
    for network, layer, task in keys:
        r = np.array(correlations.where(network=network, layer=layer, task=task)["r"], np.float64)
        left.hist(
            r[np.isfinite(r)],
            bins=np.linspace(-1, 1, 41),
            alpha=0.5,
            label=f"{network} {layer} {task}",
        )
    left.set_xlabel("Pearson r of max(w,0) and per-filter val score")
    left.set_ylabel("concepts")
    left.legend(fontsize=7)
    percent = summary.columns[5]
    middle.bar(np.arange(len(summary)), summary[percent], color="teal")
    middle.set_xticks(
        np.arange(len(summary)),
        [
            f"{n}\n{layer}\n{t}"
            for n, layer, t in zip(summary["network"], summary["layer"], summary["task"])
        ],
        fontsize=7,
    )
    middle.set_ylabel(f"% concepts {percent.replace('percent_', '').replace('_', ' ')}")
    middle.set_ylim(0, 100)
    for network, layer, task in dict.fromkeys(
        zip(shares["network"], shares["layer"], shares["task"])
    ):
        part = shares.where(network=network, layer=layer, task=task)
        right.plot(part["rank"], part["mean_share"], label=f"{network} {layer} {task}")
    right.set_xscale("log")
    right.set_xlabel("filter rank by |w_k|")
    right.set_ylabel("mean |w_k| / ||w||₁")
    right.legend(fontsize=7)
    fig.tight_layout()
    return fig


def embedding_map_figure(
    names, categories, xy: np.ndarray, clusters: np.ndarray, title: str
) -> plt.Figure:
    """t-SNE map coloured by concept category (left) and by k-means cluster (right)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    categories = np.asarray(categories)
    for category in sorted(set(categories.tolist())):
        chosen = categories == category
        left.scatter(xy[chosen, 0], xy[chosen, 1], s=12, label=category)
    right.scatter(xy[:, 0], xy[:, 1], c=clusters, cmap="tab10", s=12)
    if len(names) <= 60:
        for ax in (left, right):
            for name, (x, y) in zip(names, xy):
                ax.annotate(str(name), (x, y), fontsize=6)
    left.legend(fontsize=7, markerscale=1.5)
    left.set_title(f"{title}: t-SNE by category")
    right.set_title(f"{title}: k-means clusters ({len(set(clusters.tolist()))})")
    fig.tight_layout()
    return fig


def distance_figure(pairs: Table, by_category: Table, title: str) -> plt.Figure:
    """Fig. 10: heatmap of D_ij, then one heatmap per category of the mean D_ijc."""
    labels = list(dict.fromkeys(pairs["space_i"]))
    categories = list(dict.fromkeys(by_category["category"]))
    fig, axes = grid(1 + len(categories), width=4.6, height=4.0)
    panels = [("all concepts: D_ij", pairs["D"])] + [
        (f"{c}: mean D_ijc", by_category.where(category=c)["mean_D_c"]) for c in categories
    ]
    short = [label.replace("/", "\n") for label in labels]
    for ax, (name, values) in zip(axes, panels):
        matrix = np.array(values, np.float64).reshape(len(labels), len(labels))
        image = ax.imshow(matrix, cmap="viridis")
        ax.set_xticks(range(len(labels)), short, fontsize=6)
        ax.set_yticks(range(len(labels)), short, fontsize=6)
        ax.set_title(name, fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
