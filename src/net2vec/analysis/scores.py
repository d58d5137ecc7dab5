"""Score tables over runs: Table 1, Fig. 2 (per category), Fig. 3 (vs F) and the failure cases.

Concepts whose single-filter or all-filter score is NaN are left out of every comparison.
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np

from net2vec.analysis.runs import Run
from net2vec.analysis.table import Table, mean_se
from net2vec.analysis.uncertainty import significant, tested
from net2vec.statistics.scores import all_ge_single

log = logging.getLogger(__name__)

TRAIN_BINS = (0, 10, 100, 1000, np.inf)


def _valid(run: Run) -> np.ndarray:
    return np.isfinite(run.single) & np.isfinite(run.all)


def percent_all_ge_single(run: Run) -> float:
    """% of concepts whose all-filter score is >= their best single filter's."""
    ok = _valid(run)
    if not ok.any():
        return float("nan")
    return float(100.0 * np.mean(all_ge_single(run.all[ok], run.single[ok])))


def table1(runs: list[Run]) -> Table:
    """Table 1: one row per (network, layer), one column per task: % concepts all >= single."""
    tasks = sorted(
        {run.task for run in runs},
        key=lambda t: ("seg", "cls").index(t) if t in ("seg", "cls") else 2,
    )
    keys = list(dict.fromkeys((run.network, run.layer) for run in runs))
    rows = []
    for network, layer in keys:
        row: list = [network, layer]
        extra: list = []
        for task in tasks:
            match = [r for r in runs if (r.network, r.layer, r.task) == (network, layer, task)]
            row += (
                [percent_all_ge_single(match[0]), int(_valid(match[0]).sum())]
                if match
                else [None, 0]
            )
            extra += percent_intervals(match[0]) if match else [None, None, None]
        rows.append(row + extra)
    columns = ["network", "layer"] + [c for t in tasks for c in (f"{t}_percent", f"{t}_n")]
    columns += [
        f"{t}_{c}" for t in tasks for c in ("percent_lo", "percent_hi", "percent_significant")
    ]
    return Table(columns, rows)


def percent_intervals(run: Run) -> list:
    """BCa interval of the share all >= single and the % of tested concepts where all filters are
    significantly better (q_all_gt_single <= fdr, interval above 0); None without statistics."""
    stats = run.summary.get("statistics") or {}
    sig, chosen = significant(run), tested(run)
    share = float(100.0 * sig[0].sum() / chosen.sum()) if sig is not None and chosen.any() else None
    return [stats.get("percent_all_ge_single_lo"), stats.get("percent_all_ge_single_hi"), share]


def _category_masks(run: Run) -> list[tuple[str, np.ndarray]]:
    names = sorted(set(run.categories.tolist()))
    return [(c, run.categories == c) for c in names] + [("all", np.ones(len(run.concepts), bool))]


def category_scores(runs: list[Run]) -> Table:
    """Fig. 2: mean ± standard error per category, single filter vs all filters, per run."""
    rows = []
    for run in runs:
        ok = _valid(run)
        for category, chosen in _category_masks(run):
            chosen = chosen & ok
            if not chosen.any():
                continue
            single, single_se = mean_se(run.single[chosen])
            full, full_se = mean_se(run.all[chosen])
            ratio = full / single if single > 0 else float("nan")
            bounds = bootstrap_bounds(run, category, ("single", "all"))
            rows.append(
                [
                    run.network,
                    run.layer,
                    run.task,
                    category,
                    int(chosen.sum()),
                    single,
                    single_se,
                    full,
                    full_se,
                    ratio,
                    *bounds,
                ]
            )
    return Table(
        [
            "network",
            "layer",
            "task",
            "category",
            "n",
            "single_mean",
            "single_se",
            "all_mean",
            "all_se",
            "all_over_single",
            "single_lo",
            "single_hi",
            "all_lo",
            "all_hi",
        ],
        rows,
    )


