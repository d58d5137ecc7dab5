"""The activation store: a layer's activations on the probe images, in HDF5, with thresholds.

Layout (docs/architecture.md): ``activations`` (N, K, h, w) float32|float16 chunked by image,
``pooled`` (N, K) float32 spatial means of the full-precision activations, ``thresholds`` (K,)
float32 (attribute ``quantile``): the exact top-τ threshold of the *stored* values (docs/method.md
§2), so ``thresholded = stored > T``. Attributes: network, layer, module, weights, input_size,
dataset, concepts (the concept store's key), channels, stride, dtype, key, ``net2vec_record``
(JSON: key and inputs) and ``net2vec_complete``.

Every source of activations (a network's forward pass, ``features.extract``; the planted encoding,
``features.planted``) writes through :class:`StoreBuilder` and is cached by :func:`cached_store`
(cache.cached_build): reused only when complete and its record's key matches; written under a
temporary name, under a lock, at ``<cache_dir>/activations/<network>-<layer>-<key>.h5``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import torch

from net2vec.common.cache import COMPLETE_ATTR, Artifact, cached_build
from net2vec.features.thresholds import TopQuantile

log = logging.getLogger(__name__)
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
        blocks = [data[int(run[0]) : int(run[-1]) + 1] for run in runs]
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
        self.handle, self.num_images, self.quantile, self.dtype = (
            handle,
            num_images,
            quantile,
            dtype,
        )
        self.written, self.top = 0, None

    def _create(self, shape: tuple[int, int, int]) -> None:
        per_image = int(np.prod(shape)) * np.dtype(DTYPES[self.dtype]).itemsize
        rows = max(1, min(self.num_images, (1 << 20) // per_image))
        self.handle.create_dataset(
            "activations", (self.num_images, *shape), DTYPES[self.dtype], chunks=(rows, *shape)
        )
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
        thresholds = self.handle.create_dataset(
            "thresholds", data=self.top.compute().cpu().numpy().astype(np.float32)
        )
        thresholds.attrs["quantile"] = self.quantile
        self.handle.attrs.update({k: v for k, v in attrs.items() if v is not None})
        self.handle.attrs["channels"] = self.handle["activations"].shape[1]
        self.handle.attrs["dtype"] = self.dtype
        self.handle.attrs[COMPLETE_ATTR] = True


def store_artifact(cache_dir: str | Path, network: str, layer: str, spec: dict) -> Artifact:
    """The activation store of `spec` (every input its values depend on) as a cached artifact."""
    return Artifact(Path(cache_dir) / "activations", f"{network}-{layer}", ".h5", spec)


def cached_store(artifact: Artifact, build: Callable[[Path], None]) -> ActivationStore:
    """The store of `artifact`: reused when complete with a matching record, else built (common.cache)."""
    return cached_build(artifact, build, ActivationStore, "activation store")
