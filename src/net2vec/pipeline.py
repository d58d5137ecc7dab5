"""`train(cfg)`: the whole flow of one run, from the probe dataset to the run's three files.

    dataset -> concept store -> activation store -> probes (single, all, top-F) -> outputs

Every stage is cached on disk and reused; wall time per stage goes into summary.json.
Under DDP every rank runs this function (Lightning reruns the command for ranks ≥ 1 at the first
fit, once rank 0 has built the stores); only rank 0 writes the run's files and logs the extras.
"""
from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from net2vec.config import check_config
from net2vec.data import ensure_dataset
from net2vec.data.concept_store import prepare_concept_store
from net2vec.features.extract import prepare_activation_store
from net2vec.loggers import MonotonicSteps, build_logger, log_run_extras
from net2vec.memory import return_large_buffers_to_os
from net2vec.outputs import format_summary_table, results_rows, write_outputs

log = logging.getLogger(__name__)


class StageTimer:
    """Wall time per named stage, for summary.json."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        log.info("stage %s ...", stage)
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


def run_dir_of(cfg: DictConfig) -> Path:
    """The run directory: `paths.output_dir` when set, else Hydra's runtime output directory."""
    output_dir = cfg.paths.get("output_dir") if "paths" in cfg else None
    try:
        return Path(output_dir or HydraConfig.get().runtime.output_dir)
    except ValueError:  # no Hydra context and no explicit directory
        raise ValueError("paths.output_dir is unset and no Hydra run is active") from None


def short_config(cfg: DictConfig) -> dict:
    return {
        "network": cfg.network.name, "layer": cfg.layer, "weights": cfg.network.get("weights"),
        "task": cfg.task.name, "data": cfg.data.name, "data_root": str(cfg.data.root),
        "quantile": cfg.probe.quantile, "subsets": list(cfg.probe.subsets), "seed": cfg.seed,
        "epochs": cfg.task.epochs, "lr": cfg.task.optimizer.lr,
    }


def train(cfg: DictConfig) -> dict:
    """Run one (network, layer, task) experiment end to end; return the run's summary ({} on DDP ranks ≥ 1)."""
    check_config(cfg)
    return_large_buffers_to_os()     # flat RSS while streaming batches (net2vec.memory)
    pl.seed_everything(cfg.seed, workers=True)
    run_dir = run_dir_of(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    timer = StageTimer()
    started = time.perf_counter()
    with timer("dataset"):
        root = ensure_dataset(cfg.data)
    with timer("concept_store"):
        concepts = prepare_concept_store(root, Path(cfg.paths.cache_dir))
    with timer("activation_store"):
        activations = prepare_activation_store(cfg, concepts)
    logger = build_logger(cfg)
    from net2vec.probes.runner import run_probes

    outcome = run_probes(cfg, concepts, activations, MonotonicSteps.wrap(logger), timer, run_dir)
    if rank_zero_only.rank != 0:
        return {}
    timer.seconds["total"] = time.perf_counter() - started
    stores = {"concept_store": str(concepts.path), "activation_store": str(activations.path)}
    attrs = {"network": cfg.network.name, "layer": str(cfg.layer), "task": cfg.task.name,
             "dataset": str(root), "quantile": float(cfg.probe.quantile),
             "weights": str(cfg.network.get("weights"))}
    summary = write_outputs(outcome, run_dir, short_config(cfg), timer.seconds, stores, attrs)
    header, rows = results_rows(outcome)
    log_run_extras(logger, run_dir, header, rows, summary)
    if logger is not None and type(logger).__name__ == "WandbLogger":
        import wandb

        wandb.finish()
    print(format_summary_table(summary))
    print(f"run directory: {run_dir}")
    return summary

