"""Checks on the composed configuration that Hydra cannot express, each a one-line error.

Every value a run reads is checked here, before any work (no dataset, store or fit starts on a
bad value): the method's settings (τ, F), the task's training settings (epochs, batch sizes,
the detector IoU), the error bars' settings (``stats``) and the layers of the run's network
(``layer``, ``features.layers``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from omegaconf import DictConfig, ListConfig

from net2vec.common.errors import ConfigError
from net2vec.probes.subsets import check_subsets
from net2vec.statistics.scores import check_settings


def check_config(cfg: DictConfig) -> None:
    """Fail fast on values that would otherwise fail late or silently (task, τ, subsets, layer,
    stats: checked here, before the probes train, although Statistics runs after them)."""
    if cfg.get("stats") is not None:
        check_settings(**{k: v for k, v in cfg.stats.items() if k != "_target_"})
    quantile = cfg.probe.quantile
    if not is_number(quantile) or not 0.0 < float(quantile) < 1.0:
        raise ConfigError(f"probe.quantile={quantile!r}: τ must lie strictly between 0 and 1")
    subsets = cfg.probe.subsets
    if isinstance(subsets, (int, str)):
        raise ConfigError(f"probe.subsets={subsets!r}: expected a list such as [1,2,4]")
    for size in subsets:
        if not is_integer(size) or size < 1:
            raise ConfigError(f"probe.subsets contains {size!r}: each F must be a positive integer")
    if "_target_" not in cfg.task:
        raise ConfigError(
            f"task={cfg.task.get('name')!r}: a task config needs a _target_ (see conf/task/)"
        )
    variant = {k: cfg.probe.get(k) for k in ("head", "decision")}
    if cfg.task.get("name") != "seg" and variant != {"head": "linear", "decision": "sigmoid"}:
        if any(v is not None for v in variant.values()):
            raise ConfigError(
                f"probe.head={variant['head']}, probe.decision={variant['decision']}: "
                "the probe variants are defined for task=seg only; use linear and sigmoid"
            )
    check_task(cfg)
    if cfg.get("stats") is not None:
        check_stats(cfg.stats)
    if "network" in cfg and "layer" in cfg:
        check_layer(cfg)


def is_integer(value) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def at_least(name: str, value, minimum: int, why: str) -> None:
    """ConfigError unless `value` is an integer ≥ `minimum`."""
    if not is_integer(value) or value < minimum:
        raise ConfigError(f"{name}={value!r}: expected an integer >= {minimum} ({why})")


def check_task(cfg: DictConfig) -> None:
    """Epochs (a task that trains probes), batch sizes and the NetDissect detector IoU."""
    task = cfg.task
    if "module" in task:  # a task that trains probe modules (seg, cls)
        at_least("task.epochs", task.get("epochs"), 1, "an untrained probe measures nothing")
        if "trainer" in cfg and "max_epochs" in cfg.trainer:
            at_least("trainer.max_epochs", cfg.trainer.max_epochs, 1, "a probe trains >= 1 epoch")
    for key in ("batch_size", "ref_batch_size"):
        if key in task:
            at_least(f"task.{key}", task[key], 1, "images per batch")
    if "features" in cfg and "batch_size" in cfg.features:
        at_least("features.batch_size", cfg.features.batch_size, 1, "images per batch")
    if "detector_iou" in task:
        iou = task.detector_iou
        if not is_number(iou) or not 0.0 <= float(iou) <= 1.0:
            raise ConfigError(f"task.detector_iou={iou!r}: an IoU threshold lies in [0, 1]")


def check_stats(stats: DictConfig) -> None:
    """The error bars' settings: resamples and null draws ≥ 0, 0 < level < 1."""
    for key in ("resamples", "null_draws"):
        if key in stats:
            at_least(f"stats.{key}", stats[key], 0, "0 turns them off")
    level = stats.get("level")
    if level is not None and (not is_number(level) or not 0.0 < float(level) < 1.0):
        raise ConfigError(f"stats.level={level!r}: an interval's coverage lies strictly in (0, 1)")


def extra_layers(cfg: DictConfig) -> list[str]:
    """``features.layers`` as a list of names (``all`` = none to check here; a string refused)."""
    layers = cfg.features.get("layers") if "features" in cfg else None
    if layers is None or layers == "all":
        return []
    if not isinstance(layers, (list, ListConfig)):
        raise ConfigError(
            f"features.layers={layers!r}: expected a list of layers such as [conv4,conv5], or all"
        )
    return [str(name) for name in layers]


def check_layer(cfg: DictConfig) -> None:
    """The layer and every ``features.layers`` entry are layers of the network (an alias or one of
    its modules), and every F fits its K when the network's config lists the layer's channels:
    fail before any store is built."""
    import hydra  # local: keeps `train.py --help` and bad-value errors free of the torch import

    network = hydra.utils.instantiate(cfg.network)
    for layer in [str(cfg.layer), *extra_layers(cfg)]:
        network.resolve_layer(layer)  # NetworkError naming the aliases and modules
    channels = (cfg.network.get("channels") or {}).get(str(cfg.layer))
    if channels is not None:
        check_subsets(list(cfg.probe.subsets), int(channels))


def check_writable(folder: str | os.PathLike, name: str) -> None:
    """ConfigError unless `folder` exists or can be made, and takes a file (not under a file, not
    on a read-only filesystem, not without permission): stores are written there."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".net2vec-write-check-"):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(f"{name}={str(folder)!r}: cannot write there ({reason})") from None
