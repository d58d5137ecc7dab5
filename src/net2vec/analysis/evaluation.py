"""`evaluate(cfg)`: load runs, compute every analysis of the paper's §4-5, write the report.

``analyse(runs, out_dir, ...)`` does the work without Hydra (handy in a notebook);
``evaluate(cfg)`` reads conf/evaluate.yaml's keys, finds the output directory and logs to W&B
when ``logger=wandb``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from net2vec.analysis import embedding_figures as efig
from net2vec.analysis import embeddings as emb
from net2vec.analysis import figures as fig
from net2vec.analysis import filters, scores, spaces, uncertainty, variants
from net2vec.analysis.concept_images import add_fig4_images, add_fig8_section
from net2vec.analysis.dissection_report import (
    add_dissection_sections,
    is_dissection_run,
    load_dissection,
)
from net2vec.analysis.experiment_pages import add_experiment_pages, is_experiments_run
from net2vec.analysis.report import Report, slug
from net2vec.analysis.runs import Run, load_runs
from net2vec.analysis.table import Table
from net2vec.analysis.tcav_report import add_tcav_sections, is_tcav_run, load_tcav
from net2vec.analysis.wandb_report import log_to_wandb
from net2vec.common.wandb_media import is_wandb
from net2vec.run.identity import flat_config

log = logging.getLogger(__name__)


class NoRunsError(ValueError):
    """evaluate was given no run directories."""


def _score_sections(report: Report, runs: list[Run]) -> None:
    report.section("Table 1 and Fig. 2: single filter vs all filters")
    table1 = scores.table1(runs)
    report.table(
        "table1",
        table1,
        "% of concepts whose all-filter val score >= best single filter; _percent_lo/_hi: its "
        "bootstrap interval; _percent_significant: % with all > single significantly",
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
    curves = scores.subset_curves(runs)
    report.section("Fig. 3: score against the number of filters F")
    if len(curves):
        report.table(
            "fig3_subset_curves", curves, "mean ± se per category and F (F = K: all filters)"
        )
        report.figure("fig3_subsets", fig.subset_figure(curves))
    else:
        report.note("no run has top-F subset columns (probe.subsets empty)")
    _uncertainty_sections(report, runs)
    report.section("Failure cases: single filter >= all filters")
    report.table(
        "failure_cases",
        scores.failure_cases(runs),
        "object_size: mean mask fraction on train "
        "images, from the run's concept store when reachable",
    )
    report.table("failures_by_n_train", scores.failures_by_train_size(runs))
    report.figure("failures_vs_n_train", fig.failure_figure(runs))
    report.section(
        "Probe variants: linear/mlp head, paper/bce/soft_iou loss, sigmoid/calibrated decision"
    )
    report.table(
        "variants_by_category",
        variants.variant_categories(runs),
        "per run (probe variant): % of concepts with learned val set IoU >= best single filter, means",
    )
    report.table(
        "variants_by_size",
        variants.variant_sizes(runs),
        "the same against concept size (mean mask fraction) and nesting (parts lie inside objects)",
    )


def _uncertainty_sections(report: Report, runs: list[Run]) -> None:
    report.section("Significance, nulls and seeds")
    significance = uncertainty.significance_table(runs)
    if not len(significance):
        report.note("no run has bootstrap columns (written by stats=default)")
        return
    report.table(
        "significance",
        significance,
        "paired bootstrap over val images: concepts where all filters beat the single filter "
        "significantly (and the reverse); concepts above their shuffled-mask null",
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


def _filter_sections(report: Report, runs: list[Run], fig8_concepts: int = 4) -> None:
    report.section("Figs. 4-5: filters chosen as best single filter")
    usage = filters.filter_usage(runs)
    report.table("fig5_filter_usage", usage)
    report.table("fig5_usage_summary", filters.usage_summary(runs))
    report.figure("fig5_filter_usage", fig.usage_figure(usage))
    for run in runs:
        shared = filters.shared_filters(run)
        if len(shared):
            report.table(f"fig4_shared_filters_{slug(run.label)}", shared)
            report.figure(f"fig4_shared_filter_{slug(run.label)}", fig.shared_figure(shared))
            add_fig4_images(report, run, shared)
    report.section("Fig. 7: per-image IoU distribution")
    per_image = filters.per_image_stats(runs)
    if len(per_image):
        report.table("fig7_per_image_stats", per_image, "μ, σ over the non-zero part")
        report.figure("fig7_per_image", efig.per_image_figure(runs))
    else:
        report.note("no run stores per_image IoU (segmentation runs only)")
    add_fig8_section(report, runs, fig8_concepts)
    report.section("§5.2, Fig. 9: learned weights vs single-filter scores")
    correlations = filters.weight_correlations(runs)
    if len(correlations):
        summary = filters.correlation_summary(correlations)
        shares = filters.share_curves(runs)
        report.table(
            "fig9_correlations",
            correlations,
            "per concept Pearson r, p of max(w,0) vs filter_scores/val",
        )
        report.table("fig9_correlation_summary", summary)
        report.table("fig9_share_curves", shares, "mean sorted |w_k| / ||w||_1")
        report.figure("fig9_correlations", efig.correlation_figure(correlations, summary, shares))
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


def _embedding_sections(
    report: Report, runs: list[Run], expressions, k: int, clusters: int, tsne: bool, seed: int
) -> None:
    linear = [variants.variant_of(r).startswith("linear") for r in runs]
    nonlinear = [f"{r.label} ({variants.variant_of(r)})" for r, ok in zip(runs, linear) if not ok]
    runs = [
        r for r, ok in zip(runs, linear) if ok and r.embeddings is not None and len(r.concepts) > 1
    ]
    report.section("§5.3: concept embeddings")
    if nonlinear:
        report.note(f"left out (concept vectors are defined for the linear head only): {nonlinear}")
    if not runs:
        report.note("no run has embeddings.h5 of a linear probe")
        return
    report.table(
        "table2_neighbours", emb.neighbour_table(runs, k), "nearest concepts by cosine of w/||w||"
    )
    if expressions:
        table3, notes = emb.arithmetic_table(runs, list(expressions), k)
        report.table("table3_arithmetic", table3, "operands excluded")
        for note in notes:
            report.note(note)
    _map_sections(report, runs, clusters, tsne, seed)
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


def analyse(
    runs: list[Run],
    out_dir: str | Path,
    arithmetic=(),
    neighbours: int = 5,
    kmeans: int = 8,
    tsne: bool = True,
    seed: int = 0,
    experiments: list[str | Path] = (),
    dissections: list[str | Path] = (),
    unit_images: int = 8,
    fig8_concepts: int = 4,
    tcav_runs: list[str | Path] = (),
) -> Report:
    """Every table and figure for ``runs`` (and the ``experiments`` run directories of
    experiments.py, and the ``dissections``: task=netdissect run directories) into ``out_dir``,
    with index.html; returns the Report."""
    if not runs and not experiments and not dissections and not tcav_runs:
        raise NoRunsError("no runs to evaluate: pass runs=[RUN_DIR,...] or sweep=MULTIRUN_DIR")
    report = Report(Path(out_dir))
    dissected = [load_dissection(path) for path in dissections]
    add_dissection_sections(report, dissected, unit_images)
    add_tcav_sections(report, [load_tcav(path) for path in tcav_runs])
    if runs:
        _score_sections(report, runs)
        _filter_sections(report, runs, fig8_concepts)
        _embedding_sections(report, runs, arithmetic, neighbours, kmeans, tsne, seed)
    add_experiment_pages(report, list(experiments))
    report.write_html(
        runs=[f"{r.label}: {r.path}" for r in runs]
        + [f"{d.label}: {d.path}" for d in dissected]
        + [f"experiments: {e}" for e in experiments]
        + [f"tcav: {t}" for t in tcav_runs]
    )
    log.info("report: %s", report.out_dir / "index.html")
    return report


def output_dir_of(cfg: DictConfig) -> Path:
    """``output_dir`` when set, else Hydra's runtime output directory."""
    if cfg.get("output_dir"):
        return Path(cfg.output_dir)
    from hydra.core.hydra_config import HydraConfig

    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        raise NoRunsError("output_dir is unset and no Hydra run is active") from None


