"""Experiment loggers from the `logger` config group: wandb (offline unless logged in), csv,
tensorboard, none; the per-category validation scores of every epoch; and the run-level extras
logged at the end (summary by category; with W&B also tables, plots, images, see wandb_media)."""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path

import hydra
import numpy as np
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from net2vec.common import wandb_media
from net2vec.common.wandb_media import is_wandb
from net2vec.run.identity import RunIdentity

log = logging.getLogger(__name__)


def wandb_logged_in() -> bool:
    """True when an API key is configured (environment or ~/.netrc), so online logging can work."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_offline(setting: bool | str = "auto") -> bool:
    """Whether W&B logs offline: ``offline: auto`` means offline under WANDB_MODE=offline|disabled
    or without a login. Offline is also exported as WANDB_MODE, for wandb itself."""
    offline = setting
    if setting == "auto":
        offline = os.environ.get("WANDB_MODE") in ("offline", "disabled") or not wandb_logged_in()
    if offline:
        os.environ["WANDB_MODE"] = "offline"
    return bool(offline)


def build_logger(logger_cfg: DictConfig | None, identity: RunIdentity | None = None):
    """Instantiate the configured Lightning logger (config group ``logger``), or None for
    `logger=none`. ``identity``: the run's name, group, job type, tags and flattened config; W&B
    gets them all (unset ``name``/``group``/``job_type``/``tags`` in the config), other loggers the
    config as hyperparameters."""
    if not logger_cfg or "_target_" not in logger_cfg:
        return None
    logger_cfg = OmegaConf.to_container(logger_cfg, resolve=True)
    if is_wandb(logger_cfg):
        offline = wandb_offline(logger_cfg.pop("offline", "auto"))
        logger_cfg["offline"] = offline
        Path(logger_cfg["save_dir"]).mkdir(parents=True, exist_ok=True)
        if identity is not None:
            for key in ("name", "group", "job_type", "tags"):
                if not logger_cfg.get(key):
                    logger_cfg[key] = getattr(identity, key)
            logger_cfg["config"] = identity.config
        logger_cfg["_convert_"] = "all"  # plain dicts and lists for wandb.init
        log.info(
            "W&B logging %s, group %s", "offline" if offline else "online", logger_cfg.get("group")
        )
        return hydra.utils.instantiate(logger_cfg)
    logger = hydra.utils.instantiate(logger_cfg)
    if identity is not None:
        logger.log_hyperparams(identity.config)
    return logger


class CategoryScores(pl.Callback):
    """Logs, after every validation pass, each head's mean validation score per concept category
    (``val_by_category/<category>/mean_iou``, ``…/mean_iou_F<F>``), at the step of the pass.

    Reads the probe's (S, C) scores (``val_score()``); for segmentation only concepts with val
    pixels count (``val_union > 0``), as in the probe's own ``val/mean_iou``."""

    def __init__(self, categories) -> None:
        self.categories = np.asarray(categories).astype(str)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        scores = pl_module.val_score()
        if trainer.logger is None or scores is None:
            return
        union = getattr(pl_module, "val_union", None)
        seen = np.ones(scores.shape, bool) if union is None else np.asarray(union) > 0
        metrics = {}
        for head, name in enumerate(pl_module.head_names()):
            metric = name.split("/", 1)[1]
            for category in sorted(set(self.categories.tolist())):
                chosen = seen[head] & (self.categories == category)
                if chosen.any():
                    value = float(np.mean(scores[head][chosen]))
                    metrics[f"val_by_category/{category}/{metric}"] = value
        if metrics:
            metrics["epoch"] = trainer.current_epoch
            trainer.logger.log_metrics(metrics, step=trainer.global_step)


class MonotonicSteps(Logger):
    """The run's logger as its successive fits see it (all filters, then the top-F probes).

    Every fit's trainer counts steps from 0 again, so W&B's ``trainer/global_step`` axis (and the
    steps of the CSV and TensorBoard loggers) would run backwards at the second fit. A step below
    the last one logged marks a new fit, whose steps are from then on shifted to continue from the
    last one. Everything else is the wrapped logger's.
    """

    def __init__(self, inner: Logger) -> None:
        super().__init__()
        self.inner, self.offset, self.last = inner, 0, 0

    @classmethod
    def wrap(cls, logger: Logger | None) -> MonotonicSteps | None:
        """The wrapper around ``logger``; None for no logger."""
        return None if logger is None else cls(logger)

    @property
    def name(self):
        return self.inner.name

    @property
    def version(self):
        return self.inner.version

    @property
    def save_dir(self):
        return self.inner.save_dir

    @property
    def experiment(self):
        return self.inner.experiment

    @rank_zero_only
    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        """Log at ``step`` shifted by the offset of the current fit (never below the last step)."""
        if step is not None:
            if step + self.offset < self.last:
                self.offset = self.last - step
            step = self.last = step + self.offset
        self.inner.log_metrics(metrics, step)

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        self.inner.log_hyperparams(params, *args, **kwargs)

    def log_graph(self, model, input_array=None) -> None:
        self.inner.log_graph(model, input_array)

    def save(self) -> None:
        self.inner.save()

    def finalize(self, status: str) -> None:
        self.inner.finalize(status)

    def after_save_checkpoint(self, checkpoint_callback) -> None:
        self.inner.after_save_checkpoint(checkpoint_callback)

    def __getattr__(self, name: str):
        if name == "inner":  # not yet set (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


def finish_logger(logger, failed: bool = False) -> None:
    """Close the W&B run (exit code 1 when the run failed); other loggers need nothing."""
    if logger is not None and is_wandb(logger):
        import wandb  # local: wandb is slow to import and only needed here

        wandb.finish(exit_code=1 if failed else 0)


def log_run_extras(
    logger, run_dir: Path, header: list[str], rows: list[list], summary: dict
) -> None:
    """Log the summary by category (every logger) and, to W&B, the per-concept table, the summary
    table, the plots and the embeddings (wandb_media.log_results)."""
    if logger is None:
        return
    flat = {
        f"summary/{cat}/{name}": value
        for cat, row in summary["mean_by_category"].items()
        for name, value in row.items()
    }
    flat["summary/percent_all_ge_single"] = summary["percent_all_ge_single"]
    logger.log_metrics(flat)
    if is_wandb(logger):
        wandb_media.log_results(logger.experiment, run_dir, header, rows, summary)
