"""Analyses of net2vec runs (the paper's §4-5): tables, figures, embeddings and the HTML report.

Every analysis is a plain function of loaded runs (``load_runs``) returning a :class:`Table`
(or arrays), so a notebook can call it directly; ``evaluate(cfg)`` is what `evaluate.py` runs.
"""

from net2vec.analysis.concept_images import fig4_image, fig8_image
from net2vec.analysis.dissection_report import (
    DissectionRun,
    dissection_images,
    is_dissection_run,
    load_dissection,
)
from net2vec.analysis.embeddings import (
    ExpressionError,
    arithmetic_table,
    kmeans_labels,
    nearest_concepts,
    neighbour_table,
    parse_expression,
    tsne_map,
    unit_rows,
    vector_arithmetic,
)
from net2vec.analysis.evaluation import NoRunsError, analyse, evaluate
from net2vec.analysis.filters import (
    correlation_summary,
    filter_counts,
    filter_usage,
    per_image_stats,
    share_curves,
    shared_filters,
    usage_summary,
    weight_correlations,
    weight_shares,
)
from net2vec.analysis.report import Report
from net2vec.analysis.runs import Embeddings, Run, RunError, find_run_dirs, load_run, load_runs
from net2vec.analysis.scores import (
    category_scores,
    failure_cases,
    failures_by_train_size,
    object_sizes,
    percent_all_ge_single,
    subset_curves,
    table1,
)
from net2vec.analysis.spaces import distance_tables, space_distances
from net2vec.analysis.table import Table, mean_se

__all__ = [
    "DissectionRun",
    "dissection_images",
    "fig4_image",
    "fig8_image",
    "is_dissection_run",
    "load_dissection",
    "Embeddings",
    "ExpressionError",
    "NoRunsError",
    "Report",
    "Run",
    "RunError",
    "Table",
    "analyse",
    "arithmetic_table",
    "category_scores",
    "correlation_summary",
    "distance_tables",
    "evaluate",
    "failure_cases",
    "failures_by_train_size",
    "filter_counts",
    "filter_usage",
    "find_run_dirs",
    "kmeans_labels",
    "load_run",
    "load_runs",
    "mean_se",
    "nearest_concepts",
    "neighbour_table",
    "object_sizes",
    "parse_expression",
    "per_image_stats",
    "percent_all_ge_single",
    "share_curves",
    "shared_filters",
    "space_distances",
    "subset_curves",
    "table1",
    "tsne_map",
    "unit_rows",
    "usage_summary",
    "vector_arithmetic",
    "weight_correlations",
    "weight_shares",
]
