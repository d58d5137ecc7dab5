"""The three files a run writes (docs/architecture.md): results.csv, embeddings.h5, summary.json.

A :class:`ProbeOutcome` gathers what the probes of one run produced; ``write_outputs`` turns it
into the files, and ``read_results`` / ``read_embeddings`` read them back for ``evaluate.py``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np

from net2vec.common.cache import atomic_path
from net2vec.common.versions import package_versions
from net2vec.probes.outcome import ProbeOutcome
from net2vec.statistics.scores import all_ge_single, category_masks


def results_rows(outcome: ProbeOutcome) -> tuple[list[str], list[list]]:
    """Header and rows of results.csv, one row per concept."""
    metric = outcome.metric
    header = ["concept", "category", "label_number", "n_train", "n_val", "single_filter"]
    columns = [
        outcome.names,
        outcome.categories,
        outcome.label_numbers,
        outcome.n_train,
        outcome.n_val,
        outcome.single_filter,
    ]
    scores = dict(outcome.single_scores)
    scores[f"{metric}_val"] = outcome.score_val
    for size in sorted(outcome.subsets):
        scores[f"{metric}_val_F{size}"] = outcome.subsets[size]["score_val"]
    for name, values in scores.items():  # each score, then its interval when there is one
        header.append(name)
        columns.append(values)
        if name in outcome.intervals:
            header += [f"{name}_lo", f"{name}_hi"]
            columns += list(outcome.intervals[name])
        if name == f"{metric}_val":  # a variant's columns follow the all-filter score
            header += list(outcome.probe_columns)
            columns += list(outcome.probe_columns.values())
    header += list(outcome.columns)
    columns += list(outcome.columns.values())
    rows = [[_plain(column[i]) for column in columns] for i in range(len(outcome.names))]
    return header, rows


def _plain(value):
    if isinstance(value, (np.floating, float)):
        return f"{float(value):.6g}" if np.isfinite(value) else ""  # empty: not computed
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, bytes):
        return value.decode()
    return value


def write_results_csv(outcome: ProbeOutcome, path: Path) -> None:
    header, rows = results_rows(outcome)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def write_embeddings(outcome: ProbeOutcome, path: Path, attrs: dict) -> None:
    """embeddings.h5: the all-filter concept vectors, every subset's, and the per-filter scores."""
    text = h5py.string_dtype()
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5["weights"] = outcome.weights.astype(np.float32)
        h5["bias"] = outcome.bias.astype(np.float32)
        h5.create_dataset("concepts", data=[str(n) for n in outcome.names], dtype=text)
        h5.create_dataset("categories", data=[str(c) for c in outcome.categories], dtype=text)
        h5["label_numbers"] = outcome.label_numbers.astype(np.int64)
        for size, parts in outcome.subsets.items():
            group = h5.create_group(f"subsets/F{size}")
            for key in ("weights", "bias", "filters", "score_val"):
                group[key] = parts[key]
        for split, scores in outcome.filter_scores.items():
            h5[f"filter_scores/{split}"] = scores.astype(np.float32)
        for key, values in outcome.per_image.items():
            h5[f"per_image/{key}"] = values
        for key, value in attrs.items():
            h5.attrs[key] = "" if value is None else value


def category_means(outcome: ProbeOutcome) -> dict[str, dict[str, float]]:
    """Mean validation score per concept category: single filter, all filters, each F."""
    series = {"single": outcome.single_val, "all": outcome.score_val}
    series.update(
        {f"F{size}": parts["score_val"] for size, parts in sorted(outcome.subsets.items())}
    )
    table: dict[str, dict[str, float]] = {}
    for category, chosen in category_masks(outcome.categories):
        table[category] = {name: float(np.mean(values[chosen])) for name, values in series.items()}
        table[category]["n"] = int(chosen.sum())
        for name, (lo, hi) in outcome.category_intervals.get(category, {}).items():
            table[category].update({f"{name}_lo": lo, f"{name}_hi": hi})
    return table


