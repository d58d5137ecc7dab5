"""The report's sections, each a builder ``(report, inputs) -> None`` that fills one section.

``net2vec.analysis.evaluation.SECTIONS`` lists them in the paper's order; a builder that has
nothing to show adds nothing and its section is left out of index.html and its contents.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from net2vec.analysis import embedding_figures as efig
from net2vec.analysis import embeddings as emb
from net2vec.analysis import figures as fig
from net2vec.analysis import filters, scores, spaces, uncertainty, variants
from net2vec.analysis.compexp_report import add_compexp_sections, attach_formulas, compexp_runs
from net2vec.analysis.concept_images import add_fig4_images, add_fig8_section
from net2vec.analysis.dissection_report import DissectionRun, add_dissection_sections
from net2vec.analysis.experiment_pages import add_experiment_pages
from net2vec.analysis.report import Report, slug
from net2vec.analysis.runs import Run
from net2vec.analysis.table import Table
from net2vec.analysis.tcav_report import add_tcav_sections, tcav_runs


@dataclass
class Inputs:
    """What the section builders read: the loaded probe runs, NetDissect runs, experiments run
    directories, every run directory given (a builder picks its own kind by its files) and
    evaluate's settings."""

    runs: list[Run]
    dissected: list[DissectionRun] = field(default_factory=list)
    experiments: list[Path] = field(default_factory=list)
    directories: list[Path] = field(default_factory=list)
    arithmetic: list[str] = field(default_factory=list)
    neighbours: int = 5
    kmeans: int = 8
    tsne: bool = True
    seed: int = 0
    unit_images: int = 8
    fig8_concepts: int = 4


def table1_section(report: Report, inputs: Inputs) -> None:
    """Table 1, Fig. 2 and the failure cases (concepts where single >= all)."""
    runs = inputs.runs
    if not runs:
        return
    table1 = scores.table1(runs)
    report.table(
        "table1",
        table1,
        "% of concepts whose all-filter val score >= best single filter; _percent_lo/_hi: its "
        "BCa bootstrap interval (descriptive: docs/statistics.md); _percent_significant: % of "
        "tested concepts with q_all_gt_single ≤ fdr and the all − single interval above 0",
    )
    report.figure("table1", fig.table1_figure(table1))
    by_category = scores.category_scores(runs)
    report.table(
        "fig2_category_scores",
        by_category,
        "mean ± standard error per category; _lo/_hi: bootstrap interval over val images",
    )
    for task in dict.fromkeys(by_category["task"]):
        report.figure(f"fig2_{task}", fig.category_figure(by_category, task))
    report.subsection("Failure cases: single filter >= all filters")
    report.table(
        "failure_cases",
        scores.failure_cases(runs),
        "object_size: mean mask fraction on train "
        "images, from the run's concept store when reachable",
    )
    report.table("failures_by_n_train", scores.failures_by_train_size(runs))
    report.figure("failures_vs_n_train", fig.failure_figure(runs))


def fig3_section(report: Report, inputs: Inputs) -> None:
    """Fig. 3: mean score per category against the number of filters F."""
    if not inputs.runs:
        return
    curves = scores.subset_curves(inputs.runs)
    if len(curves):
        report.figure("fig3_subsets", fig.subset_figure(curves))
        report.table(
            "fig3_subset_curves", curves, "mean ± se per category and F (F = K: all filters)"
        )
    else:
        report.note("no run has top-F subset columns (probe.subsets empty)")


def variants_section(report: Report, inputs: Inputs) -> None:
    """Probe variants compared per category, concept size and nesting."""
    if not inputs.runs:
        return
    report.table(
        "variants_by_category",
        variants.variant_categories(inputs.runs),
        "per run (probe variant): % of concepts with learned val set IoU >= best single filter, means",
    )
    report.table(
        "variants_by_size",
        variants.variant_sizes(inputs.runs),
        "the same against concept size (mean mask fraction), parts apart from the other categories",
    )


