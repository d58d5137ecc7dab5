"""Extraction: one pass of a network over the probe images into an activation store.

`extract` is the only extraction path: a Lightning predict loop (one device) over a dataset of
``(row, uint8 image)`` items in concept-store row order, each resized to the network's input
size (bilinear) and normalised with the network's mean/std; a `StoreWriter` callback streams
each batch of layer maps into the HDF5 file and into the exact streaming thresholds. Perturbed
inputs (the robustness experiment) are an image ``transform`` of :class:`ProbeImages`, keyed
into the store by the transform's ``key``. `extracted_store` is the cached entry point that every
network adapter's ``activation_store`` calls; the store's key hashes the concept store's key (the
data's fingerprint), the network, its weights digest, the layer's module path, the input size and
preprocessing, the storage dtype, τ and the transform (features.store, common.cache).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from net2vec.features.hooks import LayerExtractor
from net2vec.features.store import (
    ActivationStore,
    ActivationStoreError,
    StoreBuilder,
    cached_store,
    store_artifact,
)
from net2vec.features.tokens import image_hw

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class Extraction:
    """How stores are extracted (conf/features): storage dtype, batch size, loader workers, device,
    and the layers extracted together with the run's layer (a list, or ``all`` aliases)."""

    dtype: str = "float32"
    batch_size: int = 64
    num_workers: int = 0
    accelerator: str = "cpu"
    progress: bool = True
    layers: list[str] | str | None = None  # extracted in the same pass as the run's layer


def load_image(path: Path, size) -> torch.Tensor:
    """(3, H, W) uint8: RGB, bilinear resize when the image is not H×W (`size`: N or (H, W))."""
    height, width = image_hw(size)
    try:
        image = Image.open(path).convert("RGB")
    except (OSError, ValueError) as error:
        raise ActivationStoreError(f"{path}: cannot read image ({type(error).__name__})") from None
    if image.size != (width, height):
        image = image.resize((width, height), Image.BILINEAR)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


def normalise(images: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """uint8 (n, 3, H, W) -> normalised float (ImageNet statistics unless given)."""
    mean = torch.tensor(mean, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(std, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255 - mean) / std


class ProbeImages(Dataset):
    """The probe images in concept-store row order: (row, uint8 image), optionally transformed.

    ``transform(image, row) -> image`` (uint8 in, uint8 out) perturbs the inputs, e.g. the
    robustness experiment's noise, rotations and shuffled patches."""

    def __init__(self, root: str | Path, names, size, transform: Callable | None = None) -> None:
        self.root, self.names, self.transform = Path(root), list(names), transform
        self.size = image_hw(size)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int):
        image = load_image(self.root / "images" / self.names[i], self.size)
        return i, image if self.transform is None else self.transform(image, i)


class LayerMaps(torch.nn.Module):
    """uint8 images -> {module path: (B, K, h, w) maps} of one or several layers, from one
    forward pass: normalise, run up to the last layer reached, to_maps."""

    def __init__(self, network, model: torch.nn.Module, module_paths: list[str]) -> None:
        super().__init__()
        self.extractor = LayerExtractor(model, list(module_paths))
        self.mean, self.std, self.to_maps = network.mean, network.std, network.to_maps

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = self.extractor(normalise(images, self.mean, self.std))
        return {path: self.to_maps(output) for path, output in outputs.items()}


class ActivationModule(pl.LightningModule):
    """predict_step -> {"index": rows, "acts": {module path: layer maps}}."""

    def __init__(self, maps: torch.nn.Module) -> None:
        super().__init__()
        self.maps = maps

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> dict:
        index, images = batch
        return {"index": index, "acts": self.maps(images)}


class StoreWriter(BasePredictionWriter):
    """Streams predictions into `StoreBuilder`s, in index order: builders[p] gets the maps of
    module path p (several builders may take one module's maps)."""

    def __init__(self, builders: list[tuple[str, StoreBuilder]]) -> None:
        super().__init__(write_interval="batch")
        self.builders = builders

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0
    ):
        index = prediction["index"].cpu()
        if not torch.equal(index, torch.arange(int(index[0]), int(index[0]) + len(index))):
            raise ActivationStoreError("prediction batches arrived out of order")
        for path, builder in self.builders:
            builder.add(int(index[0]), prediction["acts"][path])


