"""Network Dissection (Bau et al. 2017; docs/method.md §7), NetDissect-Lite's tally.

Differences from the single-filter probe of Net2Vec: the *raw* activation is upsampled to mask
resolution first (bilinear; ``align_corners=False`` by default, like the PIL/scipy resize of
NetDissect-Lite) and thresholded there at T_k; the IoU runs over the whole dataset (both splits),
and the union counts a unit's active pixels only in images that carry labels of c's category:

    IoU(k, c) = Σ_x |A_k ∩ L_c| / (Σ_{x: cat(c) ∈ cats(x)} |A_k(x)| + Σ_x |L_c(x)| − Σ_x |A_k ∩ L_c|)

An image carries category g when any of its (pixel-level) concepts has primary category g.
Unit k is a detector of its top concept when that IoU exceeds 0.04.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from net2vec.probes.single_filter import CHUNK_BYTES, pair_intersections
from net2vec.probes.upsample import upsample

DETECTOR_IOU = 0.04


@dataclass
class NetDissectResult:
    """(K, C) IoU matrix, each unit's top concept and IoU, and whether it is a detector."""

    iou: np.ndarray  # (K, C)
    top_concept: np.ndarray  # (K,)
    top_iou: np.ndarray  # (K,)
    detector: np.ndarray  # (K,) bool, top_iou > threshold

    def unique_detectors(self, concept_category: np.ndarray) -> dict[int, int]:
        """Number of distinct concepts detected, per category code."""
        concepts = np.unique(self.top_concept[self.detector])
        codes, counts = np.unique(np.asarray(concept_category)[concepts], return_counts=True)
        return {int(c): int(n) for c, n in zip(codes, counts)}


def _tally_chunk(
    acts: torch.Tensor,
    thresholds: torch.Tensor,
    masks: torch.Tensor,
    pair_image: torch.Tensor,
    pair_category: torch.Tensor,
    num_categories: int,
    mask_size: tuple[int, int],
    align_corners: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair intersections (P, K) and per-unit active pixels in images of each category (K, G)."""
    up = upsample(acts.float(), mask_size, align_corners).flatten(2)
    active = (up > thresholds[None, :, None]).float()
    inter = pair_intersections(active, masks, pair_image)
    carries = torch.zeros(acts.shape[0], num_categories, dtype=torch.float64, device=acts.device)
    carries[pair_image, pair_category] = 1.0
    units_by_category = active.sum(2).double().t() @ carries
    return inter.double(), units_by_category


def netdissect(
    batches: Iterable[dict],
    thresholds: np.ndarray,
    concept_category: np.ndarray,
    mask_size: tuple[int, int],
    align_corners: bool = False,
    detector_iou: float = DETECTOR_IOU,
    chunk_bytes: int = CHUNK_BYTES,
) -> NetDissectResult:
    """Dissect a layer: batches carry raw ``activations`` (n, K, h, w) plus the pair fields.

    thresholds: (K,) T_k; concept_category: (C,) integer code of each concept's primary category.
    """
    thresholds_t = torch.as_tensor(np.asarray(thresholds), dtype=torch.float32)
    category = torch.as_tensor(np.asarray(concept_category), dtype=torch.long)
    num_filters, num_concepts = len(thresholds_t), len(category)
    num_categories = int(category.max()) + 1
    inter = torch.zeros(num_concepts, num_filters, dtype=torch.float64)
    units = torch.zeros(num_filters, num_categories, dtype=torch.float64)
    label_area = torch.zeros(num_concepts, dtype=torch.float64)
    for batch in batches:
        acts, pair_image = batch["activations"], batch["pair_image"].long()
        if acts.shape[1] != num_filters:
            raise ValueError(
                f"batch activations have {acts.shape[1]} filters, expected {num_filters}"
            )
        concept = batch["pair_concept"].long()
        masks = batch["masks"].float().flatten(1)
        label_area.index_add_(0, concept.cpu(), masks.sum(1).double().cpu())
        chunk = max(1, chunk_bytes // (4 * num_filters * masks.shape[1]))
        for start in range(0, acts.shape[0], chunk):
            selected = (pair_image >= start) & (pair_image < start + chunk)
            if not bool(selected.any()):
                continue
            pair_inter, pair_units = _tally_chunk(
                acts[start : start + chunk],
                thresholds_t.to(acts.device),
                masks[selected],
                pair_image[selected] - start,
                category.to(acts.device)[concept[selected]],
                num_categories,
                tuple(mask_size),
                align_corners,
            )
            inter.index_add_(0, concept[selected].cpu(), pair_inter.cpu())
            units += pair_units.cpu()
    union = units[:, category] + label_area[None, :] - inter.t()
    iou = torch.where(
        union > 0, inter.t() / union.clamp(min=1e-12), torch.zeros_like(union)
    ).numpy()
    top = iou.argmax(1)
    top_iou = iou[np.arange(num_filters), top]
    return NetDissectResult(iou, top, top_iou, top_iou > detector_iou)