def evaluate(cfg: DictConfig) -> Report:
    """The `python evaluate.py` entry point: runs/sweep in, report (index.html) out."""
    given = [str(path) for path in cfg.get("runs") or []]
    experiments = [p for p in given if is_experiments_run(p)] + [
        str(p) for p in cfg.get("experiments") or []
    ]
    dissections = [p for p in given if is_dissection_run(p)]
    if cfg.get("sweep") and Path(cfg.sweep).is_dir():
        dissections += sorted(str(p.parent) for p in Path(cfg.sweep).rglob("units.csv"))
    tcav_runs = [p for p in given if is_tcav_run(p)]
    if cfg.get("sweep") and Path(cfg.sweep).is_dir():
        tcav_runs += sorted(str(p.parent) for p in Path(cfg.sweep).rglob("tcav.csv"))
    probe_runs = [
        p for p in given if not (is_experiments_run(p) or is_dissection_run(p) or is_tcav_run(p))
    ]
    sweep = Path(cfg.sweep) if cfg.get("sweep") else None
    sweep_has_probes = sweep is not None and (not sweep.is_dir() or any(sweep.rglob("results.csv")))
    runs = load_runs(probe_runs, cfg.get("sweep") if sweep_has_probes else None)
    out_dir = output_dir_of(cfg)
    report = analyse(
        runs,
        out_dir,
        list(cfg.get("arithmetic") or []),
        int(cfg.get("neighbours", 5)),
        int(cfg.get("kmeans", 8)),
        bool(cfg.get("tsne", True)),
        int(cfg.get("seed", 0)),
        experiments=experiments,
        dissections=dissections,
        unit_images=int(cfg.get("unit_images", 8)),
        fig8_concepts=int(cfg.get("fig8_concepts", 4)),
        tcav_runs=tcav_runs,
    )
    if cfg.get("logger") and is_wandb(cfg.logger):  # the report as a run in the runs' group
        log_to_wandb(
            cfg.logger,
            flat_config(cfg),
            cfg.get("sweep"),
            report,
            runs,
            dissections,
            int(cfg.get("unit_images", 8)),
        )
    for line in uncertainty.summary_lines(runs):
        print(line)
    print(
        f"report: {out_dir / 'index.html'} ({len(report.figures)} figures, {len(report.tables)} tables)"
    )
    return report
