"""The ``synthnet`` network adapter and its cached checkpoint (trained once per dataset, seed and
epochs)."""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from net2vec.common.cache import Artifact, cached_build
from net2vec.data.concept_store import prepare_concept_store
from net2vec.features.hooks import NetworkError
from net2vec.features.networks import TorchvisionNetwork, file_key, is_random
from net2vec.features.synthnet.model import (
    EPOCHS,
    INPUT_SIZE,
    VERSION,
    SynthNet,
    load_synthnet,
    save_synthnet,
)
from net2vec.features.synthnet.training import fit_synthnet

log = logging.getLogger(__name__)


def checkpoint_artifact(
    data_root: str | Path, cache_dir: str | Path, seed: int, epochs: int
) -> Artifact:
    """SynthNet trained on `data_root` as a cached artifact: keyed by the concept store's key
    (the data's fingerprint), the seed, the epochs and VERSION."""
    concepts = prepare_concept_store(data_root, cache_dir, progress=False)
    inputs = {
        "concepts": str(concepts.attrs["key"]),
        "seed": int(seed),
        "epochs": int(epochs),
        "version": VERSION,
    }
    return Artifact(Path(cache_dir) / "synthnet", f"synthnet-v{VERSION}", ".safetensors", inputs)


def checkpoint_path(data_root: str | Path, cache_dir: str | Path, seed: int, epochs: int) -> Path:
    """Where the cached SynthNet of `data_root` (as it is now) lives."""
    return checkpoint_artifact(data_root, cache_dir, seed, epochs).path


def ensure_synthnet(
    data_root: str | Path, cache_dir: str | Path, seed: int = 0, epochs: int = EPOCHS
) -> Path:
    """Train once (locked, atomic) or reuse the cached SynthNet checkpoint of `data_root`;
    a corrupt or mismatched cached checkpoint is retrained (cache.cached_build)."""
    artifact = checkpoint_artifact(data_root, cache_dir, seed, epochs)
    meta = {"data_root": str(data_root), "epochs": epochs, "seed": seed}

    def build(tmp: Path) -> None:
        log.info("synthnet: training on %s (%d epochs, seed %d)", data_root, epochs, seed)
        save_synthnet(fit_synthnet(data_root, epochs, seed, cache_dir), tmp, meta, True)

    def verified(path: Path) -> Path:
        load_synthnet(path)  # raises on a corrupt file: cached_build then retrains
        return path

    return cached_build(artifact, build, verified, "synthnet")


class SynthNetNetwork(TorchvisionNetwork):
    """The ``synthnet`` network adapter: ``weights: auto`` trains SynthNet once on the probe set
    (cached per dataset, seed and epochs), or a checkpoint path, or ``null`` (random init)."""

    def __init__(
        self,
        name: str = "synthnet",
        weights: str | None = "auto",
        input_size: int = INPUT_SIZE,
        layers: dict | None = None,
        channels: dict | None = None,
        last_layer: str | None = None,
        init_seed: int = 0,
        train_seed: int = 0,
        epochs: int = EPOCHS,
        num_scenes: int = 16,
        num_objects: int = 32,
    ) -> None:
        super().__init__(
            name, "synthnet", weights, input_size, layers, channels, last_layer, init_seed
        )
        self.train_seed, self.epochs = int(train_seed), int(epochs)
        self.num_scenes, self.num_objects = int(num_scenes), int(num_objects)

    def architecture(self, weights_given: bool, num_classes: int | None = None) -> nn.Module:
        return SynthNet(self.num_scenes, self.num_objects)

    def _checkpoint(self, data_root, cache_dir) -> Path | None:
        if str(self.weights) != "auto":
            return None
        if data_root is None or cache_dir is None:
            raise NetworkError(
                "network.weights=auto: SynthNet trains on the probe set; "
                "its dataset root and cache directory are needed"
            )
        return checkpoint_path(data_root, cache_dir, self.train_seed, self.epochs)

    def build(
        self, data_root: str | Path | None = None, cache_dir: str | Path | None = None
    ) -> nn.Module:
        if is_random(self.weights):
            return super().build()
        if self._checkpoint(data_root, cache_dir) is not None:
            return load_synthnet(
                ensure_synthnet(data_root, cache_dir, self.train_seed, self.epochs)
            )
        return load_synthnet(self.weights)

    def weights_key(
        self, data_root: str | Path | None = None, cache_dir: str | Path | None = None
    ) -> str:
        checkpoint = None if is_random(self.weights) else self._checkpoint(data_root, cache_dir)
        if checkpoint is not None:
            return f"auto:{checkpoint.name}"
        return super().weights_key() if is_random(self.weights) else file_key(self.weights)