def build_summary(outcome: ProbeOutcome, config: dict, timings: dict, stores: dict) -> dict:
    valid = np.isfinite(outcome.score_val) & np.isfinite(outcome.single_val)
    better = all_ge_single(outcome.score_val, outcome.single_val)[valid]
    return {
        "config": config,
        "task": outcome.task,
        "counts": {
            "concepts": int(len(outcome.names)),
            "filters": int(outcome.weights.shape[1]),
            "train_images_max": int(outcome.n_train.max(initial=0)),
            "val_images_max": int(outcome.n_val.max(initial=0)),
        },
        "mean_by_category": category_means(outcome),
        "percent_all_ge_single": float(100.0 * better.mean()) if len(better) else float("nan"),
        "variant": outcome.variant_name,
        "probe": dict(outcome.variant),
        "statistics": outcome.statistics,
        "timings_s": {k: round(float(v), 3) for k, v in timings.items()},
        "versions": package_versions(),
        "stores": stores,
    }


def write_outputs(
    outcome: ProbeOutcome, run_dir: Path, config: dict, timings: dict, stores: dict, attrs: dict
) -> dict:
    """Write results.csv, embeddings.h5 and summary.json into ``run_dir``; return the summary."""
    run_dir = Path(run_dir)
    write_results_csv(outcome, run_dir / "results.csv")
    write_embeddings(outcome, run_dir / "embeddings.h5", attrs)
    summary = build_summary(outcome, config, timings, stores)
    with atomic_path(run_dir / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return summary


def format_summary_table(summary: dict) -> str:
    """A short text table: mean score by category, single filter vs all filters."""
    metric = "set IoU" if summary["task"] == "seg" else "balanced accuracy"
    lines = [
        f"mean val {metric} by category (probe: {summary.get('variant', 'linear')})",
        f"{'category':<12}{'n':>6}{'single':>10}{'all':>10}",
    ]
    for category, row in summary["mean_by_category"].items():
        lines.append(f"{category:<12}{row['n']:>6}{row['single']:>10.3f}{row['all']:>10.3f}")
    lines.append(
        f"concepts with all filters >= single filter: {summary['percent_all_ge_single']:.1f} %"
    )
    if summary.get("probe", {}).get("head") == "mlp":
        lines.append("embeddings.h5 weights and top-F: linear head only (zeros for probe.head=mlp)")
    return "\n".join(lines + significance_lines(summary))


def significance_lines(summary: dict) -> list[str]:
    """The share's interval, the FDR-controlled significant counts and the untested concepts."""
    stats, n = summary.get("statistics") or {}, summary["counts"]["concepts"]
    if not stats:
        return []
    fdr, level = stats.get("fdr", 0.05), 100 * stats.get("level", 0.95)
    lines = [
        f"tested: {stats['concepts_tested']} of {n} concepts "
        f"({stats['concepts_below_min_images']} left out: < {stats['min_images']} val images); "
        f"significant = Benjamini-Hochberg q <= {fdr:g}"
    ]
    if "percent_all_ge_single_lo" in stats:
        lines.append(
            f"BCa {level:g} % interval of that share: "
            f"[{stats['percent_all_ge_single_lo']:.1f}, {stats['percent_all_ge_single_hi']:.1f}] %"
        )
    if "concepts_all_gt_single_significant" in stats:
        lines.append(
            f"all filters significantly better (q <= {fdr:g}, all - single interval above 0): "
            f"{stats['concepts_all_gt_single_significant']} of {stats['concepts_tested']} tested; "
            f"single filter better: {stats['concepts_single_gt_all_significant']}; "
            f"median all - single {stats['diff_val_median']:.4g}"
        )
    if "concepts_above_null_significant" in stats:
        draws, smallest = stats["null_draws"], stats["null_smallest_p"]
        note = f" (p >= {smallest:.3g} > fdr: raise stats.null_draws)" if smallest > fdr else ""
        lines.append(
            f"above the shuffled-mask null ({draws} draws, q <= {fdr:g}): learned "
            f"{stats['concepts_above_null_significant']} of {stats['concepts_tested']} tested, "
            f"single filter {stats.get('concepts_single_above_null_significant', 0)}{note}"
        )
    return lines
