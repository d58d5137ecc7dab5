"""The composition root: `train(cfg)` builds every part from the config and wires them.

    dataset -> concept store -> activation store -> task (single, all, top-F) -> outputs

Each part is built by ``hydra.utils.instantiate`` from its config group (``_target_``): the
dataset source (``data``), the network adapter or planted source (``network``), the extraction
settings (``features``), the task with its DataModule and probe-module factories (``task``),
the Trainer factory (``trainer``) and the logger. Parts receive plain values and objects; this
module is the only one that reads the whole config (docs/architecture.md). Every stage is cached
on disk and reused; wall time per stage goes into summary.json.

Under DDP every rank runs `train` (Lightning reruns the command for ranks ≥ 1 at the first fit,
once rank 0 has built the stores); only rank 0 writes the run's files and logs the extras.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from net2vec import __version__
from net2vec.common.memory import return_large_buffers_to_os
from net2vec.common.versions import package_versions
from net2vec.data.concept_store import ConceptStore, prepare_concept_store
from net2vec.features.store import ActivationStore
from net2vec.probes.fitting import Fitter
from net2vec.probes.outcome import ProbeOutcome
from net2vec.run.config import check_config, check_writable
from net2vec.run.folders import claim_run_dir, hydra_record, run_dir_of
from net2vec.run.identity import flat_config, run_identity
from net2vec.run.loggers import (
    CategoryScores,
    MonotonicSteps,
    build_logger,
    finish_logger,
    log_run_extras,
)
from net2vec.run.outputs import format_summary_table, results_rows, write_outputs

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


@dataclass
class Stores:
    """What a run reads: the dataset root, its concept store, and the layer's activation store."""

    root: Path
    concepts: ConceptStore
    activations: ActivationStore


def ensure_dataset(data_cfg) -> Path:
    """The root of the dataset `data_cfg` (config group ``data``) names, generated/downloaded if asked."""
    return hydra.utils.instantiate(data_cfg).prepare()


def prepare_activation_store(
    cfg: DictConfig, concepts, layer: str | None = None, transform=None
) -> ActivationStore:
    """The activation store of ``cfg.network`` at `layer` (default ``cfg.layer``) on `concepts`."""
    network = hydra.utils.instantiate(cfg.network)
    return network.activation_store(
        concepts,
        str(layer or cfg.layer),
        float(cfg.probe.quantile),
        cfg.paths.cache_dir,
        hydra.utils.instantiate(cfg.features),
        transform,
    )


def prepare_stores(cfg: DictConfig, timer: StageTimer | None = None) -> Stores:
    """Dataset, concept store and activation store of the run (each built once, then reused)."""
    timer = timer or StageTimer()
    with timer("dataset"):
        root = ensure_dataset(cfg.data)
    with timer("concept_store"):
        verify = str(cfg.data.get("verify", "stat"))
        concepts = prepare_concept_store(root, Path(cfg.paths.cache_dir), verify=verify)
    with timer("activation_store"):
        activations = prepare_activation_store(cfg, concepts)
    log.info(
        "activation store: %s (%d images, %d filters, %dx%d)",
        activations.path,
        activations.num_images,
        activations.num_filters,
        *activations.map_size,
    )
    return Stores(root, concepts, activations)


# Trainer settings that never change a fitted probe (how a run reports, logs and checkpoints,
# and how much of the validation split it scores); every other one is part of the probe's key.
TRAINER_REPORTING = frozenset(
    {
        "_target_",
        "default_root_dir",
        "enable_progress_bar",
        "enable_model_summary",
        "enable_checkpointing",
        "log_every_n_steps",
        "num_sanity_val_steps",
        "logger",
        "callbacks",
        "profiler",
        "limit_val_batches",
        "limit_test_batches",
        "limit_predict_batches",
        "val_check_interval",
        "check_val_every_n_epoch",
    }
)


def probe_key(cfg: DictConfig, stores: Stores) -> dict:
    """Everything a trained probe depends on: the stores' content keys, the task's settings, the
    seed, every trainer setting that changes the fit (``+trainer.limit_train_batches=1`` too) and
    the probe head's parameters (``decision`` acts after the fit)."""
    task = OmegaConf.to_container(cfg.task, resolve=True)
    for part in ("datamodule", "module"):  # how data are loaded never changes a probe
        task.pop(part, None)
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    key = {
        "stores": {
            "concepts": str(stores.concepts.attrs["key"]),
            "activations": str(stores.activations.attrs["key"]),
        },
        "task": task,
        "seed": cfg.seed,
        "trainer": {k: v for k, v in trainer.items() if k not in TRAINER_REPORTING},
    }
    if cfg.probe.get("head", "linear") != "linear":
        key["probe"] = {"head": cfg.probe.head, "hidden": cfg.probe.hidden}
    return key


def build_fitter(cfg: DictConfig, logger, run_dir: Path, stores: Stores) -> Fitter:
    """The Fitter of the run: Trainer factory, logger (with the per-category scores of every
    validation pass), probe cache, and the key of its inputs (`probe_key`)."""
    trainer = hydra.utils.instantiate(cfg.trainer, _partial_=True)
    name = f"{cfg.network.name}-{cfg.layer}-{cfg.task.name}"
    callbacks = [CategoryScores(stores.concepts.categories)]
    return Fitter(
        trainer, logger, run_dir, cfg.paths.cache_dir, probe_key(cfg, stores), name, callbacks
    )