def statistics_section(report: Report, inputs: Inputs) -> None:
    """Significance counts, shuffled-mask nulls and the seed-to-seed spread."""
    runs = inputs.runs
    if not runs:
        return
    significance = uncertainty.significance_table(runs)
    if not len(significance):
        report.note("no run has bootstrap columns (written by stats=default)")
        return
    report.table(
        "significance",
        significance,
        "FDR-controlled (Benjamini–Hochberg, q ≤ stats.fdr) counts: concepts where all filters "
        "beat the single filter (q ≤ fdr and the all − single interval above 0) and the reverse; "
        "concepts above their shuffled-mask null; concepts below stats.min_images are not tested",
    )
    differences = uncertainty.difference_table(runs)
    if len(differences):
        report.table(
            "paired_differences",
            differences,
            "all − single per tested concept with its BCa interval; significant: q ≤ fdr and the "
            "interval on one side of 0",
        )
        report.figure(
            "paired_differences",
            fig.difference_figure(runs),
            "every tested concept's all − single, sorted, with its interval",
        )
    nulls = uncertainty.null_table(runs)
    if len(nulls):
        report.table("null_baselines", nulls, "mean score and mean shuffled-mask null per category")
        report.figure("null_baselines", fig.null_figure(runs))
    per_concept, per_category = uncertainty.seed_concepts(runs), uncertainty.seed_categories(runs)
    if len(per_concept):
        caption = "mean ± sd over seeds, beside the mean bootstrap interval"
        report.table("seeds_by_category", per_category, caption)
        report.table("seeds_by_concept", per_concept, caption)


def fig4_5_section(report: Report, inputs: Inputs) -> None:
    """Figs. 4-5: how often each filter is some concept's best single filter; shared filters."""
    if not inputs.runs:
        return
    usage = filters.filter_usage(inputs.runs)
    report.figure("fig5_filter_usage", fig.usage_figure(usage))
    report.table("fig5_usage_summary", filters.usage_summary(inputs.runs))
    report.table("fig5_filter_usage", usage)
    for run in inputs.runs:
        shared = filters.shared_filters(run)
        if len(shared):
            report.figure(f"fig4_shared_filter_{slug(run.label)}", fig.shared_figure(shared))
            report.table(f"fig4_shared_filters_{slug(run.label)}", shared)
            add_fig4_images(report, run, shared)


def fig7_section(report: Report, inputs: Inputs) -> None:
    """Fig. 7: per-image IoU distribution of seg runs."""
    if not inputs.runs:
        return
    per_image = filters.per_image_stats(inputs.runs)
    if len(per_image):
        report.figure("fig7_per_image", efig.per_image_figure(inputs.runs))
        report.table("fig7_per_image_stats", per_image, "μ, σ over the non-zero part")
    else:
        report.note("no run stores per_image IoU (segmentation runs only)")


def fig8_section(report: Report, inputs: Inputs) -> None:
    if inputs.runs:
        add_fig8_section(report, inputs.runs, inputs.fig8_concepts)


def fig9_section(report: Report, inputs: Inputs) -> None:
    """§5.2, Fig. 9: learned weights against single-filter scores."""
    if not inputs.runs:
        return
    correlations = filters.weight_correlations(inputs.runs)
    if len(correlations):
        summary = filters.correlation_summary(correlations)
        shares = filters.share_curves(inputs.runs)
        report.figure("fig9_correlations", efig.correlation_figure(correlations, summary, shares))
        report.table("fig9_correlation_summary", summary)
        report.table(
            "fig9_correlations",
            correlations,
            "per concept Pearson r, p of max(w,0) vs filter_scores/val",
        )
        report.table("fig9_share_curves", shares, "mean sorted |w_k| / ||w||_1")
    else:
        report.note("no run stores filter_scores/val")


