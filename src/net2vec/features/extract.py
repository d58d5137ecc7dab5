"""The activation store: one pass of a network over the probe images, cached in HDF5.

Path ``<cache_dir>/activations/<network>-<layer>-<key>.h5``; ``key`` hashes the dataset's
index.csv fingerprint, the network, its weights, the layer's module path, the input size, the
storage dtype and τ (the store's thresholds depend on it). Layout (docs/architecture.md):
``activations`` (N, K, h, w) float32|float16 chunked by image, ``pooled`` (N, K) float32 spatial
means of the full-precision activations, ``thresholds`` (K,) float32 (attribute ``quantile``):
the exact top-τ threshold of the *stored* values, so ``thresholded = stored > T``. Attributes:
network, layer, module, weights, input_size, dataset, index_fingerprint, channels, stride,
dtype, key, and ``net2vec_complete`` written last. A store is reused only when complete and its
``key`` attribute matches; it is written under a temporary name, under a lock.

Extraction is a Lightning predict loop (``cfg.trainer.accelerator``, one device): images in
index.csv order, resized to ``network.input_size`` (bilinear), ImageNet normalisation; a
`StoreWriter` callback streams each batch into the file and into `TopQuantile`.
Config: ``features.dtype`` (float32|float16), ``features.batch_size``, ``features.num_workers``.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from net2vec.cache import COMPLETE_ATTR, atomic_path, file_lock, fingerprint_json
from net2vec.features.networks import LayerExtractor, build_network, resolve_layer, weights_enum
from net2vec.features.thresholds import TopQuantile

log = logging.getLogger(__name__)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DTYPES = {"float32": np.float32, "float16": np.float16}


class ActivationStoreError(ValueError):
    """A missing, incomplete or mismatched activation store (one line)."""


class ActivationStore:
    """Read-only view of an activation store (small arrays eagerly, maps on demand)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            with h5py.File(self.path, "r") as handle:
                self.attrs = dict(handle.attrs)
                if not self.attrs.get(COMPLETE_ATTR, False):
                    raise ActivationStoreError(f"{self.path}: incomplete activation store")
                self.thresholds = handle["thresholds"][()].astype(np.float32)
                self.quantile = float(handle["thresholds"].attrs["quantile"])
                self.num_images, self.num_filters, h, w = handle["activations"].shape
        except OSError as error:
            raise ActivationStoreError(f"{self.path}: cannot read ({error})") from None
        self.map_size = (int(h), int(w))
        self._handle, self._pid = None, None

    def _file(self) -> h5py.File:
        if self._handle is None or self._pid != os.getpid():
            self._handle, self._pid = h5py.File(self.path, "r"), os.getpid()
        return self._handle

    def activations(self, idx) -> np.ndarray:
        """(n, K, h, w) float32 activations of dataset rows `idx` (any order)."""
        idx = np.asarray(idx, np.int64).reshape(-1)
        if idx.size == 0:
            return np.zeros((0, self.num_filters, *self.map_size), np.float32)
        unique, inverse = np.unique(idx, return_inverse=True)
        data = self._file()["activations"]
        runs = np.split(unique, np.flatnonzero(np.diff(unique) > 1) + 1)
        blocks = [data[int(run[0]):int(run[-1]) + 1] for run in runs]
        return np.concatenate(blocks).astype(np.float32, copy=False)[inverse]

    def thresholded(self, idx) -> np.ndarray:
        """(n, K, h, w) bool: activations > thresholds."""
        return self.activations(idx) > self.thresholds[None, :, None, None]

    def pooled(self) -> np.ndarray:
        """(N, K) float32 spatial means."""
        return self._file()["pooled"][()].astype(np.float32)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_handle"], state["_pid"] = None, None
        return state


