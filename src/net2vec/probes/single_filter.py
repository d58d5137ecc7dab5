"""Best single filter per concept (docs/method.md §3), for all (concept, filter) in one pass.

M_k(x) = S(I(A_k(x) > T_k)) > 0.5: the thresholded map of filter k is upsampled bilinearly to the
mask size and binarised (ties at exactly 0.5 count as off; see `upsample.binarise`). For each
batch, all K maps of a chunk of images are upsampled by two matmuls; the intersections of every
filter with every (image, concept) pair of those images come from one batched product with the
pair masks padded per image; |M_k(x) ∪ L_c(x)| =
|M_k(x)| + |L_c(x)| − |M_k(x) ∩ L_c(x)|. Counts are summed into (split, concept, filter)
accumulators, so the set IoU of every filter on train and val comes out of a single pass.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from net2vec.probes.upsample import binarise, upsample
from net2vec.statistics.iou import per_image_iou, ratio

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 28  # upsampled maps held at once (float32)


def pair_slots(pair_image: torch.Tensor, num_images: int) -> tuple[torch.Tensor, int]:
    """Rank of each pair among the pairs of its image, and the largest count per image (this
    reads the count back from the device; collated batches carry both, see ``batch_slots``)."""
    counts = torch.bincount(pair_image, minlength=num_images)
    order = torch.argsort(pair_image, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.empty_like(pair_image)
    slot[order] = (
        torch.arange(len(pair_image), device=pair_image.device) - starts[pair_image[order]]
    )
    return slot, int(counts.max()) if len(counts) else 0


def batch_slots(batch: dict, num_images: int) -> tuple[torch.Tensor, int]:
    """``pair_slot`` and ``pair_width`` of a collated batch (no device sync), else computed."""
    if "pair_slot" in batch:
        return batch["pair_slot"].long(), int(batch["pair_width"])
    return pair_slots(batch["pair_image"].long(), num_images)


def pair_intersections(
    binary: torch.Tensor, masks: torch.Tensor, pair_image: torch.Tensor, slots=None
) -> torch.Tensor:
    """|binary[i, k] ∩ masks[p]| for each pair p of image i = pair_image[p]: (P, K).

    binary: (n, K, S) float 0/1 (S = flattened pixels); masks: (P, S) float 0/1; slots:
    (slot, width) of the pairs if known (``batch_slots``).
    """
    n, _, pixels = binary.shape
    slot, width = slots if slots is not None else pair_slots(pair_image, n)
    padded = masks.new_zeros(n, max(width, 1), pixels)
    padded[pair_image, slot] = masks
    products = torch.bmm(padded, binary.transpose(1, 2))  # (n, width, K)
    return products[pair_image, slot]


def binary_upsampled(
    maps: torch.Tensor, mask_size: tuple[int, int], align_corners: bool
) -> torch.Tensor:
    """M_k(x): (n, K, h, w) 0/1 maps -> (n, K, sh·sw) float 0/1 (upsample, then > 0.5)."""
    up = upsample(maps.float(), mask_size, align_corners)
    return binarise(up).float().flatten(2)


@dataclass
class SingleFilterResult:
    """Per (concept, filter) set IoU on train and val; the best filter by train, scored on val."""

    intersection: np.ndarray  # (2, C, K) summed |M_k ∩ L_c| per split (0 train, 1 val)
    union: np.ndarray  # (2, C, K) summed |M_k ∪ L_c|
    best: np.ndarray  # (C,) k* = argmax_k train set IoU
    per_image: dict[str, np.ndarray] = field(default_factory=dict)  # val pairs: image, concept, iou

    @property
    def iou_train(self) -> np.ndarray:
        return ratio(
            torch.from_numpy(self.intersection[0]), torch.from_numpy(self.union[0])
        ).numpy()

    @property
    def iou_val(self) -> np.ndarray:
        return ratio(
            torch.from_numpy(self.intersection[1]), torch.from_numpy(self.union[1])
        ).numpy()

    @property
    def best_iou_train(self) -> np.ndarray:
        return np.take_along_axis(self.iou_train, self.best[:, None], 1)[:, 0]

    @property
    def best_iou_val(self) -> np.ndarray:
        return np.take_along_axis(self.iou_val, self.best[:, None], 1)[:, 0]


def _accumulate(
    batch: dict,
    split: torch.Tensor,
    inter_acc: torch.Tensor,
    union_acc: torch.Tensor,
    mask_size: tuple[int, int],
    align_corners: bool,
    chunk_bytes: int,
) -> None:
    maps, pair_image = batch["maps"], batch["pair_image"].long()
    n, num_filters = maps.shape[:2]
    masks = batch["masks"].float().flatten(1)
    num_concepts = inter_acc.shape[0] // 2
    row = split[batch["image_index"].long().cpu()].to(maps.device)[pair_image] * num_concepts
    row = row + batch["pair_concept"].long()
    chunk = max(1, chunk_bytes // (4 * num_filters * masks.shape[1]))
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        selected = (pair_image >= start) & (pair_image < stop)
        if not bool(selected.any()):
            continue
        binary = binary_upsampled(maps[start:stop], mask_size, align_corners)
        local = pair_image[selected] - start
        pair_masks = masks[selected]
        slots = None
        if "pair_slot" in batch:  # ranks within an image hold for any chunk of whole images
            slots = (batch["pair_slot"].long()[selected], int(batch["pair_width"]))
        inter = pair_intersections(binary, pair_masks, local, slots).double()
        union = binary.sum(2).double()[local] + pair_masks.sum(1).double()[:, None] - inter
        inter_acc.index_add_(0, row[selected], inter)
        union_acc.index_add_(0, row[selected], union)


def _per_image_best(
    batches: Iterable[dict],
    split: torch.Tensor,
    best: torch.Tensor,
    mask_size: tuple[int, int],
    align_corners: bool,
) -> dict[str, np.ndarray]:
    images, concepts, ious = [], [], []
    for batch in batches:
        pair_image = batch["pair_image"].long()
        image = batch["image_index"].long().cpu()[pair_image.cpu()]
        val = split[image] == 1
        if not bool(val.any()):
            continue
        concept = batch["pair_concept"].long()[val.to(pair_image.device)]
        filters = best.to(concept.device)[concept]
        maps = batch["maps"][pair_image[val.to(pair_image.device)], filters]
        pred = binarise(upsample(maps.float(), mask_size, align_corners))
        ious.append(per_image_iou(pred, batch["masks"][val.to(pair_image.device)] > 0.5).cpu())
        images.append(image[val])
        concepts.append(concept.cpu())
    cat = (lambda xs: torch.cat(xs).numpy()) if images else (lambda xs: np.zeros(0))
    return {"image": cat(images), "concept": cat(concepts), "iou": cat(ious)}


def single_filter_seg(
    batches: Iterable[dict],
    num_concepts: int,
    num_filters: int,
    mask_size: tuple[int, int],
    split: np.ndarray,
    align_corners: bool = True,
    per_image: bool = True,
    chunk_bytes: int = CHUNK_BYTES,
) -> SingleFilterResult:
    """Set IoU of every filter for every concept on train and val; best filter by train.

    batches: segmentation batch dicts (docs/architecture.md) over images of both splits;
    split: (N,) 0 = train, 1 = val, indexed by ``image_index``. With ``per_image`` a second pass
    over ``batches`` (which must then be re-iterable, e.g. a DataLoader) computes IoU_ind of
    k*(c) on every validation pair.
    """
    if per_image and isinstance(batches, Iterator):
        raise ValueError(
            "single_filter_seg: per_image=True needs re-iterable batches (a DataLoader or list)"
        )
    split_t = torch.as_tensor(np.asarray(split), dtype=torch.long)
    inter_acc = union_acc = None
    for batch in batches:
        if inter_acc is None:
            device = batch["maps"].device
            inter_acc = torch.zeros(
                2 * num_concepts, num_filters, dtype=torch.float64, device=device
            )
            union_acc = torch.zeros_like(inter_acc)
        if batch["maps"].shape[1] != num_filters:
            raise ValueError(
                f"batch maps have {batch['maps'].shape[1]} filters, expected {num_filters}"
            )
        _accumulate(
            batch, split_t, inter_acc, union_acc, tuple(mask_size), align_corners, chunk_bytes
        )
    if inter_acc is None:
        raise ValueError("single_filter_seg: no batches")
    inter = inter_acc.view(2, num_concepts, num_filters).cpu()
    union = union_acc.view(2, num_concepts, num_filters).cpu()
    best = ratio(inter[0], union[0]).argmax(1)
    result = SingleFilterResult(inter.numpy(), union.numpy(), best.numpy())
    if per_image:
        result.per_image = _per_image_best(batches, split_t, best, tuple(mask_size), align_corners)
    return result