def run_config(cfg: DictConfig, stores: Stores) -> dict:
    """The run's resolved configuration for the loggers, flattened (``task.optimizer.lr``), with
    the stores it read, the data's fingerprint(s) and the package versions."""
    config = flat_config(cfg)
    config["stores.concepts"] = stores.concepts.path.name
    config["stores.activations"] = stores.activations.path.name
    config.update(
        {f"data.{k}": str(v) for k, v in stores.concepts.attrs.items() if "fingerprint" in k}
    )
    config.update({f"versions.{k}": v for k, v in package_versions().items()})
    config["versions.net2vec"] = __version__
    return config


def short_config(cfg: DictConfig) -> dict:
    """The configuration in short, for summary.json."""
    return {
        "network": cfg.network.name,
        "layer": cfg.layer,
        "weights": cfg.network.get("weights"),
        "task": cfg.task.name,
        "data": cfg.data.name,
        "data_root": str(cfg.data.root),
        "quantile": cfg.probe.quantile,
        "subsets": list(cfg.probe.subsets),
        "seed": cfg.seed,
        "baseline": cfg.get("baseline"),
        "epochs": cfg.task.get("epochs"),
        "lr": cfg.task.optimizer.lr if "optimizer" in cfg.task else None,
        "loss": cfg.task.get("loss"),
        "head": cfg.probe.get("head", "linear"),
        "decision": cfg.probe.get("decision", "sigmoid"),
    }


def train(cfg: DictConfig) -> dict:
    """Run one (network, layer, task) experiment end to end; return the run's summary ({} on DDP ranks ≥ 1)."""
    check_config(cfg)
    return_large_buffers_to_os()  # flat RSS while streaming batches (net2vec.common.memory)
    pl.seed_everything(cfg.seed, workers=True)
    run_dir = run_dir_of(cfg)
    check_writable(Path(cfg.paths.cache_dir), "paths.cache_dir")
    if rank_zero_only.rank == 0:  # DDP ranks >= 1 share rank 0's folder
        claim_run_dir(run_dir)
    with hydra_record(cfg, run_dir, enabled=rank_zero_only.rank == 0):  # after the lock
        return train_in(cfg, run_dir)


def train_in(cfg: DictConfig, run_dir: Path) -> dict:
    """`train` in the run directory it holds: stores, fits, statistics, outputs, summary."""
    timer, started = StageTimer(), time.perf_counter()
    stores = prepare_stores(cfg, timer)
    root = OmegaConf.select(cfg, "paths.root_dir", default=None, throw_on_resolution_failure=False)
    identity = run_identity(
        cfg.network.name, str(cfg.layer), cfg.task.name, run_dir, run_config(cfg, stores), root
    )
    logger = build_logger(cfg.get("logger"), identity)
    failed = True
    try:
        task = hydra.utils.instantiate(cfg.task)
        fitter = build_fitter(cfg, MonotonicSteps.wrap(logger), run_dir, stores)
        outcome = task.run(
            stores.concepts, stores.activations, list(cfg.probe.subsets), fitter, timer
        )
        summary = {}
        if rank_zero_only.rank == 0:
            if cfg.get("stats") is not None:
                with timer("statistics"):
                    hydra.utils.instantiate(cfg.stats).annotate(outcome)
            timer.seconds["total"] = time.perf_counter() - started
            config = {**short_config(cfg), "group": identity.group}
            summary = write_run_outputs(cfg, outcome, run_dir, stores, config, timer.seconds)
            if isinstance(outcome, ProbeOutcome):
                log_run_extras(logger, run_dir, *results_rows(outcome), summary)
            else:
                outcome.log(logger, summary)
        failed = False
    finally:
        finish_logger(logger, failed)
    if summary:
        probed = isinstance(outcome, ProbeOutcome)
        print(format_summary_table(summary) if probed else outcome.terminal(summary))
        print(f"run directory: {run_dir}")
    return summary


def write_run_outputs(
    cfg: DictConfig, outcome, run_dir: Path, stores: Stores, config: dict, timings: dict
) -> dict:
    """results.csv, embeddings.h5 and summary.json of the run; returns the summary.

    A task whose outcome is not a :class:`ProbeOutcome` (``task=netdissect``) writes, logs and
    prints itself: its outcome has ``write(run_dir, config, timings, stores) -> summary``,
    ``log(logger, summary)`` and ``terminal(summary) -> str`` (docs/architecture.md "Tasks")."""
    paths = {
        "concept_store": str(stores.concepts.path),
        "activation_store": str(stores.activations.path),
    }
    attrs = {
        "network": cfg.network.name,
        "layer": str(cfg.layer),
        "task": cfg.task.name,
        "dataset": str(stores.root),
        "quantile": float(cfg.probe.quantile),
        "weights": str(cfg.network.get("weights")),
    }
    if not isinstance(outcome, ProbeOutcome):  # e.g. task=netdissect: units.csv, dissection.h5
        return outcome.write(run_dir, config, timings, paths)
    return write_outputs(outcome, run_dir, config, timings, paths, attrs)
