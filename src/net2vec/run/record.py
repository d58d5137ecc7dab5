"""Hydra's record of a run (``.hydra/`` and ``<job>.log``), written once the run holds its folder.

Hydra writes ``.hydra/config.yaml``, ``hydra.yaml``, ``overrides.yaml`` and opens the job's log
file before the task starts. A second ``train.py`` pointed at the folder of a live run (and then
refused by ``pipeline.claim_run_dir``) would rewrite the live run's record and write into its log.
So ``conf/hydra/default.yaml`` turns both off (``output_subdir: null``, the file handler unused and
delayed), and :func:`hydra_record` writes the same files, with Hydra's own log format, after the
lock is taken (docs/reliability.md "One folder per run").
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

RECORD_DIR = ".hydra"


def write_record(cfg: DictConfig, run_dir: Path) -> None:
    """``.hydra/config.yaml`` (the job's config, unresolved), ``hydra.yaml`` and ``overrides.yaml``,
    as Hydra writes them."""
    hydra_cfg = HydraConfig.instance().cfg
    folder = run_dir / RECORD_DIR
    folder.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, folder / "config.yaml")
    OmegaConf.save(hydra_cfg, folder / "hydra.yaml")
    OmegaConf.save(hydra_cfg.hydra.overrides.task, folder / "overrides.yaml")


def log_handler(run_dir: Path) -> logging.Handler:
    """A file handler on ``<run_dir>/<job name>.log`` with the format of Hydra's job logging."""
    hydra = HydraConfig.get()
    formatters = hydra.job_logging.get("formatters") or {}
    style = (formatters.get("simple") or {}).get("format")
    handler = logging.FileHandler(run_dir / f"{hydra.job.name}.log")
    handler.setFormatter(
        logging.Formatter(style or "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    )
    return handler


@contextlib.contextmanager
def hydra_record(cfg: DictConfig, run_dir: Path, enabled: bool = True) -> Iterator[None]:
    """Inside a Hydra job (and when `enabled`): write the record, log into the run's log file
    for the block's duration. Outside Hydra (tests, notebooks): nothing."""
    if not enabled or not HydraConfig.initialized():
        yield
        return
    write_record(cfg, run_dir)
    handler = log_handler(run_dir)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
