"""Uncertainty over runs: significance counts, scores against their nulls, seed-to-seed spread.

Reads what ``net2vec.statistics.scores`` wrote: the ``<score>_lo``/``_hi``, ``p_all_gt_single``,
``null_<metric>_val`` and ``p_null`` columns of results.csv and the ``statistics`` block of
summary.json. Runs that differ only in ``seed`` (``python train.py -m seed=0,1,2``) are summarised
as mean ± sd over seeds per concept and per category, beside the bootstrap intervals.
"""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np

from net2vec.analysis.runs import Run
from net2vec.analysis.table import Table

LEVEL = 0.95


def significant(run: Run) -> tuple[np.ndarray, np.ndarray] | None:
    """(all > single, single > all) per concept at the run's bootstrap level; None without p."""
    p = run.results.get("p_all_gt_single")
    if p is None:
        return None
    tail = (1.0 - float(run.summary.get("statistics", {}).get("level", LEVEL))) / 2
    return p >= 1.0 - tail, p <= tail


def significance_table(runs: list[Run]) -> Table:
    """Per run: raw share all ≥ single with its interval, and the significant counts both ways."""
    rows = []
    for run in runs:
        sig = significant(run)
        if sig is None:
            continue
        stats = run.summary.get("statistics", {})
        metric = run.metric
        above = {
            prefix: int(
                np.sum(
                    run.results[f"{prefix}{metric}_val"] > run.results[f"{prefix}null_{metric}_val"]
                )
            )
            if f"{prefix}null_{metric}_val" in run.results
            else None
            for prefix in ("", "single_")
        }
        rows.append(
            [
                run.network,
                run.layer,
                run.task,
                len(run.concepts),
                float(100 * np.mean(run.all >= run.single)),
                stats.get("percent_all_ge_single_lo"),
                stats.get("percent_all_ge_single_hi"),
                int(sig[0].sum()),
                int(sig[1].sum()),
                stats.get("concepts_above_every_null_draw"),
                stats.get("concepts_single_above_every_null_draw"),
                above[""],
                above["single_"],
            ]
        )
    columns = ["network", "layer", "task", "concepts", "percent_all_ge_single", "percent_lo"]
    columns += ["percent_hi", "all_gt_single_significant", "single_gt_all_significant"]
    columns += ["above_every_null_draw", "single_above_every_null_draw"]
    columns += ["above_null_mean", "single_above_null_mean"]
    return Table(columns, rows)


def smallest_p(run: Run) -> float:
    """1 / (draws + 1), the p_null of a score above every null draw (+ rounding slack)."""
    draws = int((run.summary.get("statistics") or {}).get("null_draws", 5))
    return 1.0 / (draws + 1) + 1e-6


def null_table(runs: list[Run]) -> Table:
    """Per run and category: mean learned / single-filter score and the mean of its null."""
    rows = []
    for run in runs:
        metric = run.metric
        if f"null_{metric}_val" not in run.results:
            continue
        null, single_null = (
            run.results[f"null_{metric}_val"],
            run.results.get(f"single_null_{metric}_val", np.full(len(run.concepts), np.nan)),
        )
        p = run.results["p_null"]
        for category in sorted(set(run.categories.tolist())) + ["all"]:
            chosen = np.ones(len(p), bool) if category == "all" else run.categories == category
            rows.append(
                [
                    run.network,
                    run.layer,
                    run.task,
                    category,
                    int(chosen.sum()),
                    float(run.all[chosen].mean()),
                    float(null[chosen].mean()),
                    float(run.single[chosen].mean()),
                    float(single_null[chosen].mean()),
                    int((p[chosen] <= smallest_p(run)).sum()),
                ]
            )
    columns = ["network", "layer", "task", "category", "n", "all_mean", "null_mean"]
    columns += ["single_mean", "single_null_mean", "above_every_null_draw"]
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
    """One terminal line per run with significance columns."""
    lines = []
    for record in significance_table(runs).records():
        lines.append(
            f"{record['network']}/{record['layer']}/{record['task']}: all >= single for "
            f"{record['percent_all_ge_single']:.1f} % of {record['concepts']} concepts; "
            f"significantly all > single {record['all_gt_single_significant']}, "
            f"single > all {record['single_gt_all_significant']}"
        )
    return lines
