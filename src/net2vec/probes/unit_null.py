"""Each NetDissect unit's top IoU against a shuffled-mask null (docs/method.md §6, §7).

After the tally, one more pass over the same images gathers, for each unit k and its top label c,
the bit-packed A_k(x) and L_c(x) of c's pixel-level masks, and the active pixel count |A_k(x)| of
every image for the units whose top label is image-level (scene, texture). A null draw then

- permutes c's masks among the images that carry c (same sizes; the shared
  ``metrics.bootstrap.null_intersections``), or
- for an image-level label, permutes which of the tallied images carry it (same count; a
  whole-image mask permuted among its own images would change nothing),

and recomputes IoU(k, c) with the denominator's other terms, Σ|A_k|·[x counts for cat(c)] +
Σ|L_c|, held at their observed values. That is exact for pixel-level labels under
``union=any_label`` and an approximation otherwise (which images count for the category can move).
A unit *beats the null* when its IoU is above every draw: p_null = 1/(draws + 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from net2vec.probes.netdissect import (
    DissectionLabels,
    NetDissectResult,
    image_chunks,
    labelled_rows,
)
from net2vec.probes.single_filter import CHUNK_BYTES
from net2vec.probes.upsample import upsample
from net2vec.statistics import bootstrap as bs
from net2vec.statistics import significance


@dataclass
class UnitNull:
    """Per unit: mean null IoU of its top label over the draws, p_null, and whether it beats
    every draw."""

    null_iou: np.ndarray  # (K,)
    p_null: np.ndarray  # (K,)
    significant: np.ndarray  # (K,) bool, top IoU above every null draw
    draws: int
    seed: int


class TopLabelEvidence:
    """What the null needs, gathered chunk by chunk for each unit's top label."""

    def __init__(self, top: np.ndarray, labels: DissectionLabels) -> None:
        self.top = torch.as_tensor(top, dtype=torch.long)
        whole = np.isin(top, np.asarray(labels.whole_concept))
        self.whole_units = np.flatnonzero(whole)
        self.pred, self.mask, self.unit, self.counts, self.carries = [], [], [], [], []

    def add(self, active: torch.Tensor, masks, pair_image, pair_concept, whole) -> None:
        """active: (n, K, S) bool A_k(x) of a chunk; its pairs and image-level labels."""
        pair, unit = torch.nonzero(pair_concept.cpu()[:, None] == self.top[None], as_tuple=True)
        pick = active[pair_image.cpu()[pair], unit].numpy()
        self.pred.append(np.packbits(pick, axis=1))
        self.mask.append(np.packbits(masks.cpu()[pair].numpy() > 0.5, axis=1))
        self.unit.append(unit.numpy())
        top_whole = self.top.numpy()[self.whole_units]
        carries = np.zeros((active.shape[0], len(self.whole_units)), bool)
        position, concept = whole
        label, unit_w = np.nonzero(concept[:, None] == top_whole[None])
        carries[position[label], unit_w] = True
        self.carries.append(carries)
        self.counts.append(active[:, self.whole_units].sum(2).numpy().astype(np.float64))

    def intersections(self, draws: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Observed (K,) and null (draws, K) Σ|A_k ∩ L_c| of each unit's top label c."""
        num_filters = len(self.top)
        pred, mask = np.concatenate(self.pred), np.concatenate(self.mask)
        unit = np.concatenate(self.unit).astype(np.int64)
        own = bs.packed_intersections(pred, mask, np.arange(len(unit)))
        observed = np.bincount(unit, weights=own, minlength=num_filters).astype(np.float64)
        null = bs.null_intersections(pred, mask, unit, num_filters, draws, seed)
        counts, carries = np.concatenate(self.counts), np.concatenate(self.carries)
        observed[self.whole_units] += (counts * carries).sum(0)
        rng = np.random.default_rng(seed)
        for d in range(draws):
            null[d, self.whole_units] += (counts * bs.permuted_labels(carries, rng)).sum(0)
        return observed, null


def unit_null(
    chunks, result: NetDissectResult, labels, thresholds, mask_size, align_corners, draws, seed
) -> UnitNull:
    """The null of each unit's top label from ``image_chunks`` over the tallied images."""
    evidence = TopLabelEvidence(result.top_concept, labels)
    thresholds_t = torch.as_tensor(np.asarray(thresholds), dtype=torch.float32)
    for acts, masks, pair_image, pair_concept, whole in chunks:
        up = upsample(acts.float(), tuple(mask_size), align_corners).flatten(2)
        active = (up > thresholds_t.to(acts.device)[None, :, None]).cpu()
        evidence.add(active, masks, pair_image, pair_concept, whole)
    inter, null_inter = evidence.intersections(draws, seed)
    top = np.asarray(result.top_iou, np.float64)
    # denominator = Σ|A_k|·[x counts] + Σ|L_c|, held at its observed value
    denominator = np.where(top > 0, inter / np.maximum(top, 1e-300) + inter, 0.0)

    def iou(i):
        union = denominator - i
        return np.where(union > 0, i / np.maximum(union, 1e-12), 0.0)

    observed, null = iou(inter), iou(null_inter)
    significant = (null < observed[None]).all(0)
    return UnitNull(
        null.mean(0), significance.empirical_p(observed, null), significant, draws, seed
    )


def unit_null_layer(
    datamodule,
    result: NetDissectResult,
    labels: DissectionLabels,
    thresholds: np.ndarray,
    draws: int,
    seed: int = 0,
    align_corners: bool = False,
    progress: bool = False,
) -> UnitNull:
    """The null over every labelled image of ``datamodule`` (as ``dissect_layer`` reads them)."""
    concepts = datamodule.concepts
    loader = datamodule.probe_dataloader(raw=True, rows=labelled_rows(concepts))
    batches = tqdm(
        loader, desc="NetDissect null", total=len(loader), mininterval=1, disable=not progress
    )
    chunks = image_chunks(batches, labels, len(thresholds), CHUNK_BYTES)
    return unit_null(
        chunks, result, labels, thresholds, concepts.mask_size, align_corners, draws, seed
    )


def null_counts(result: NetDissectResult, null: UnitNull | None, require: bool) -> dict | None:
    """Detectors and unique concepts by IoU alone and by IoU with every null draw beaten."""
    if null is None:
        return None
    plain, both = result.detector, result.detector & null.significant
    top = result.top_concept
    return {
        "draws": null.draws,
        "seed": null.seed,
        "require_significant": require,
        "detectors_iou": int(plain.sum()),
        "detectors_beating_null": int(both.sum()),
        "unique_concepts_iou": len(set(top[plain].tolist())),
        "unique_concepts_beating_null": len(set(top[both].tolist())),
    }