def extract(
    images: Dataset,
    maps: torch.nn.Module,
    outs: list[tuple[Path, dict]],
    quantile: float,
    extraction: Extraction,
) -> None:
    """One predict pass of `maps` over `images` into one HDF5 store per (file, attrs) of `outs`,
    each holding the maps of the module path ``attrs["module"]`` (several layers: one pass)."""
    loader = DataLoader(
        images,
        batch_size=int(extraction.batch_size),
        num_workers=int(extraction.num_workers),
        shuffle=False,
    )
    with contextlib.ExitStack() as files:
        handles = [files.enter_context(h5py.File(out, "w")) for out, _ in outs]
        builders = [StoreBuilder(h, len(images), quantile, extraction.dtype) for h in handles]
        trainer = pl.Trainer(
            accelerator=extraction.accelerator,
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=bool(extraction.progress),
            callbacks=[StoreWriter([(a["module"], b) for (_, a), b in zip(outs, builders)])],
        )
        trainer.predict(ActivationModule(maps), dataloaders=loader, return_predictions=False)
        for (_, attrs), builder, handle in zip(outs, builders, handles):
            width = handle["activations"].shape[3]
            builder.finish({**attrs, "stride": image_hw(attrs["input_size"])[1] / width})


def store_spec(
    network,
    concepts,
    layer: str,
    quantile: float,
    cache_dir: str | Path,
    extraction: Extraction,
    transform=None,
) -> dict:
    """Every input the stored values depend on (hashed into the store key): the concept store's
    key (the data's fingerprint), the network, its constructor arguments, its weights digest, the
    layer's module path, the input size and preprocessing, the storage dtype, τ and the transform."""
    root = concepts.attrs["dataset_root"]
    spec = {
        "concepts": str(concepts.attrs.get("key")),
        "dataset": str(root),
        "network": network.name,
        "arch": str(getattr(network, "arch", type(network).__name__)),
        "weights": network.weights_key(root, cache_dir),
        "module": network.resolve_layer(layer),
        "input_size": network.input_size,  # N, or [H, W] when not square
        "preprocessing": {
            "resize": "bilinear",
            "mean": list(network.mean),
            "std": list(network.std),
        },
        "dtype": str(extraction.dtype),
        "quantile": float(quantile),
    }
    builder_kwargs = dict(getattr(network, "builder_kwargs", None) or {})
    if builder_kwargs:  # constructor arguments (timm model_kwargs such as output_stride)
        spec["model_kwargs"] = builder_kwargs
    if transform is not None:
        spec["perturbation"] = str(transform.key)
    return spec


def extracted_store(
    network,
    concepts,
    layer: str,
    quantile: float,
    cache_dir: str | Path,
    extraction: Extraction,
    transform=None,
) -> ActivationStore:
    """The activation store of (data, network, weights, layer, input size, τ[, transform]):
    reuse or build; the layers of ``extraction.layers`` missing from the cache are extracted in
    the same pass (``all``: every alias of the network)."""
    extra = extraction.layers or []
    extra = list(network.layers) if extra == "all" else [str(name) for name in extra]
    layers = list(dict.fromkeys([str(layer), *extra]))
    return extracted_stores(network, concepts, layers, quantile, cache_dir, extraction, transform)[
        str(layer)
    ]


def extracted_stores(
    network,
    concepts,
    layers: list[str],
    quantile: float,
    cache_dir: str | Path,
    extraction: Extraction,
    transform=None,
) -> dict[str, ActivationStore]:
    """The activation stores of several layers: the cached ones reused, all others written in one
    forward pass over the images (each store under its own lock, taken in path order)."""
    suffix = f"-{transform.key}" if transform is not None else ""
    plans = {}
    for layer in layers:
        spec = store_spec(network, concepts, layer, quantile, cache_dir, extraction, transform)
        artifact = store_artifact(cache_dir, network.name, f"{layer}{suffix}", spec)
        attrs = {k: v for k, v in spec.items() if k not in ("quantile", "preprocessing")}
        if "model_kwargs" in attrs:  # an HDF5 attribute holds no dict: stored as JSON
            attrs["model_kwargs"] = json.dumps(attrs["model_kwargs"], sort_keys=True, default=str)
        plans[layer] = (artifact, {**attrs, "layer": str(layer)})
    stores: dict[str, ActivationStore] = {}
    pending = sorted(plans, key=lambda layer: str(plans[layer][0].path))

    def one_pass(targets: dict[str, Path]) -> None:
        root = Path(str(concepts.attrs["dataset_root"]))
        images = ProbeImages(root, concepts.images, network.input_size, transform)
        modules = {plans[layer][1]["module"] for layer in targets}
        maps = LayerMaps(network, network.build(root, cache_dir), sorted(modules))
        outs = [(tmp, plans[layer][1]) for layer, tmp in targets.items()]
        extract(images, maps, outs, quantile, extraction)

    def nest(index: int, targets: dict[str, Path]) -> None:
        """Take the stores from `index` on (lock + temporary path each), then run the pass."""
        if index == len(pending):
            if targets:
                one_pass(targets)
            return
        layer, entered = pending[index], []

        def build(tmp: Path) -> None:
            entered.append(layer)
            nest(index + 1, {**targets, layer: tmp})

        stores[layer] = cached_store(plans[layer][0], build)
        if not entered:  # reused: the pass (if any) runs for the others
            nest(index + 1, targets)

    nest(0, {})
    return stores