def bootstrap_bounds(run: Run, category: str, series) -> list:
    """[lo, hi] of each series' category mean from summary.json (bootstrap over val images);
    NaN where the run has none."""
    row = (run.summary.get("mean_by_category") or {}).get(category, {})
    return [float(row.get(f"{name}_{end}", np.nan)) for name in series for end in ("lo", "hi")]


def subset_curves(runs: list[Run]) -> Table:
    """Fig. 3: mean ± se score per category against F (subset columns; F = K is all filters)."""
    rows = []
    for run in runs:
        sizes = run.subset_sizes
        if not sizes:
            continue
        series = [(size, run.subset_score(size), f"F{size}") for size in sizes]
        if run.num_filters and run.num_filters not in sizes:
            series.append((run.num_filters, run.all, "all"))
        for category, chosen in _category_masks(run):
            for size, scores, name in series:
                mean, se = mean_se(scores[chosen])
                rows.append(
                    [run.network, run.layer, run.task, category, size, int(chosen.sum()), mean, se]
                    + bootstrap_bounds(run, category, [name])
                )
    columns = ["network", "layer", "task", "category", "F", "n", "mean", "se", "lo", "hi"]
    return Table(columns, rows)


def object_sizes(run: Run) -> dict[str, float] | None:
    """Mean fraction of an image's mask pixels that a concept covers, over its train images.

    Read from the concept store named in summary.json ``stores`` (pairs/area, split, mask_size);
    None when the store is not reachable.
    """
    store = (run.summary.get("stores") or {}).get("concept_store")
    if not store or not Path(store).is_file():
        return None
    try:
        with h5py.File(store, "r") as h5:
            names = [
                n.decode() if isinstance(n, bytes) else str(n) for n in h5["concepts/name"][()]
            ]
            sh, sw = (int(v) for v in h5.attrs["mask_size"])
            train = h5["split"][()] == 0
            image, concept = h5["pairs/image"][()], h5["pairs/concept"][()]
            area = h5["pairs/area"][()].astype(np.float64)
    except (KeyError, OSError) as err:
        log.warning("concept store %s unreadable for object sizes: %s", store, err)
        return None
    keep = train[image]
    total = np.bincount(concept[keep], weights=area[keep] / (sh * sw), minlength=len(names))
    count = np.bincount(concept[keep], minlength=len(names))
    return {name: float(total[i] / count[i]) for i, name in enumerate(names) if count[i] > 0}


def failure_cases(runs: list[Run]) -> Table:
    """Concepts whose best single filter scores >= the all-filter probe, with n_train and size."""
    rows = []
    for run in runs:
        sizes = object_sizes(run) or {}
        ok = _valid(run)
        n_train = run.results.get("n_train", np.full(len(run.concepts), -1))
        for i in np.flatnonzero(ok & (run.single >= run.all)):
            name = str(run.concepts[i])
            rows.append(
                [
                    run.network,
                    run.layer,
                    run.task,
                    name,
                    str(run.categories[i]),
                    int(n_train[i]),
                    sizes.get(name, float("nan")),
                    float(run.single[i]),
                    float(run.all[i]),
                ]
            )
    return Table(
        [
            "network",
            "layer",
            "task",
            "concept",
            "category",
            "n_train",
            "object_size",
            "single",
            "all",
        ],
        rows,
    )


def failures_by_train_size(runs: list[Run], bins=TRAIN_BINS) -> Table:
    """Share of concepts with single >= all, per run and n_train bin [lo, hi)."""
    rows = []
    for run in runs:
        if "n_train" not in run.results:
            continue
        ok = _valid(run)
        fail = ok & (run.single >= run.all)
        n_train = run.results["n_train"]
        for lo, hi in zip(bins[:-1], bins[1:]):
            inside = ok & (n_train >= lo) & (n_train < hi)
            total, failed = int(inside.sum()), int((fail & inside).sum())
            rows.append(
                [
                    run.network,
                    run.layer,
                    run.task,
                    f"[{lo:g},{hi:g})",
                    total,
                    failed,
                    100.0 * failed / total if total else float("nan"),
                ]
            )
    return Table(
        ["network", "layer", "task", "n_train_bin", "concepts", "failures", "percent"], rows
    )
