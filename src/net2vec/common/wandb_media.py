"""What a W&B run shows beyond its curves: tables, native plots, images, the evaluate report.

A training run ends with :func:`log_results`: the per-concept table (results.csv), the summary by
category as a table, a bar chart of the best single filter vs all filters per category, the score
against the number of filters F per category (line plot; F = K is the all-filter probe), and the
embeddings as an artifact. :func:`log_images` logs (name, figure or image) pairs as
``wandb.Image``; :func:`log_report` logs an evaluate.py report (its tables and every figure and
image) as a run of its own, in the group of the runs it evaluates. ``wandb`` is imported inside the
functions: it is slow to import and only needed with ``logger=wandb``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

log = logging.getLogger(__name__)


def is_wandb(logger) -> bool:
    """True for a W&B Lightning logger (or a ``logger`` config whose ``_target_`` is W&B's)."""
    if isinstance(logger, (DictConfig, dict)):
        return str(logger.get("_target_", "")).endswith("WandbLogger")
    return type(logger).__name__ == "WandbLogger"


METRIC_NAME = {"seg": "set IoU", "cls": "balanced accuracy"}


def category_rows(summary: dict) -> tuple[list[str], list[list]]:
    """Columns and rows of the summary by category (``summary.json``'s ``mean_by_category``)."""
    by_category = summary["mean_by_category"]
    names = list(next(iter(by_category.values()), {}))
    columns = ["category", "n", *[n for n in names if n != "n"]]
    return columns, [[cat, *[row[c] for c in columns[1:]]] for cat, row in by_category.items()]


def subset_sizes(summary: dict) -> list[int]:
    """The F values of the run's top-F probes, ascending."""
    row = next(iter(summary["mean_by_category"].values()), {})
    return sorted(int(name[1:]) for name in row if name.startswith("F") and name[1:].isdigit())


def log_results(run, run_dir: Path, header: list[str], rows: list[list], summary: dict) -> None:
    """Log a training run's tables, plots and embeddings artifact to the W&B ``run``."""
    import wandb

    metric = METRIC_NAME.get(summary.get("task"), "score")
    columns, by_category = category_rows(summary)
    media = {
        "results": wandb.Table(columns=header, data=rows),
        "summary_by_category": wandb.Table(columns=columns, data=by_category),
    }
    if {"single", "all"} <= set(columns):  # a probe task's summary (not e.g. unit counts)
        bars = wandb.Table(
            columns=["category / probe", metric],
            data=[
                [f"{r[0]} / {p}", r[columns.index(p)]]
                for r in by_category
                for p in ("single", "all")
            ],
        )
        media["plots/single_vs_all"] = wandb.plot.bar(
            bars, "category / probe", metric, title=f"val {metric}: single filter vs all filters"
        )
        sizes = subset_sizes(summary)
        if sizes:
            media["plots/score_vs_F"] = subset_plot(summary, sizes, metric)
    run.log(media)
    if "percent_all_ge_single" in summary:
        run.summary.update({"percent_all_ge_single": summary["percent_all_ge_single"]})
    files = [Path(run_dir) / name for name in ("embeddings.h5", "summary.json")]
    if all(path.is_file() for path in files):
        artifact = wandb.Artifact(name=f"embeddings-{run.id}", type="embeddings")
        for path in files:
            artifact.add_file(str(path))
        run.log_artifact(artifact)


def log_detector_plots(run, counts: dict) -> None:
    """A task=netdissect run's bar charts: detector units and unique concepts per category
    (``counts``: summary.json's ``netdissect``)."""
    import wandb

    rows = [[cat, c["detectors"], c["unique_concepts"]] for cat, c in counts["by_category"].items()]
    table = wandb.Table(columns=["category", "detectors", "unique concepts"], data=rows)
    run.log(
        {
            f"plots/{column.replace(' ', '_')}": wandb.plot.bar(
                table, "category", column, title=f"{column} per category"
            )
            for column in ("detectors", "unique concepts")
        }
    )


def subset_plot(summary: dict, sizes: list[int], metric: str):
    """Line plot of the mean val score against F, one line per category (F = K: all filters)."""
    import wandb

    filters = int(summary["counts"]["filters"])
    xs = sizes + ([filters] if filters not in sizes else [])
    by_category = summary["mean_by_category"]
    ys = [
        [row[f"F{f}"] if f"F{f}" in row else row["all"] for f in xs] for row in by_category.values()
    ]
    return wandb.plot.line_series(
        xs=xs, ys=ys, keys=list(by_category), title=f"val {metric} vs F", xname="F"
    )


def as_image(image: Any, caption: str | None = None):
    """A ``wandb.Image`` of a file path, a matplotlib figure, a PIL image or an array."""
    import wandb

    if isinstance(image, (str, Path)):
        return wandb.Image(str(image), caption=caption)
    return wandb.Image(image, caption=caption)


def log_images(run, images: Iterable[tuple[str, Any]], prefix: str = "figures") -> int:
    """Log (name, figure or image) pairs to the W&B ``run`` as ``<prefix>/<name>``; returns how many."""
    logged = {f"{prefix}/{name}": as_image(image, caption=name) for name, image in images}
    if logged:
        run.log(logged)
    return len(logged)


def log_report(
    settings: dict,
    identity,
    tables: dict[str, tuple[list[str], list[list]]],
    images: Iterable[tuple[str, Any]],
    out_dir: Path,
    image_lists: dict[str, list[tuple[str, Any]]] | None = None,
) -> None:
    """Log an evaluate.py report as a W&B run of its own: ``identity`` (a RunIdentity) names its
    group and job type, ``settings`` holds project, entity and whether to log offline;
    ``image_lists``: key -> [(caption, image), …], each list shown as one media panel (at most
    108 images a list, W&B's limit)."""
    import wandb

    run = wandb.init(
        project=settings.get("project") or "net2vec",
        entity=settings.get("entity"),
        name=identity.name,
        group=identity.group,
        job_type=identity.job_type,
        tags=identity.tags,
        config=identity.config,
        dir=str(out_dir),
        mode="offline" if settings.get("offline") else "online",
        reinit="finish_previous",
    )
    try:
        run.log({f"tables/{n}": wandb.Table(columns=c, data=r) for n, (c, r) in tables.items()})
        count = log_images(run, images)
        for key, items in (image_lists or {}).items():
            run.log({key: [as_image(image, caption) for caption, image in items]})
            count += len(items)
        log.info(
            "W&B: report logged (%d tables, %d images), group %s",
            len(tables),
            count,
            identity.group,
        )
    finally:
        run.finish()
