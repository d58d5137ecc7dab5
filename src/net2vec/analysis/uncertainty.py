"""Uncertainty over runs: significance counts, effect sizes, scores against their nulls, seeds.

Reads what ``net2vec.statistics.scores`` wrote (docs/statistics.md): the ``<score>_lo``/``_hi``,
``diff_val``/``_lo``/``_hi``, ``p_``/``q_all_gt_single``, ``p_``/``q_single_gt_all``,
``null_<metric>_val``, ``p_null``/``q_null`` columns of results.csv and the ``statistics`` block of
summary.json. A concept is "significantly better with all filters" when q_all_gt_single ≤ fdr and
its all − single interval lies above 0; concepts with fewer than ``min_images`` validation images
have empty p and q cells and are never counted. Runs that differ only in ``seed`` are summarised as
mean ± sd over seeds per concept and per category, beside the bootstrap intervals.
"""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np

from net2vec.analysis.runs import Run
from net2vec.analysis.table import Table
from net2vec.statistics.scores import all_ge_single
from net2vec.statistics.significance import discovered

FDR = 0.05


def fdr_of(run: Run) -> float:
    """The run's stats.fdr (0.05 for runs that do not record it)."""
    return float((run.summary.get("statistics") or {}).get("fdr", FDR))


def significant(run: Run) -> tuple[np.ndarray, np.ndarray] | None:
    """(all > single, single > all) per concept, FDR-controlled and with the difference's interval
    on one side of 0; None for runs without q-values."""
    r, fdr = run.results, fdr_of(run)
    if "q_all_gt_single" not in r or "diff_val_lo" not in r:
        return None
    better = discovered(r["q_all_gt_single"], fdr) & (r["diff_val_lo"] > 0)
    worse = discovered(r["q_single_gt_all"], fdr) & (r["diff_val_hi"] < 0)
    return better, worse


def tested(run: Run) -> np.ndarray:
    """Concepts that were tested (enough validation images: a p-value in the cell)."""
    p = run.results.get("p_all_gt_single", run.results.get("p_null"))
    return np.isfinite(p) if p is not None else np.zeros(len(run.concepts), bool)


def above_null(run: Run, prefix: str = "") -> np.ndarray | None:
    """Concepts whose score beats the shuffled-mask null at the run's FDR (q_null ≤ fdr)."""
    q = run.results.get(f"{prefix}q_null")
    return None if q is None else discovered(q, fdr_of(run))


def _count(values: np.ndarray | None) -> int | None:
    return None if values is None else int(values.sum())


def significance_table(runs: list[Run]) -> Table:
    """Per run: share all ≥ single with its BCa interval; FDR-controlled significant counts both
    ways and against the nulls; the median and mean all − single over tested concepts."""
    rows = []
    for run in runs:
        sig = significant(run)
        if sig is None:
            continue
        stats, chosen = run.summary.get("statistics", {}), tested(run)
        valid = np.isfinite(run.all) & np.isfinite(run.single)
        share = float(100 * np.mean(all_ge_single(run.all[valid], run.single[valid])))
        diff = run.results["diff_val"][chosen & np.isfinite(run.results["diff_val"])]
        rows.append(
            [run.network, run.layer, run.task, len(run.concepts), int(chosen.sum())]
            + [int((~chosen).sum()), fdr_of(run), share]
            + [stats.get("percent_all_ge_single_lo"), stats.get("percent_all_ge_single_hi")]
            + [int(sig[0].sum()), int(sig[1].sum())]
            + [_count(above_null(run)), _count(above_null(run, "single_"))]
            + [float(np.median(diff)) if len(diff) else None]
            + [float(np.mean(diff)) if len(diff) else None]
        )
    columns = ["network", "layer", "task", "concepts", "tested", "below_min_images", "fdr"]
    columns += ["percent_all_ge_single", "percent_lo", "percent_hi"]
    columns += ["all_gt_single_significant", "single_gt_all_significant"]
    columns += ["above_null_significant", "single_above_null_significant"]
    columns += ["diff_median", "diff_mean"]
    return Table(columns, rows)


def difference_table(runs: list[Run]) -> Table:
    """Per run and tested concept: all − single with its interval and which way it is significant
    (the distribution of effect sizes behind the counts)."""
    rows = []
    for run in runs:
        sig = significant(run)
        if sig is None:
            continue
        r = run.results
        for i in np.flatnonzero(tested(run)):
            way = "all" if sig[0][i] else "single" if sig[1][i] else ""
            rows.append(
                [run.network, run.layer, run.task, str(run.concepts[i]), str(run.categories[i])]
                + [float(r["diff_val"][i]), float(r["diff_val_lo"][i]), float(r["diff_val_hi"][i])]
                + [float(r["q_all_gt_single"][i]), float(r["q_single_gt_all"][i]), way]
            )
    columns = ["network", "layer", "task", "concept", "category", "diff_val", "diff_val_lo"]
    columns += ["diff_val_hi", "q_all_gt_single", "q_single_gt_all", "significant"]
    return Table(columns, rows)


