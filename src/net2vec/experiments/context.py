"""What the experiments take from the run configuration: plain values and callables.

`experiments.run(cfg)` is the experiments' composition root: it builds one
:class:`ExperimentContext` from the config (network adapter, τ, NetDissect settings, a store
factory and the all-filter probe trainer) and hands it to every experiment, which never sees
the config itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from net2vec.experiments.common import ExperimentError


@dataclass
class ExperimentContext:
    """The run's settings for the experiments.

    Attributes:
        network: the network adapter (``build``, ``resolve_layer``, ``input_size``) or planted source.
        layer: the layer probed (alias or module path).
        quantile: τ of the thresholds.
        dissect: NetDissect settings (``batch_size``, ``align_corners``, ``detector_iou``).
        cache_dir: the stores' cache directory.
        store: ``store(layer=None, transform=None) -> ActivationStore`` (cached, built once).
        train_probe: ``train_probe(concepts, source) -> probe`` trains the all-filter seg probe on
            any activation source and validates it (``val_iou``, ``val_union`` set).
        layers: every layer alias of the network.
    """

    network: object
    layer: str
    quantile: float
    dissect: dict
    cache_dir: Path
    store: Callable
    train_probe: Callable
    layers: list[str]

    def model(self, data_root) -> torch.nn.Module:
        """The network in eval mode (SynthNet ``weights: auto``: the cached checkpoint)."""
        if not hasattr(self.network, "build"):
            raise ExperimentError(
                f"network={self.network.name} has no images and no model: "
                "use a real network (e.g. synthnet)"
            )
        return self.network.build(data_root, self.cache_dir)
