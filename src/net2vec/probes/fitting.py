"""Fitting a probe module with Lightning, resumable, with the all-filter probe cached on disk.

The all-filter probe of a (stores, task settings, seed) is trained once and kept under
``<cache_dir>/probes/``; every later run that needs it (a sweep over F, a rerun) loads it.
A run's own fits checkpoint into ``<run_dir>/checkpoints/<name>/last.ckpt`` and resume from it.

DDP (``trainer=ddp``): Lightning starts the other ranks at the first fit, as reruns of the same
command, after rank 0 has built the stores (a rank started by an external launcher instead waits
on the stores' file locks). The datamodules shard every batch themselves (rank r of W takes
positions r, r + W, … of each global batch, see ``data.datamodules.EpochShuffle``), so Lightning's
distributed sampler stays off; the probes multiply their summed loss by W, so that DDP's mean
of the ranks' gradients is the full batch's gradient, as in one process (PROTOCOL §3: the
per-concept loss is normalised by the reference batch size, never by the rank's batch). Only
rank 0 takes the probe cache's lock and writes the cache; the other ranks follow it.
"""
from __future__ import annotations

import contextlib
import logging
import pickle
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from net2vec.cache import atomic_path, file_lock, fingerprint_json

log = logging.getLogger(__name__)


def build_trainer(cfg: DictConfig, logger, checkpoint_dir: Path | None) -> pl.Trainer:
    """A Trainer from the `trainer` config group; checkpoints the last epoch when asked."""
    callbacks = []
    if checkpoint_dir is not None:
        # save_top_k=1 without a monitor keeps the latest epoch; named last.ckpt (PL 2.6 writes
        # save_last only after a top-k save, so save_top_k=0 + save_last=True never wrote it)
        callbacks.append(ModelCheckpoint(dirpath=checkpoint_dir, filename="last", save_top_k=1,
                                         enable_version_counter=False))
    return hydra.utils.instantiate(cfg.trainer, logger=logger if logger is not None else False,
                                   callbacks=callbacks, enable_checkpointing=checkpoint_dir is not None,
                                   use_distributed_sampler=False)


def fit(cfg: DictConfig, module: pl.LightningModule, datamodule, logger, checkpoint_dir: Path | None):
    """Train ``module`` (resuming from ``checkpoint_dir/last.ckpt``), then validate the final weights."""
    trainer = build_trainer(cfg, logger, checkpoint_dir)
    last = checkpoint_dir / "last.ckpt" if checkpoint_dir is not None else None
    resume = str(last) if last is not None and last.exists() else None
    if resume:
        log.info("resuming from %s", resume)
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
    trainer.validate(module, datamodule=datamodule, verbose=False)
    return trainer


def validate(cfg: DictConfig, module: pl.LightningModule, datamodule) -> None:
    """One validation pass (for a probe loaded from cache)."""
    build_trainer(cfg, None, None).validate(module, datamodule=datamodule, verbose=False)


def probe_key(cfg: DictConfig, stores: dict, **extra) -> str:
    """Fingerprint of everything a trained probe depends on: stores, task settings, seed, extras."""
    task = OmegaConf.to_container(cfg.task, resolve=True)
    task.pop("default_subsets", None)
    return fingerprint_json({"stores": stores, "task": task, "seed": cfg.seed,
                             "trainer": {"max_epochs": cfg.trainer.max_epochs}, **extra})


def probe_cache_path(cfg: DictConfig, stores: dict) -> Path:
    """Where the all-filter probe of these stores, task settings and seed is cached."""
    name = f"{cfg.network.name}-{cfg.layer}-{cfg.task.name}-{probe_key(cfg, stores)}.pt"
    return Path(cfg.paths.cache_dir) / "probes" / name


def checkpoint_dir(cfg: DictConfig, run_dir: Path, name: str, stores: dict, **extra) -> Path:
    """A fit's checkpoint folder in the run directory, keyed so a changed config never resumes it."""
    return run_dir / "checkpoints" / f"{name}-{probe_key(cfg, stores, **extra)}"


def fit_all_filter_probe(cfg: DictConfig, module: pl.LightningModule, datamodule, logger,
                         run_dir: Path, stores: dict) -> pl.LightningModule:
    """Train the all-filter probe, or load it from the cache; validated either way."""
    path = probe_cache_path(cfg, stores)
    # under DDP rank 0 holds the lock through the fit, which needs the other ranks: they must not wait on it
    with file_lock(path) if rank_zero_only.rank == 0 else contextlib.nullcontext():
        state = None
        if path.exists():
            try:
                state = torch.load(path, map_location="cpu")
            except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
                log.warning("all-filter probe cache %s is unreadable (%s); retraining", path, error)
                path.unlink()
        if state is not None:
            log.info("all-filter probe from cache %s", path)
            module.load_state_dict(state)
            validate(cfg, module, datamodule)
            return module
        trainer = fit(cfg, module, datamodule, logger, checkpoint_dir(cfg, run_dir, "all_filters", stores))
        if trainer.is_global_zero:
            with atomic_path(path) as tmp:
                torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, tmp)
    return module