def _map_sections(report: Report, runs: list[Run], clusters: int, tsne: bool, seed: int) -> None:
    rows = []
    for run in runs:
        weights = run.embeddings.weights
        labels = emb.kmeans_labels(weights, clusters, seed)
        if tsne:
            xy = emb.tsne_map(weights, seed)
        else:  # first two principal components of the unit vectors
            unit = emb.unit_rows(weights)
            centred = unit - unit.mean(axis=0)
            xy = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T
        rows += [
            [run.network, run.layer, run.task, str(c), str(g), int(k), float(x), float(y)]
            for c, g, k, (x, y) in zip(run.concepts, run.categories, labels, xy)
        ]
        report.figure(
            f"embedding_map_{slug(run.label)}",
            efig.embedding_map_figure(run.concepts, run.categories, xy, labels, run.label),
        )
    report.table(
        "embedding_clusters",
        Table(["network", "layer", "task", "concept", "category", "cluster", "x", "y"], rows),
        "k-means cluster and map position",
    )


def embeddings_section(report: Report, inputs: Inputs) -> None:
    """§5.3: Tables 2-3 (neighbours, arithmetic), embedding maps, Fig. 10 (distances)."""
    runs, k = inputs.runs, inputs.neighbours
    if not runs:
        return
    linear = [variants.variant_of(r).startswith("linear") for r in runs]
    nonlinear = [f"{r.label} ({variants.variant_of(r)})" for r, ok in zip(runs, linear) if not ok]
    runs = [
        r for r, ok in zip(runs, linear) if ok and r.embeddings is not None and len(r.concepts) > 1
    ]
    if nonlinear:
        report.note(f"left out (concept vectors are defined for the linear head only): {nonlinear}")
    if not runs:
        report.note("no run has embeddings.h5 of a linear probe")
        return
    report.table(
        "table2_neighbours", emb.neighbour_table(runs, k), "nearest concepts by cosine of w/||w||"
    )
    if inputs.arithmetic:
        table3, notes = emb.arithmetic_table(runs, list(inputs.arithmetic), k)
        report.table("table3_arithmetic", table3, "operands excluded")
        for note in notes:
            report.note(note)
    _map_sections(report, runs, inputs.kmeans, inputs.tsne, inputs.seed)
    groups = {
        task: [r for r in runs if r.task == task] for task in dict.fromkeys(r.task for r in runs)
    }
    if len(groups) > 1:
        groups["all"] = runs
    for name, group in groups.items():
        pairs, by_category = spaces.distance_tables(group)
        if len(group) < 2 or not len(pairs):
            continue
        report.table(f"fig10_D_{name}", pairs, "D_ij = ||d(W_i) - d(W_j)||^2 over common concepts")
        report.table(
            f"fig10_D_by_category_{name}", by_category, "mean per-concept D_ijc by category"
        )
        report.figure(
            f"fig10_{name}", efig.distance_figure(pairs, by_category, f"embedding spaces ({name})")
        )


def netdissect_section(report: Report, inputs: Inputs) -> None:
    """Network Dissection: detector counts and unit strips of every task=netdissect run (with each
    unit's formula beside its label when a task=compexp run of the same layer is given)."""
    attach_formulas(inputs.dissected, compexp_runs(inputs.directories))
    add_dissection_sections(report, inputs.dissected, inputs.unit_images)


def compexp_section(report: Report, inputs: Inputs) -> None:
    """Compositional explanations: IoU by formula length, the best-gain units with their masks."""
    add_compexp_sections(report, compexp_runs(inputs.directories), inputs.unit_images)


def experiments_section(report: Report, inputs: Inputs) -> None:
    """The tables and figures of experiments.py runs."""
    add_experiment_pages(report, inputs.experiments)


def tcav_section(report: Report, inputs: Inputs) -> None:
    """TCAV and concept ablation: does the network's decision depend on a concept vector?"""
    add_tcav_sections(report, tcav_runs(inputs.directories))
