"""Checks on the composed configuration that Hydra cannot express, each a one-line error."""

from __future__ import annotations

from omegaconf import DictConfig

from net2vec.common.errors import ConfigError
from net2vec.probes.subsets import check_subsets
from net2vec.statistics.scores import check_settings


def check_config(cfg: DictConfig) -> None:
    """Fail fast on values that would otherwise fail late or silently (task, τ, subsets, layer,
    stats: checked here, before the probes train, although Statistics runs after them)."""
    if cfg.get("stats") is not None:
        check_settings(**{k: v for k, v in cfg.stats.items() if k != "_target_"})
    quantile = cfg.probe.quantile
    if not isinstance(quantile, (int, float)) or not 0.0 < float(quantile) < 1.0:
        raise ConfigError(f"probe.quantile={quantile!r}: τ must lie strictly between 0 and 1")
    subsets = cfg.probe.subsets
    if isinstance(subsets, (int, str)):
        raise ConfigError(f"probe.subsets={subsets!r}: expected a list such as [1,2,4]")
    for size in subsets:
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
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
    if "network" in cfg and "layer" in cfg:
        check_layer(cfg)


def check_layer(cfg: DictConfig) -> None:
    """The layer is an alias of the network (or one of its modules), and every F fits its K when the
    network's config lists the layer's channels: fail before any store is built."""
    import hydra  # local: keeps `train.py --help` and bad-value errors free of the torch import

    network = hydra.utils.instantiate(cfg.network)
    network.resolve_layer(str(cfg.layer))  # NetworkError naming the aliases and modules
    channels = (cfg.network.get("channels") or {}).get(str(cfg.layer))
    if channels is not None:
        check_subsets(list(cfg.probe.subsets), int(channels))
