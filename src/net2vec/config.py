"""Checks on the composed configuration that Hydra cannot express, each a one-line error."""
from __future__ import annotations

from omegaconf import DictConfig


class ConfigError(ValueError):
    """A bad configuration value; the message names the key and the value."""


def check_config(cfg: DictConfig) -> None:
    """Fail fast on values that would otherwise fail late or silently (task, τ, subsets)."""
    if cfg.task.name not in ("seg", "cls"):
        raise ConfigError(f"task.name={cfg.task.name!r}: expected 'seg' or 'cls'")
    quantile = cfg.probe.quantile
    if not isinstance(quantile, (int, float)) or not 0.0 < float(quantile) < 1.0:
        raise ConfigError(f"probe.quantile={quantile!r}: τ must lie strictly between 0 and 1")
    subsets = cfg.probe.subsets
    if isinstance(subsets, (int, str)):
        raise ConfigError(f"probe.subsets={subsets!r}: expected a list such as [1,2,4]")
    for size in subsets:
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ConfigError(f"probe.subsets contains {size!r}: each F must be a positive integer")
    if "network" in cfg and "layer" in cfg:
        check_layer(cfg)


def check_layer(cfg: DictConfig) -> None:
    """The layer is an alias of the network (or, for a real network, one of its modules), and every
    F fits its K when the network's config lists the layer's channels: fail before any store is built."""
    network, layer = cfg.network, str(cfg.layer)
    aliases = dict(network.get("layers") or {})
    if layer not in aliases:
        if network.get("arch") == "planted":
            raise ConfigError(f"layer={layer!r}: network planted has only the layers {', '.join(aliases)}")
        from net2vec.features.networks import resolve_layer

        resolve_layer(network, layer)                   # NetworkError naming the aliases and modules
    channels = (network.get("channels") or {}).get(layer)
    if channels is not None:
        check_subsets(list(cfg.probe.subsets), int(channels))


def check_subsets(subsets: list[int], num_filters: int) -> list[int]:
    """Subset sizes, sorted and deduplicated, each within 1..K of the layer."""
    for size in subsets:
        if size > num_filters:
            raise ConfigError(f"probe.subsets contains F={size}, but the layer has only K={num_filters} filters")
    return sorted(set(int(size) for size in subsets))
