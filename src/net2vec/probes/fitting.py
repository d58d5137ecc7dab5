"""Fitting probe modules with Lightning, resumable, with the all-filter probe cached on disk.

A :class:`Fitter` holds what every fit of a run shares: the Trainer factory (``conf/trainer``,
a Hydra ``_partial_``), the logger, the run directory, the probe cache and the key of the run's
inputs (the stores' content keys, task settings, seed, epochs). The all-filter probe of a key is
trained once and kept under ``<cache_dir>/probes/<name>-<key>.safetensors`` (cache.cached_build:
a corrupt or mismatched file is retrained); every later run that needs it (a sweep over F, a
rerun) loads it. A run's own fits checkpoint into ``<run_dir>/checkpoints/<name>-<key>/last.ckpt`` and resume
from it; the key in the folder name means a changed config never resumes another's fit.

DDP (``trainer=ddp``): Lightning starts the other ranks at the first fit, as reruns of the same
command, after rank 0 has built the stores (a rank started by an external launcher instead waits
on the stores' file locks). The datamodules shard every batch themselves (rank r of W takes
positions r, r + W, … of each global batch, see ``data.datamodules.EpochShuffle``), so Lightning's
distributed sampler stays off; the probes multiply their summed loss by W (probes.base), so that
DDP's mean of the ranks' gradients is the full batch's gradient, as in one process. Only rank 0
takes the probe cache's lock and writes the cache; the other ranks follow it.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from safetensors.torch import load_file, save_file

from net2vec.common.cache import Artifact, cached_build, fingerprint_json

log = logging.getLogger(__name__)


def readable_checkpoint(path: Path) -> bool:
    """Whether `path` is a complete checkpoint that safe loading reads (torch's zip format, every
    CRC right, ``weights_only=True`` loads it). A damaged one is removed and one that safe loading
    refuses (pickled code: crafted, or not written by a fit) is set aside as ``<name>.refused``,
    both logged, so that the fit starts over instead of failing; refused code never runs."""
    if not path.exists():
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            complete = archive.testzip() is None
    except (OSError, zipfile.BadZipFile):
        complete = False
    if not complete:
        log.warning("%s is damaged; training from the start", path)
        path.unlink()
        return False
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError, or any other refusal of the safe loader
        aside = path.with_name(path.name + ".refused")
        log.warning(
            "%s: safe loading refuses it (%s); set aside as %s, training from the start",
            path,
            type(error).__name__,
            aside.name,
        )
        os.replace(path, aside)
        return False
    return True


class Fitter:
    """Trains and validates probe modules for one run (see the module docstring).

    Args:
        trainer: ``trainer(**kwargs) -> pl.Trainer`` (conf/trainer built with ``_partial_``).
        logger: a Lightning logger or None.
        run_dir: the run directory (checkpoints of the run's own fits).
        cache_dir: the stores' cache directory (``probes/`` holds cached all-filter probes).
        key: everything a trained probe depends on (stores, task settings, seed, epochs).
        name: prefix of cached probe files, e.g. ``synthnet-conv5-seg``.
        callbacks: Lightning callbacks every logged fit gets (e.g. loggers.CategoryScores).
    """

    def __init__(
        self,
        trainer: Callable[..., pl.Trainer],
        logger,
        run_dir: str | Path,
        cache_dir: str | Path,
        key: dict,
        name: str,
        callbacks: list | None = None,
    ) -> None:
        self.trainer, self.logger, self.run_dir = trainer, logger, Path(run_dir)
        self.cache_dir, self.key, self.name = Path(cache_dir), dict(key), str(name)
        self.callbacks = list(callbacks or [])

    def probe_key(self, **extra) -> str:
        """Fingerprint of the run's key plus `extra` (e.g. the subsets of a fit)."""
        return fingerprint_json({**self.key, **extra})

    def checkpoint_dir(self, name: str, **extra) -> Path:
        """A fit's checkpoint folder in the run directory, keyed by everything it depends on."""
        return self.run_dir / "checkpoints" / f"{name}-{self.probe_key(**extra)}"

    def cache_artifact(self) -> Artifact:
        """The all-filter probe of this key as a cached artifact (common.cache)."""
        return Artifact(self.cache_dir / "probes", self.name, ".safetensors", self.key)

    def build_trainer(self, checkpoint_dir: Path | None, logger=None) -> pl.Trainer:
        """A Trainer from the factory; checkpoints the last epoch when asked; with a logger, the
        Fitter's callbacks too."""
        callbacks = list(self.callbacks) if logger is not None else []
        if checkpoint_dir is not None:
            # save_top_k=1 without a monitor keeps the latest epoch; named last.ckpt (PL 2.6 writes
            # save_last only after a top-k save, so save_top_k=0 + save_last=True never wrote it)
            callbacks.append(
                ModelCheckpoint(
                    dirpath=checkpoint_dir,
                    filename="last",
                    save_top_k=1,
                    enable_version_counter=False,
                )
            )
        return self.trainer(
            logger=logger if logger is not None else False,
            callbacks=callbacks,
            enable_checkpointing=checkpoint_dir is not None,
            use_distributed_sampler=False,
        )

    def fit(self, module: pl.LightningModule, datamodule, name: str, **extra) -> pl.Trainer:
        """Train ``module`` (resuming from its ``last.ckpt``), then validate the final weights."""
        checkpoint_dir = self.checkpoint_dir(name, **extra)
        trainer = self.build_trainer(checkpoint_dir, self.logger)
        last = checkpoint_dir / "last.ckpt"
        resume = str(last) if readable_checkpoint(last) else None
        if resume:
            log.info("resuming from %s", resume)
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
        trainer.validate(module, datamodule=datamodule, verbose=False)
        return trainer

    def validate(self, module: pl.LightningModule, datamodule) -> None:
        """One validation pass (for a probe loaded from cache)."""
        self.build_trainer(None).validate(module, datamodule=datamodule, verbose=False)

    def fit_all_filters(self, module: pl.LightningModule, datamodule) -> pl.LightningModule:
        """Train the all-filter probe, or load it from the cache; validated either way.

        Under DDP only rank 0 locks and writes the cache (it holds the lock through the fit,
        which needs the other ranks: they must not wait on it)."""
        trained = []

        def build(tmp: Path) -> None:
            self.fit(module, datamodule, "all_filters")
            trained.append(True)
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, str(tmp)
            )

        state = cached_build(
            self.cache_artifact(),
            build,
            load_file,
            "all-filter probe",
            publish=rank_zero_only.rank == 0,
        )
        if not trained:
            module.load_state_dict(state)
            self.validate(module, datamodule)
        return module
