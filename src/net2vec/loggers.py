"""Experiment loggers from the `logger` config group: wandb (offline unless logged in), csv,
tensorboard, none; and the run-level extras logged at the end (results table, figures, embeddings)."""
from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def wandb_logged_in() -> bool:
    """True when an API key is configured (environment or ~/.netrc), so online logging can work."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def build_logger(cfg: DictConfig):
    """Instantiate the configured Lightning logger, or return None for `logger=none`."""
    logger_cfg = cfg.get("logger")
    if not logger_cfg or "_target_" not in logger_cfg:
        return None
    logger_cfg = OmegaConf.to_container(logger_cfg, resolve=True)
    if logger_cfg["_target_"].endswith("WandbLogger"):
        offline = logger_cfg.pop("offline", "auto")
        if offline == "auto":
            offline = os.environ.get("WANDB_MODE") in ("offline", "disabled") or not wandb_logged_in()
        if offline:
            os.environ["WANDB_MODE"] = "offline"
        logger_cfg["offline"] = bool(offline)
        Path(logger_cfg["save_dir"]).mkdir(parents=True, exist_ok=True)
        log.info("W&B logging %s", "offline" if offline else "online")
    return hydra.utils.instantiate(logger_cfg)


def log_run_extras(logger, run_dir: Path, header: list[str], rows: list[list], summary: dict) -> None:
    """Log the per-concept table, the summary and the embeddings to W&B (other loggers: summary only)."""
    if logger is None:
        return
    flat = {f"summary/{cat}/{name}": value for cat, row in summary["mean_by_category"].items()
            for name, value in row.items()}
    flat["summary/percent_all_ge_single"] = summary["percent_all_ge_single"]
    logger.log_metrics(flat)
    if type(logger).__name__ != "WandbLogger":
        return
    import wandb

    logger.log_table(key="results", columns=header, data=rows)
    artifact = wandb.Artifact(name=f"embeddings-{logger.experiment.id}", type="embeddings")
    artifact.add_file(str(run_dir / "embeddings.h5"))
    artifact.add_file(str(run_dir / "summary.json"))
    logger.experiment.log_artifact(artifact)
