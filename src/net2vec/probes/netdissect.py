"""Network Dissection (Bau et al. 2017; docs/method.md §7): the tally of NetDissect-Lite.

The *raw* activation of unit k is upsampled to mask resolution (bilinear; ``align_corners=False``
by default, like NetDissect-Lite's PIL resize) and thresholded there at T_k, giving A_k(x). Over
every image of both splits, with L_c(x) the mask of label c (an image-level label, scene or
texture, covers the whole image):

    IoU(k, c) = Σ_x |A_k ∩ L_c| / (Σ_x |A_k(x)|·[x counts for cat(c)] + Σ_x |L_c(x)| − Σ_x |A_k ∩ L_c|)

cat(c) is the label's primary category, the one where it covers the most pixels. Which images
count in the union of category g is the *union rule*:

- ``category_hit`` (default, NetDissect-Lite's tally): image x counts for unit k when at least
  one of A_k(x)'s pixels lies on a label of category g, or x carries an image-level label of g;
- ``any_label``: image x counts whenever it carries any label of category g.

Unit k's label is its top concept over all categories; it is a *detector* when that IoU exceeds
the threshold (0.04). docs/netdissect.md lists the differences from NetDissect-Lite that remain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from net2vec.probes.single_filter import CHUNK_BYTES, pair_intersections
from net2vec.probes.upsample import upsample

DETECTOR_IOU = 0.04
UNIONS = ("category_hit", "any_label")
PRIMARY = ("coverage", "first_listed")


@dataclass
class DissectionLabels:
    """What the tally reads besides the pixel-level pairs: each concept's category and the
    image-level labels of every dataset row (CSR: ``whole_concept[whole_offsets[i]:…[i+1]]``)."""

    category: np.ndarray  # (C,) int code into category_names
    category_names: list[str]
    whole_offsets: np.ndarray  # (N+1,) int64
    whole_concept: np.ndarray  # (Q,) concept index

    def whole_labels(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position in `rows`, concept) of every image-level label of the given dataset rows."""
        rows = np.asarray(rows, np.int64)
        starts, ends = self.whole_offsets[rows], self.whole_offsets[rows + 1]
        counts = ends - starts
        position = np.repeat(np.arange(len(rows)), counts)
        index = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        return position, np.asarray(self.whole_concept, np.int64)[index]


def dissection_labels(concepts, primary: str = "coverage") -> DissectionLabels:
    """The labels of a concept store view: categories by coverage (NetDissect) or first listed."""
    if primary not in PRIMARY:
        raise ValueError(f"netdissect primary={primary!r}: expected one of {', '.join(PRIMARY)}")
    names = concepts.coverage_categories if primary == "coverage" else concepts.categories
    category_names, codes = np.unique(np.asarray(names).astype(str), return_inverse=True)
    return DissectionLabels(
        codes.astype(np.int64),
        [str(n) for n in category_names],
        np.asarray(concepts.whole_offsets, np.int64),
        np.asarray(concepts.whole_concept, np.int64),
    )


@dataclass
class NetDissectResult:
    """(K, C) IoU matrix, each unit's top concept and IoU, and whether it is a detector."""

    iou: np.ndarray  # (K, C)
    top_concept: np.ndarray  # (K,)
    top_iou: np.ndarray  # (K,)
    detector: np.ndarray  # (K,) bool, top_iou > threshold
    # Σ|A_k ∩ L_c| and Σ|A_k|·[x counts for cat(c)] + Σ|L_c| of each unit's top label c (float64)
    top_intersection: np.ndarray | None = None
    top_denominator: np.ndarray | None = None

    def unique_detectors(self, concept_category: np.ndarray) -> dict[int, int]:
        """Number of distinct concepts detected, per category code."""
        concepts = np.unique(self.top_concept[self.detector])
        codes, counts = np.unique(np.asarray(concept_category)[concepts], return_counts=True)
        return {int(c): int(n) for c, n in zip(codes, counts)}

    def ranked(self, unit: int, count: int = 3) -> np.ndarray:
        """The unit's `count` best concepts, best first (ties: lower concept index)."""
        return np.argsort(-self.iou[unit], kind="stable")[:count]


class Tally:
    """Running sums of the tally: intersections (C, K), label areas (C,) and the per-category
    active pixels that enter the union (K, G)."""

    def __init__(self, num_concepts: int, num_filters: int, num_categories: int) -> None:
        self.inter = torch.zeros(num_concepts, num_filters, dtype=torch.float64)
        self.label_area = torch.zeros(num_concepts, dtype=torch.float64)
        self.units = torch.zeros(num_filters, num_categories, dtype=torch.float64)

    def iou(self, category: torch.Tensor) -> np.ndarray:
        union = self.units[:, category] + self.label_area[None, :] - self.inter.t()
        ratio = self.inter.t() / union.clamp(min=1e-12)
        return torch.where(union > 0, ratio, torch.zeros_like(union)).numpy()


def _union_counts(
    active_count: torch.Tensor,
    hits: torch.Tensor,
    image: torch.Tensor,
    category: torch.Tensor,
    num_categories: int,
    union: str,
) -> torch.Tensor:
    """(K, G) active pixels of the chunk that enter each category's union.

    active_count: (n, K); hits: (L, K) 1 where label l's region meets unit k's active pixels
    (image-level labels: always 1); image, category: (L,) of every label of the chunk."""
    n, num_filters = active_count.shape
    if union == "any_label":
        carries = active_count.new_zeros(n, num_categories)
        carries[image, category] = 1.0
        return active_count.t() @ carries
    counted = active_count.new_zeros(n, num_categories, num_filters)
    counted.index_put_((image, category), hits, accumulate=True)
    return torch.einsum("nk,ngk->kg", active_count, (counted > 0).double())


