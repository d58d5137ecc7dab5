"""Filter-level analyses: which filters concepts choose (Figs. 4-5), the per-image IoU
distribution (Fig. 7), and how learned weights relate to single-filter scores (§5.2, Fig. 9)."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

from net2vec.analysis.runs import Run
from net2vec.analysis.table import Table


def filter_counts(run: Run) -> np.ndarray:
    """(K,) number of concepts whose best single filter is k."""
    chosen = np.asarray(run.results["single_filter"], np.float64)
    chosen = chosen[np.isfinite(chosen)].astype(np.int64)
    size = max(run.num_filters or 0, int(chosen.max(initial=-1)) + 1)
    return np.bincount(chosen[chosen >= 0], minlength=size)


def filter_usage(runs: list[Run]) -> Table:
    """Fig. 5: per run and filter, how many concepts choose it as best single filter."""
    rows = []
    for run in runs:
        for k, count in enumerate(filter_counts(run)):
            rows.append([run.network, run.layer, run.task, k, int(count)])
    return Table(["network", "layer", "task", "filter", "concepts"], rows)


def usage_summary(runs: list[Run]) -> Table:
    """Per run: filters, filters never chosen, and the most chosen filter's count."""
    rows = []
    for run in runs:
        counts = filter_counts(run)
        rows.append(
            [
                run.network,
                run.layer,
                run.task,
                len(counts),
                int((counts == 0).sum()),
                int(np.argmax(counts)),
                int(counts.max(initial=0)),
            ]
        )
    return Table(
        ["network", "layer", "task", "filters", "never_chosen", "top_filter", "top_count"], rows
    )


def shared_filters(run: Run, top: int = 5) -> Table:
    """Fig. 4: the ``top`` filters chosen by most concepts, listing those concepts by single score."""
    counts = filter_counts(run)
    rows = []
    for k in np.argsort(-counts, kind="stable")[:top]:
        if counts[k] == 0:
            break
        members = np.flatnonzero(run.results["single_filter"] == k)
        members = members[
            np.argsort(-np.nan_to_num(run.single[members], nan=-np.inf), kind="stable")
        ]
        for i in members:
            rows.append(
                [
                    run.network,
                    run.layer,
                    run.task,
                    int(k),
                    int(counts[k]),
                    str(run.concepts[i]),
                    str(run.categories[i]),
                    float(run.single[i]),
                ]
            )
    return Table(
        ["network", "layer", "task", "filter", "concepts_sharing", "concept", "category", "single"],
        rows,
    )


def per_image_stats(runs: list[Run]) -> Table:
    """Fig. 7: per-image IoU of best filter and learned weights; μ, σ (ddof 0) of the non-zero part."""
    rows = []
    for run in runs:
        per_image = run.embeddings.per_image if run.embeddings else {}
        for key, probe in (("single_iou", "single"), ("all_iou", "all")):
            if key not in per_image:
                continue
            values = np.asarray(per_image[key], np.float64)
            values = values[np.isfinite(values)]
            nonzero = values[values > 0]
            mu = float(nonzero.mean()) if len(nonzero) else float("nan")
            sigma = float(nonzero.std()) if len(nonzero) else float("nan")
            rows.append(
                [
                    run.network,
                    run.layer,
                    run.task,
                    probe,
                    len(values),
                    len(nonzero),
                    100.0 * (1 - len(nonzero) / len(values)) if len(values) else float("nan"),
                    mu,
                    sigma,
                ]
            )
    return Table(
        [
            "network",
            "layer",
            "task",
            "probe",
            "pairs",
            "nonzero",
            "percent_zero",
            "mu_nonzero",
            "sigma_nonzero",
        ],
        rows,
    )


def pearson(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Pearson r and two-sided p; NaN for constant or too short inputs."""
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stats.pearsonr(x, y)
    return float(result[0]), float(result[1])


def weight_correlations(runs: list[Run], split: str = "val") -> Table:
    """§5.2: per concept, Pearson r (and p) between max(w, 0) and the per-filter ``split`` scores."""
    rows = []
    for run in runs:
        if run.embeddings is None or split not in run.embeddings.filter_scores:
            continue
        weights, scores = run.embeddings.weights, run.embeddings.filter_scores[split]
        for i in range(len(run.concepts)):
            r, p = pearson(np.maximum(weights[i], 0.0), scores[i])
            rows.append(
                [
                    run.network,
                    run.layer,
                    run.task,
                    str(run.concepts[i]),
                    str(run.categories[i]),
                    r,
                    p,
                ]
            )
    return Table(["network", "layer", "task", "concept", "category", "r", "p"], rows)


def correlation_summary(correlations: Table, alpha: float = 0.01) -> Table:
    """Per run: % of concepts with p < alpha (undefined correlations count as not significant)."""
    rows = []
    keys = list(
        dict.fromkeys(zip(correlations["network"], correlations["layer"], correlations["task"]))
    )
    for network, layer, task in keys:
        part = correlations.where(network=network, layer=layer, task=task)
        p = np.array(part["p"], np.float64)
        r = np.array(part["r"], np.float64)
        significant = np.nan_to_num(p, nan=1.0) < alpha
        rows.append(
            [
                network,
                layer,
                task,
                len(p),
                int(np.isfinite(p).sum()),
                100.0 * significant.mean(),
                float(np.nanmean(r)) if np.isfinite(r).any() else float("nan"),
            ]
        )
    return Table(
        ["network", "layer", "task", "concepts", "defined", f"percent_p_below_{alpha:g}", "mean_r"],
        rows,
    )


def weight_shares(weights: np.ndarray) -> np.ndarray:
    """(C, K) each concept's filter shares |w_k| / ||w||_1, sorted descending (zero rows stay 0)."""
    absolute = np.abs(np.asarray(weights, np.float64))
    norm = absolute.sum(axis=1, keepdims=True)
    shares = np.divide(absolute, norm, out=np.zeros_like(absolute), where=norm > 0)
    return -np.sort(-shares, axis=1)


def share_curves(runs: list[Run]) -> Table:
    """Fig. 9 (right): per run the mean sorted share |w_k|/||w||_1 at each rank and its cumulative sum."""
    rows = []
    for run in runs:
        if run.embeddings is None:
            continue
        mean = weight_shares(run.embeddings.weights).mean(axis=0)
        for rank, (share, total) in enumerate(zip(mean, np.cumsum(mean)), start=1):
            rows.append([run.network, run.layer, run.task, rank, float(share), float(total)])
    return Table(["network", "layer", "task", "rank", "mean_share", "cumulative_share"], rows)
