"""`evaluate.py logger=wandb`: the report as a W&B run of its own, in the group of its runs.

The run holds every table of the report (``tables/<name>``), every figure and image of it
(``figures/<name>``: the paper's figures, Fig. 8 and Fig. 4 images, the best units' strips), and,
for each task=netdissect run, every unit's strip in pages of 64, as on the report's unit pages
(``netdissect/<run>/units_page_001`` …, one image list a page, best units first).
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from net2vec.analysis.dissection_report import (
    PER_PAGE,
    DissectionRun,
    dissection_images,
    load_dissection,
)
from net2vec.analysis.images import ImagesError
from net2vec.analysis.report import Report, slug
from net2vec.analysis.runs import Run
from net2vec.common.wandb_media import log_report
from net2vec.run.identity import report_identity
from net2vec.run.loggers import wandb_offline

log = logging.getLogger(__name__)


def wandb_settings(logger_cfg: DictConfig) -> dict:
    """Project, entity and offline (resolved) of a `logger=wandb` config; its keys that refer to a
    training run's config (``${paths.output_dir}`` …) are left out."""
    logger = OmegaConf.to_container(logger_cfg, resolve=False)
    settings = {k: v for k, v in logger.items() if not (isinstance(v, str) and "${" in v)}
    settings["offline"] = wandb_offline(settings.get("offline", "auto"))
    return settings


def unit_strip_pages(dissected: list[DissectionRun], k: int = 8) -> dict[str, list]:
    """Every unit's strip of each run, in pages of PER_PAGE (key -> [(caption, image), …])."""
    pages: dict[str, list] = {}
    for run in dissected:
        try:
            pairs = dissection_images(run, k)
        except ImagesError as error:
            log.warning("%s: no unit strips for W&B (%s)", run.label, error)
            continue
        strips = [(name.rsplit("/", 1)[-1], image) for name, image in pairs if "/unit_" in name]
        for number, start in enumerate(range(0, len(strips), PER_PAGE), start=1):
            key = f"netdissect/{slug(run.label)}/units_page_{number:03d}"
            pages[key] = strips[start : start + PER_PAGE]
    return pages


def log_to_wandb(
    logger_cfg: DictConfig,
    config: dict,
    sweep: str | Path | None,
    report: Report,
    runs: list[Run],
    dissections: list[str | Path] = (),
    unit_images: int = 8,
) -> None:
    """Log ``report`` as a W&B run in the group its runs (probe and dissection runs) share, else
    the ``sweep``'s; ``config``: evaluate's own settings, flattened."""
    dissected = [load_dissection(path) for path in dissections]
    summaries = [run.summary for run in runs] + [run.summary for run in dissected]
    groups = [summary.get("config", {}).get("group") for summary in summaries]
    labels = [run.label for run in runs] + [run.label for run in dissected]
    identity = report_identity(groups, sweep, report.out_dir, {**config, "run_labels": labels})
    log_report(
        wandb_settings(logger_cfg),
        identity,
        {name: (table.columns, table.rows) for name, table in report.tables.items()},
        list(report.figures.items()),
        report.out_dir,
        unit_strip_pages(dissected, unit_images),
    )
