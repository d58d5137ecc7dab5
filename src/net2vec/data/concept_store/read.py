"""Reading a concept store: :class:`ConceptStore`, small arrays eagerly, masks on demand."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import h5py
import numpy as np

from net2vec.common.cache import COMPLETE_ATTR
from net2vec.data.broden import (
    IMAGE_COLUMNS,
    PIXEL_COLUMNS,
    DatasetError,
)

log = logging.getLogger(__name__)
COVERAGE_COLUMNS = PIXEL_COLUMNS + IMAGE_COLUMNS


def csr_offsets(image: np.ndarray, num_images: int) -> np.ndarray:
    """CSR offsets (N+1,) of rows sorted by image."""
    return np.concatenate([[0], np.cumsum(np.bincount(image, minlength=num_images))]).astype(
        np.int64
    )


class ConceptStore:
    """Read-only view of a concept store: small arrays eagerly, masks on demand.

    By default the view holds the concepts the probes use: labels with train *and* val images
    (docs/method.md §3). ``every_label=True`` holds every label with an image in either split
    (Network Dissection tallies both splits); the concept indices of the two views differ.
    """

    def __init__(self, path: str | Path, every_label: bool = False) -> None:
        self.path, self.every_label = Path(path), bool(every_label)
        with h5py.File(self.path, "r") as handle:
            if not handle.attrs.get(COMPLETE_ATTR, False):
                raise DatasetError(f"{self.path}: incomplete concept store")
            if "whole" not in handle:
                raise DatasetError(f"{self.path}: concept store of an older layout; delete it")
            concepts = handle["concepts"]
            self.split = handle["split"][()]
            presence = handle["presence"][()]
            chosen = (
                np.ones(presence.shape[1], bool)
                if every_label
                else (presence[self.split == 0].any(0) & presence[self.split == 1].any(0))
            )
            self.names = concepts["name"].asstr()[()][chosen]
            self.categories = concepts["category"].asstr()[()][chosen]
            self.all_categories = concepts["categories"].asstr()[()][chosen]
            self.label_numbers = concepts["label_number"][()][chosen]
            self.pixel_level = concepts["pixel_level"][()][chosen]
            self.coverage = concepts["coverage"][()][chosen]
            self.coverage_columns = [str(c) for c in concepts["coverage"].attrs["columns"]]
            self.images = handle["image"].asstr()[()]
            self.presence = presence[:, chosen]
            pairs, whole = handle["pairs"], handle["whole"]
            remap = np.cumsum(chosen) - 1
            pair_concept = pairs["concept"][()]
            self._pair_rows = None if every_label else np.flatnonzero(chosen[pair_concept])
            rows = slice(None) if every_label else self._pair_rows
            self.pair_image = pairs["image"][()][rows]
            self.pair_concept = remap[pair_concept[rows]].astype(np.int32)
            self.pair_area = pairs["area"][()][rows]
            self.pair_offsets = csr_offsets(self.pair_image, len(self.split))
            whole_concept = whole["concept"][()]
            whole_image = np.repeat(np.arange(len(self.split)), np.diff(whole["offsets"][()]))
            keep = chosen[whole_concept]
            self.whole_image, self.whole_concept = whole_image[keep], remap[whole_concept[keep]]
            self.whole_offsets = csr_offsets(self.whole_image, len(self.split))
            self.attrs = dict(handle.attrs)
        self.mask_size = tuple(int(v) for v in self.attrs["mask_size"])
        self.num_images, self.num_concepts = self.presence.shape
        self._handle: h5py.File | None = None
        self._pid: int | None = None

    def with_every_label(self) -> ConceptStore:
        """The view of the same store that holds every label (both splits)."""
        return self if self.every_label else ConceptStore(self.path, every_label=True)

    @property
    def coverage_categories(self) -> np.ndarray:
        """(C,) the category where each label covers the most pixels over the whole dataset
        (Network Dissection's primary category; ties: the later column of COVERAGE_COLUMNS)."""
        columns = np.array(self.coverage_columns)
        last = self.coverage.shape[1] - 1 - np.argmax(self.coverage[:, ::-1], axis=1)
        return columns[last]

    @property
    def n_train(self) -> np.ndarray:
        """(C,) number of train images containing each concept."""
        return self.presence[self.split == 0].sum(0)

    @property
    def n_val(self) -> np.ndarray:
        """(C,) number of val images containing each concept."""
        return self.presence[self.split == 1].sum(0)

    def alpha(self) -> np.ndarray:
        """(C,) 1 - mean over train images with c of the fraction of mask pixels that are c (NaN: no masks)."""
        train = self.split[self.pair_image] == 0
        fraction = self.pair_area[train] / float(self.mask_size[0] * self.mask_size[1])
        sums = np.bincount(self.pair_concept[train], fraction, minlength=self.num_concepts)
        counts = np.bincount(self.pair_concept[train], minlength=self.num_concepts)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, 1.0 - sums / np.maximum(counts, 1), np.nan)

    def _masks_dataset(self) -> h5py.Dataset:
        if (
            self._handle is None or self._pid != os.getpid()
        ):  # one handle per process (DataLoader workers)
            self._handle, self._pid = h5py.File(self.path, "r"), os.getpid()
        return self._handle["pairs/masks"]

    def masks(self, pair_idx: np.ndarray) -> np.ndarray:
        """(n, sh, sw) bool masks of the given pairs (any order; contiguous runs read together)."""
        idx = np.asarray(pair_idx, np.int64).reshape(-1)
        if self._pair_rows is not None:  # this view's pairs -> rows of the file
            idx = self._pair_rows[idx]
        sh, sw = self.mask_size
        if idx.size == 0:
            return np.zeros((0, sh, sw), bool)
        unique, inverse = np.unique(idx, return_inverse=True)
        dataset = self._masks_dataset()
        gap = max(dataset.chunks[0], 1) if dataset.chunks else 1
        breaks = np.flatnonzero(np.diff(unique) > gap) + 1
        packed = []
        for run in np.split(unique, breaks):
            block = dataset[int(run[0]) : int(run[-1]) + 1]
            packed.append(block[run - run[0]])
        bits = np.unpackbits(np.concatenate(packed), axis=1, count=sh * sw)
        return bits.reshape(-1, sh, sw).astype(bool)[inverse]

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_handle"], state["_pid"] = None, None
        return state