def _tally_chunk(
    tally: Tally,
    acts: torch.Tensor,
    masks: torch.Tensor,
    pair_image: torch.Tensor,
    pair_concept: torch.Tensor,
    whole: tuple[np.ndarray, np.ndarray],
    labels: DissectionLabels,
    mask_size: tuple[int, int],
    align_corners: bool,
    union: str,
    thresholds: torch.Tensor,
) -> None:
    """Add one chunk of images (raw acts (n, K, h, w); their pairs and image-level labels)."""
    up = upsample(acts.float(), mask_size, align_corners).flatten(2)
    active = (up > thresholds.to(acts.device)[None, :, None]).float()
    active_count = active.sum(2).double()
    pair_inter = pair_intersections(active, masks, pair_image).double()
    whole_image, whole_concept = (torch.as_tensor(a, device=acts.device) for a in whole)
    inter = torch.cat([pair_inter, active_count[whole_image]])
    image = torch.cat([pair_image, whole_image])
    concept = torch.cat([pair_concept, whole_concept]).cpu()
    hits = torch.cat([(pair_inter > 0).double(), torch.ones_like(active_count[whole_image])])
    category = torch.as_tensor(labels.category, device=acts.device)[concept.to(acts.device)]
    num_categories = len(labels.category_names)
    tally.inter.index_add_(0, concept, inter.cpu())
    area = torch.cat([masks.sum(1).double(), torch.full_like(whole_image, up.shape[2]).double()])
    tally.label_area.index_add_(0, concept, area.cpu())
    tally.units += _union_counts(active_count, hits, image, category, num_categories, union).cpu()


def image_chunks(
    batches: Iterable[dict], labels: DissectionLabels, num_filters: int, chunk_bytes: int
) -> Iterator[tuple]:
    """(acts, masks, pair_image, pair_concept, (position, concept) of image-level labels) per
    chunk of a batch's images, small enough that the upsampled maps fit in ``chunk_bytes``."""
    for batch in batches:
        acts, pair_image = batch["activations"], batch["pair_image"].long()
        if acts.shape[1] != num_filters:
            raise ValueError(
                f"batch activations have {acts.shape[1]} filters, expected {num_filters}"
            )
        concept, masks = batch["pair_concept"].long(), batch["masks"].float().flatten(1)
        rows = batch["image_index"].cpu().numpy()
        chunk = max(1, chunk_bytes // (4 * num_filters * masks.shape[1]))
        for start in range(0, acts.shape[0], chunk):
            selected = (pair_image >= start) & (pair_image < start + chunk)
            yield (
                acts[start : start + chunk],
                masks[selected],
                pair_image[selected] - start,
                concept[selected],
                labels.whole_labels(rows[start : start + chunk]),
            )


def netdissect(
    batches: Iterable[dict],
    thresholds: np.ndarray,
    labels: DissectionLabels,
    mask_size: tuple[int, int],
    union: str = "category_hit",
    align_corners: bool = False,
    detector_iou: float = DETECTOR_IOU,
    chunk_bytes: int = CHUNK_BYTES,
) -> NetDissectResult:
    """Dissect a layer. Batches carry raw ``activations`` (n, K, h, w), the pixel-level pairs
    (``pair_image``, ``pair_concept``, ``masks``) and ``image_index`` (dataset rows, which give
    the image-level labels); they should cover every image with a label, both splits."""
    if union not in UNIONS:
        raise ValueError(f"netdissect union={union!r}: expected one of {', '.join(UNIONS)}")
    thresholds_t = torch.as_tensor(np.asarray(thresholds), dtype=torch.float32)
    category = torch.as_tensor(np.asarray(labels.category), dtype=torch.long)
    num_filters = len(thresholds_t)
    tally = Tally(len(category), num_filters, len(labels.category_names))
    for chunk in image_chunks(batches, labels, num_filters, chunk_bytes):
        _tally_chunk(tally, *chunk, labels, tuple(mask_size), align_corners, union, thresholds_t)
    iou = tally.iou(category)
    top = iou.argmax(1)
    units = np.arange(num_filters)
    top_iou = iou[units, top]
    inter = tally.inter.numpy()[top, units]
    denominator = tally.units.numpy()[units, np.asarray(labels.category)[top]]
    denominator = denominator + tally.label_area.numpy()[top]
    return NetDissectResult(iou, top, top_iou, top_iou > detector_iou, inter, denominator)


def labelled_rows(concepts) -> np.ndarray:
    """Dataset rows that carry a pixel-level or an image-level label (the images the tally reads)."""
    pairs = np.diff(np.asarray(concepts.pair_offsets)) > 0
    whole = np.diff(np.asarray(concepts.whole_offsets)) > 0
    return np.flatnonzero(pairs | whole)


def dissect_layer(
    datamodule,
    labels: DissectionLabels,
    thresholds: np.ndarray,
    union: str = "category_hit",
    align_corners: bool = False,
    detector_iou: float = DETECTOR_IOU,
    batch_transform: Callable[[dict], dict] | None = None,
    progress: bool = False,
) -> NetDissectResult:
    """NetDissect over every labelled image of ``datamodule`` (a SegmentationDataModule on the
    every-label view of the concept store and an activation source); ``batch_transform`` may
    rewrite each raw batch (e.g. move the concept masks with a perturbed image)."""
    concepts = datamodule.concepts
    loader = datamodule.probe_dataloader(raw=True, rows=labelled_rows(concepts))
    batches = loader if batch_transform is None else map(batch_transform, loader)
    if progress:
        batches = tqdm(batches, desc="NetDissect tally", total=len(loader), mininterval=1)
    return netdissect(
        batches,
        thresholds,
        labels,
        concepts.mask_size,
        union=union,
        align_corners=align_corners,
        detector_iou=detector_iou,
    )