def null_table(runs: list[Run]) -> Table:
    """Per run and category: mean learned / single-filter score, the mean of its null, and the
    concepts above it at the run's FDR."""
    rows = []
    for run in runs:
        metric = run.metric
        if f"null_{metric}_val" not in run.results:
            continue
        nan = np.full(len(run.concepts), np.nan)
        null = run.results[f"null_{metric}_val"]
        single_null = run.results.get(f"single_null_{metric}_val", nan)
        above = above_null(run)
        above = np.zeros(len(null), bool) if above is None else above
        for category in sorted(set(run.categories.tolist())) + ["all"]:
            chosen = np.ones(len(null), bool) if category == "all" else run.categories == category
            rows.append(
                [run.network, run.layer, run.task, category, int(chosen.sum())]
                + [float(run.all[chosen].mean()), float(null[chosen].mean())]
                + [float(run.single[chosen].mean()), float(single_null[chosen].mean())]
                + [int((above & chosen).sum())]
            )
    columns = ["network", "layer", "task", "category", "n", "all_mean", "null_mean"]
    columns += ["single_mean", "single_null_mean", "above_null_significant"]
    return Table(columns, rows)


def seed_groups(runs: list[Run]) -> dict[tuple, list[Run]]:
    """Runs whose configuration differs only in ``seed``, where there are two or more seeds;
    keyed by (network, layer, task)."""
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for run in runs:
        config = run.summary.get("config") if isinstance(run.summary.get("config"), dict) else {}
        rest = json.dumps({k: v for k, v in config.items() if k != "seed"}, sort_keys=True)
        groups[(run.network, run.layer, run.task, rest)].append(run)
    return {
        key[:3]: sorted(group, key=lambda r: r.seed)
        for key, group in groups.items()
        if len({r.seed for r in group}) > 1
    }


def _stack(group: list[Run], column: str) -> tuple[list[str], np.ndarray]:
    """Concepts common to every run of the group and (seeds, concepts) values of ``column``."""
    common = [c for c in group[0].concepts if all(c in set(r.concepts) for r in group[1:])]
    values = []
    for run in group:
        position = {c: i for i, c in enumerate(run.concepts)}
        data = run.results.get(column)
        idx = [position[c] for c in common]
        values.append(np.full(len(idx), np.nan) if data is None else data[idx])
    return common, np.array(values, dtype=np.float64)


def seed_concepts(runs: list[Run]) -> Table:
    """Per concept: mean ± sd over seeds of single and all, and the mean bootstrap interval."""
    rows = []
    for (network, layer, task), group in seed_groups(runs).items():
        metric = group[0].metric
        parts = {}
        for name in (f"single_{metric}_val", f"{metric}_val"):
            for suffix in ("", "_lo", "_hi"):
                common, parts[name + suffix] = _stack(group, name + suffix)
        categories = dict(zip(group[0].concepts, group[0].categories))
        for i, concept in enumerate(common):
            row = [network, layer, task, concept, categories[concept], len(group)]
            for name in (f"single_{metric}_val", f"{metric}_val"):
                seeds = parts[name][:, i]
                row += [float(seeds.mean()), float(seeds.std(ddof=1))]
                row += [
                    float(np.mean(parts[name + "_lo"][:, i])),
                    float(np.mean(parts[name + "_hi"][:, i])),
                ]
            rows.append(row)
    columns = ["network", "layer", "task", "concept", "category", "seeds"]
    for name in ("single", "all"):
        columns += [f"{name}_mean", f"{name}_sd", f"{name}_boot_lo", f"{name}_boot_hi"]
    return Table(columns, rows)


def seed_categories(runs: list[Run]) -> Table:
    """Per category: mean ± sd over seeds of the category mean, and the mean bootstrap interval."""
    rows = []
    for (network, layer, task), group in seed_groups(runs).items():
        by_category = [run.summary.get("mean_by_category", {}) for run in group]
        for category in by_category[0]:
            if not all(category in table for table in by_category):
                continue
            row = [network, layer, task, category, len(group), by_category[0][category].get("n")]
            for name in ("single", "all"):
                means = np.array([t[category][name] for t in by_category], np.float64)
                lo = [t[category].get(f"{name}_lo", np.nan) for t in by_category]
                hi = [t[category].get(f"{name}_hi", np.nan) for t in by_category]
                row += [float(means.mean()), float(means.std(ddof=1))]
                row += [float(np.mean(lo)), float(np.mean(hi))]
            rows.append(row)
    columns = ["network", "layer", "task", "category", "seeds", "n"]
    for name in ("single", "all"):
        columns += [f"{name}_mean", f"{name}_sd", f"{name}_boot_lo", f"{name}_boot_hi"]
    return Table(columns, rows)


def summary_lines(runs: list[Run]) -> list[str]:
    """One terminal line per run with its FDR-controlled significance counts."""
    lines = []
    for record in significance_table(runs).records():
        lines.append(
            f"{record['network']}/{record['layer']}/{record['task']}: all >= single for "
            f"{record['percent_all_ge_single']:.1f} % of {record['concepts']} concepts; "
            f"of {record['tested']} tested ({record['below_min_images']} too few images), "
            f"significantly all > single {record['all_gt_single_significant']}, "
            f"single > all {record['single_gt_all_significant']} (q <= {record['fdr']:g})"
        )
    return lines
