"""Random and planted label masks and unit maps for the compositional-explanation tests and
benchmark, in the batch format of the activation stores (and dense, for brute force)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from net2vec.probes.netdissect import DissectionLabels


@dataclass
class LabelledMaps:
    """Dense truth: acts (N, K, h, w), label masks (N, C, H, W) bool (image-level labels all
    ones), which labels are image-level, thresholds (K,), label names."""

    acts: torch.Tensor
    masks: np.ndarray
    whole: np.ndarray
    thresholds: np.ndarray
    names: list[str]

    @property
    def mask_size(self) -> tuple[int, int]:
        return tuple(self.masks.shape[2:])

    def labels(self) -> DissectionLabels:
        image, concept = np.nonzero(self.masks.any((2, 3)) & self.whole[None])
        offsets = np.searchsorted(image, np.arange(len(self.masks) + 1))
        return DissectionLabels(np.zeros(len(self.names), np.int64), ["all"], offsets, concept)

    def batches(self, batch_size: int = 16) -> list[dict]:
        out = []
        for start in range(0, len(self.masks), batch_size):
            part = self.masks[start : start + batch_size]
            image, concept = np.nonzero(part.any((2, 3)) & ~self.whole[None])
            out.append(
                {
                    "activations": self.acts[start : start + batch_size],
                    "pair_image": torch.from_numpy(image),
                    "pair_concept": torch.from_numpy(concept),
                    "masks": torch.from_numpy(part[image, concept]).float(),
                    "image_index": torch.arange(start, start + len(part)),
                }
            )
        return out

    def bitmaps(self) -> np.ndarray:
        """(K, N·H·W) bool A_k, upsampled with F.interpolate (independent of probes.upsample)."""
        up = F.interpolate(self.acts.double(), self.mask_size, mode="bilinear", align_corners=False)
        active = up > torch.as_tensor(self.thresholds, dtype=torch.float64)[None, :, None, None]
        return active.transpose(0, 1).reshape(self.acts.shape[1], -1).numpy()

    def label_mask(self, label: int) -> np.ndarray:
        """(N·H·W,) bool mask of one label over the data."""
        return self.masks[:, label].reshape(-1)


def blobs(rng, count: int, size: tuple[int, int]) -> np.ndarray:
    """(count, H, W) random ellipses."""
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]]
    cy, cx = rng.random((2, count, 1, 1)) * np.array(size)[:, None, None, None]
    ry, rx = (0.15 + 0.35 * rng.random((2, count, 1, 1))) * np.array(size)[:, None, None, None]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1.0


def random_maps(
    seed=0,
    images=40,
    labels=12,
    whole=3,
    units=8,
    map_size=(4, 4),
    mask_size=(12, 12),
    per_image=None,
) -> LabelledMaps:
    """Pixel-level labels as random blobs present in ~40 % of images (or ``per_image`` labels an
    image on average), ``whole`` image-level labels; units mix label maps with noise,
    thresholded at their 90 % quantile."""
    rng = np.random.default_rng(seed)
    present = rng.random((images, labels)) < (0.4 if per_image is None else per_image / labels)
    masks = blobs(rng, images * labels, mask_size).reshape(images, labels, *mask_size)
    is_whole = np.arange(labels) >= labels - whole
    masks = np.where(is_whole[None, :, None, None], True, masks) & present[..., None, None]
    small = F.interpolate(torch.from_numpy(masks).float(), map_size, mode="area")
    mix = torch.from_numpy(rng.normal(size=(labels, units))).float()
    acts = torch.einsum("nchw,ck->nkhw", small, mix) + 0.5 * torch.randn(
        images, units, *map_size, generator=torch.Generator().manual_seed(seed)
    )
    data = LabelledMaps(acts, masks, is_whole, np.zeros(units), label_names(labels))
    up = F.interpolate(acts.double(), mask_size, mode="bilinear", align_corners=False)
    values = np.sort(up.transpose(0, 1).reshape(units, -1).numpy(), axis=1)
    at = int(0.9 * values.shape[1])  # midway between two values: float32 and float64 agree
    data.thresholds = (values[:, at] + values[:, at + 1]) / 2
    return data


def label_names(count: int) -> list[str]:
    """``label0`` … with one name that needs quotes."""
    return ["traffic light" if c == 1 else f"label{c}" for c in range(count)]


def planted_maps(seed=0, images=30, labels=6, size=(10, 10)) -> LabelledMaps:
    """Units that fire exactly on ``label0 OR label2`` and on ``label3 AND NOT label4`` (maps at
    mask resolution, threshold 0.5, so A_k is the planted mask)."""
    rng = np.random.default_rng(seed)
    present = rng.random((images, labels)) < 0.5
    masks = (
        blobs(rng, images * labels, size).reshape(images, labels, *size) & present[..., None, None]
    )
    planted = np.stack([masks[:, 0] | masks[:, 2], masks[:, 3] & ~masks[:, 4]], 1)
    acts = torch.from_numpy(planted).float()
    return LabelledMaps(acts, masks, np.zeros(labels, bool), np.full(2, 0.5), label_names(labels))
