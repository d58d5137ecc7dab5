"""Experiment loggers from the `logger` config group: wandb (offline unless logged in), csv,
tensorboard, none; and the run-level extras logged at the end (results table, figures, embeddings)."""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger
from pytorch_lightning.utilities.rank_zero import rank_zero_only

log = logging.getLogger(__name__)


def wandb_logged_in() -> bool:
    """True when an API key is configured (environment or ~/.netrc), so online logging can work."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def build_logger(logger_cfg: DictConfig | None):
    """Instantiate the configured Lightning logger (config group ``logger``), or None for `logger=none`."""
    if not logger_cfg or "_target_" not in logger_cfg:
        return None
    logger_cfg = OmegaConf.to_container(logger_cfg, resolve=True)
    if logger_cfg["_target_"].endswith("WandbLogger"):
        offline = logger_cfg.pop("offline", "auto")
        if offline == "auto":
            offline = (
                os.environ.get("WANDB_MODE") in ("offline", "disabled") or not wandb_logged_in()
            )
        if offline:
            os.environ["WANDB_MODE"] = "offline"
        logger_cfg["offline"] = bool(offline)
        Path(logger_cfg["save_dir"]).mkdir(parents=True, exist_ok=True)
        log.info("W&B logging %s", "offline" if offline else "online")
    return hydra.utils.instantiate(logger_cfg)


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


def finish_logger(logger) -> None:
    """Close the W&B run (other loggers need nothing)."""
    if logger is not None and type(logger).__name__ == "WandbLogger":
        import wandb  # local: wandb is slow to import and only needed here

        wandb.finish()


def log_run_extras(
    logger, run_dir: Path, header: list[str], rows: list[list], summary: dict
) -> None:
    """Log the per-concept table, the summary and the embeddings to W&B (other loggers: summary only)."""
    if logger is None:
        return
    flat = {
        f"summary/{cat}/{name}": value
        for cat, row in summary["mean_by_category"].items()
        for name, value in row.items()
    }
    flat["summary/percent_all_ge_single"] = summary["percent_all_ge_single"]
    logger.log_metrics(flat)
    if type(logger).__name__ != "WandbLogger":
        return
    import wandb  # local: slow to import, and only needed with logger=wandb

    logger.log_table(key="results", columns=header, data=rows)
    artifact = wandb.Artifact(name=f"embeddings-{logger.experiment.id}", type="embeddings")
    artifact.add_file(str(run_dir / "embeddings.h5"))
    artifact.add_file(str(run_dir / "summary.json"))
    logger.experiment.log_artifact(artifact)