class StoreBuilder:
    """Streams activation batches (in row order) into an open HDF5 file; thresholds at the end."""

    def __init__(self, handle: h5py.File, num_images: int, quantile: float, dtype: str) -> None:
        if dtype not in DTYPES:
            raise ActivationStoreError(f"features.dtype={dtype!r}: expected float32 or float16")
        self.handle, self.num_images, self.quantile, self.dtype = handle, num_images, quantile, dtype
        self.written, self.top = 0, None

    def _create(self, shape: tuple[int, int, int]) -> None:
        per_image = int(np.prod(shape)) * np.dtype(DTYPES[self.dtype]).itemsize
        rows = max(1, min(self.num_images, (1 << 20) // per_image))
        self.handle.create_dataset("activations", (self.num_images, *shape), DTYPES[self.dtype],
                                   chunks=(rows, *shape))
        self.handle.create_dataset("pooled", (self.num_images, shape[0]), np.float32)
        self.top = TopQuantile(shape[0], self.num_images * shape[1] * shape[2], self.quantile)

    def add(self, start: int, acts: torch.Tensor) -> None:
        """Write rows start:start+n of (n, K, h, w) float activations."""
        if start != self.written:
            raise ActivationStoreError(f"batch starts at row {start}, expected {self.written}")
        if self.top is None:
            self._create(tuple(acts.shape[1:]))
        stored = acts.to(getattr(torch, self.dtype))
        self.top.update(stored)
        end = start + acts.shape[0]
        self.handle["activations"][start:end] = stored.cpu().numpy()
        self.handle["pooled"][start:end] = acts.float().mean((2, 3)).cpu().numpy()
        self.written = end

    def finish(self, attrs: dict) -> None:
        """Thresholds, attributes, and the completion flag last."""
        if self.written != self.num_images:
            raise ActivationStoreError(f"wrote {self.written} of {self.num_images} images")
        thresholds = self.handle.create_dataset("thresholds", data=self.top.compute().cpu().numpy().astype(np.float32))
        thresholds.attrs["quantile"] = self.quantile
        self.handle.attrs.update({k: v for k, v in attrs.items() if v is not None})
        self.handle.attrs["channels"] = self.handle["activations"].shape[1]
        self.handle.attrs["dtype"] = self.dtype
        self.handle.attrs[COMPLETE_ATTR] = True


def load_image(path: Path, size: int) -> torch.Tensor:
    """(3, size, size) uint8: RGB, bilinear resize when the image is not size×size."""
    try:
        image = Image.open(path).convert("RGB")
    except (OSError, ValueError) as error:
        raise ActivationStoreError(f"{path}: cannot read image ({type(error).__name__})") from None
    if image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 (n, 3, H, W) -> ImageNet-normalised float."""
    mean = torch.tensor(MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255 - mean) / std


class ProbeImages(Dataset):
    """The probe images in concept-store row order: (row, uint8 image)."""

    def __init__(self, root: str | Path, names, size: int) -> None:
        self.root, self.names, self.size = Path(root), list(names), int(size)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int):
        return i, load_image(self.root / "images" / self.names[i], self.size)


class ActivationModule(pl.LightningModule):
    """predict_step -> {"index": rows, "acts": layer output}."""

    def __init__(self, model: torch.nn.Module, module_path: str) -> None:
        super().__init__()
        self.extractor = LayerExtractor(model, module_path)

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> dict:
        index, images = batch
        return {"index": index, "acts": self.extractor(normalise(images))}


class StoreWriter(BasePredictionWriter):
    """Streams predictions into a `StoreBuilder`, in index order."""

    def __init__(self, builder: StoreBuilder) -> None:
        super().__init__(write_interval="batch")
        self.builder = builder

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        index = prediction["index"].cpu()
        if not torch.equal(index, torch.arange(int(index[0]), int(index[0]) + len(index))):
            raise ActivationStoreError("prediction batches arrived out of order")
        self.builder.add(int(index[0]), prediction["acts"])


def weights_key(cfg, data_root: str | Path) -> str:
    """What identifies the network's weights in the store key."""
    net, weights = cfg.network, cfg.network.get("weights")
    if weights is None or str(weights).lower() in ("null", "none", "random"):
        return f"random(init_seed={int(net.get('init_seed', 0))})"
    if str(net.arch) == "synthnet" and str(weights) == "auto":
        from net2vec.features.synthnet import checkpoint_path
        return f"auto:{checkpoint_path(data_root, cfg.paths.cache_dir, *_synth_args(cfg)).name}"
    if re.fullmatch(r"[A-Z][A-Z0-9_]*", str(weights)) and not Path(str(weights)).is_file():
        return str(weights_enum(str(net.arch), str(weights)))
    path = Path(str(weights)).expanduser().resolve()
    stat = path.stat() if path.is_file() else None
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns}" if stat else str(path)


def _synth_args(cfg) -> tuple[int, int]:
    return int(cfg.network.get("train_seed", 0)), int(cfg.network.get("epochs", 6))


def store_file(cache_dir: str | Path, network: str, layer: str, spec: dict) -> tuple[Path, str]:
    """(path, key) of the store for `spec`."""
    key = fingerprint_json(spec)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{network}-{layer}")
    return Path(cache_dir) / "activations" / f"{safe}-{key}.h5", key


def cached_store(path: Path, key: str, build: Callable[[Path], None]) -> ActivationStore:
    """The complete store at `path` with attribute key == `key`, else build it (locked, atomic)."""
    def trusted() -> ActivationStore | None:
        if not path.is_file():
            return None
        try:
            store = ActivationStore(path)
        except ActivationStoreError as error:
            log.warning("activation store: %s; rebuilding", error)
            return None
        if store.attrs.get("key") != key:
            log.warning("activation store: %s has key %s, expected %s; rebuilding", path, store.attrs.get("key"), key)
            return None
        return store

    store = trusted()
    if store is not None:
        log.info("activation store: reusing %s", path)
        return store
    with file_lock(path):
        store = trusted()
        if store is None:
            with atomic_path(path) as tmp:
                build(tmp)
            store = ActivationStore(path)
            log.info("activation store: built %s", path)
        else:
            log.info("activation store: reusing %s (built while this process waited)", path)
    return store


def store_spec(cfg, concept_store) -> dict:
    """Every setting the stored values depend on (hashed into the store key)."""
    net = cfg.network
    return {"dataset": str(concept_store.attrs.get("dataset_root")),
            "index_fingerprint": str(concept_store.attrs.get("index_fingerprint")),
            "network": str(net.name), "arch": str(net.arch), "weights": weights_key(cfg, concept_store.attrs["dataset_root"]),
            "module": resolve_layer(net, str(cfg.layer)), "input_size": int(net.input_size),
            "dtype": str(cfg.features.get("dtype", "float32")), "quantile": float(cfg.probe.quantile)}


def _model_for(cfg, data_root: str | Path):
    net = cfg.network
    if str(net.arch) == "synthnet" and str(net.get("weights")) == "auto":
        from omegaconf import OmegaConf
        from net2vec.features.synthnet import ensure_synthnet
        path = ensure_synthnet(data_root, cfg.paths.cache_dir, *_synth_args(cfg))
        net = OmegaConf.merge(net, {"weights": str(path)})
    return build_network(net)


def extract(cfg, concept_store, spec: dict, key: str, out: Path) -> None:
    """One predict pass of the network over the probe images into the HDF5 file `out`."""
    root = Path(str(concept_store.attrs["dataset_root"]))
    images = ProbeImages(root, concept_store.images, spec["input_size"])
    features = cfg.features
    loader = DataLoader(images, batch_size=int(features.get("batch_size", 64)),
                        num_workers=int(features.get("num_workers", 0)), shuffle=False)
    module = ActivationModule(_model_for(cfg, root), spec["module"])
    accelerator = str(cfg.trainer.get("accelerator", "cpu")) if "trainer" in cfg else "cpu"
    with h5py.File(out, "w") as handle:
        builder = StoreBuilder(handle, len(images), spec["quantile"], spec["dtype"])
        trainer = pl.Trainer(accelerator=accelerator, devices=1, logger=False, enable_checkpointing=False,
                             enable_model_summary=False, enable_progress_bar=bool(features.get("progress", True)),
                             callbacks=[StoreWriter(builder)])
        trainer.predict(module, dataloaders=loader, return_predictions=False)
        h, w = handle["activations"].shape[2:]
        builder.finish({**{k: v for k, v in spec.items() if k != "quantile"}, "layer": str(cfg.layer),
                        "key": key, "stride": spec["input_size"] / w})


def prepare_activation_store(cfg, concept_store) -> ActivationStore:
    """The activation store of (dataset, network, weights, layer, input size): reuse or build."""
    if str(cfg.network.arch) == "planted":
        from net2vec.features.planted import prepare_planted_store
        return prepare_planted_store(cfg, concept_store)
    spec = store_spec(cfg, concept_store)
    path, key = store_file(cfg.paths.cache_dir, str(cfg.network.name), str(cfg.layer), spec)
    store = cached_store(path, key, lambda tmp: extract(cfg, concept_store, spec, key, tmp))
    log.info("activation store: %s (%d images, %d filters, %dx%d)", path, store.num_images,
             store.num_filters, *store.map_size)
    return store
