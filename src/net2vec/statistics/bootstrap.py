"""Uncertainty of per-concept scores: bootstrap over images, paired comparisons, shuffled nulls.

Every score of a run is a sum over validation images: the set IoU of concept c is
Σ_i |M(x_i) ∩ L_c(x_i)| / Σ_i |M(x_i) ∪ L_c(x_i)|, the balanced accuracy a function of the summed
tp/fp/tn/fn counts. The bootstrap redraws the N validation images with replacement, B times:
resample b gives image i the weight W[b, i] (multinomial counts, Σ_i W[b, i] = N), so its sums are
one product W @ X with the (N, C) per-image counts X (sparse for segmentation: only the pairs).
All scores are computed from the same W, so two scores of one concept are compared *paired*.
Weights, counts and sums are float64 (sums of pixel counts over thousands of images pass 2²⁴).

- ``interval``: the percentile interval (the 2.5 % and 97.5 % points of the B values); the run's
  intervals are BCa (``intervals``), the percentile one is kept for the coverage benchmark;
- ``shuffled_null_iou``: set IoU when each concept's masks are permuted among that concept's own
  validation images (same images, same mask sizes, image ↔ mask link broken), per draw;
  p-values against the draws and their FDR control are in ``significance``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
from scipy import sparse

CHUNK_ELEMENTS = 1 << 23  # resample weights held at once (b × N, float64)


def resample_weights(
    num_images: int, resamples: int, seed: int, chunk: int | None = None
) -> Iterator[np.ndarray]:
    """Chunks (b, N) float64 of multinomial image counts; together ``resamples`` rows, seeded."""
    rng = np.random.default_rng(seed)
    chunk = chunk or max(1, CHUNK_ELEMENTS // max(1, num_images))
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        draws = rng.integers(0, num_images, size=(rows, num_images))
        flat = (draws + np.arange(rows)[:, None] * num_images).ravel()
        yield (
            np.bincount(flat, minlength=rows * num_images)
            .reshape(rows, num_images)
            .astype(np.float64)
        )


def count_matrix(
    image: np.ndarray, concept: np.ndarray, values: np.ndarray, num_images: int, num_concepts: int
) -> sparse.csc_matrix:
    """Sparse (N, C) float64 matrix of per-(image, concept) counts (pairs given as three arrays)."""
    values = np.asarray(values, dtype=np.float64)
    shape = (num_images, num_concepts)
    return sparse.csc_matrix((values, (np.asarray(image), np.asarray(concept))), shape=shape)


def resampled_sums(matrices: dict, weights: np.ndarray) -> dict[str, np.ndarray]:
    """(b, C) sums of every (N, C) count matrix (sparse or dense) under (b, N) image weights."""
    return {
        name: np.asarray(weights @ matrix, dtype=np.float64) for name, matrix in matrices.items()
    }


def bootstrap(
    matrices: dict,
    scores: dict[str, Callable[[dict[str, np.ndarray]], np.ndarray]],
    num_images: int,
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """(B, C) resampled values of every score; ``scores[name](sums) -> (b, C)`` from the sums.

    ``matrices``: name -> (N, C) per-image counts (``count_matrix`` or a dense float64 array)."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in scores}
    for weights in resample_weights(num_images, resamples, seed):
        sums = resampled_sums(matrices, weights)
        for name, score in scores.items():
            parts[name].append(np.asarray(score(sums), dtype=np.float64))
    return {name: np.concatenate(values) for name, values in parts.items()}


def iou_of(intersection: str, union: str, absent: float = 0.0) -> Callable[[dict], np.ndarray]:
    """A score function: set IoU from the named sums; ``absent`` where the union is 0 (a concept
    none of whose images a resample drew: ``np.nan`` leaves it out of that resample)."""

    def score(sums: dict) -> np.ndarray:
        inter, union_ = sums[intersection], sums[union]
        return np.where(union_ > 0, inter / np.maximum(union_, 1e-12), absent)

    return score


def balanced_accuracy_of(prefix: str, absent: float | None = None) -> Callable[[dict], np.ndarray]:
    """A score function: (TPR + TNR) / 2 from sums ``<prefix>tp``, ``tn`` and ``pos``, ``neg``
    (one rate where the other class is absent, as metrics.accuracy); ``absent`` (if given) where
    there are no positives (a resample that drew none of the concept's images)."""

    def score(sums: dict) -> np.ndarray:
        pos, neg = sums["pos"], sums["neg"]
        tpr = sums[f"{prefix}tp"] / np.maximum(pos, 1e-12)
        tnr = sums[f"{prefix}tn"] / np.maximum(neg, 1e-12)
        both = (tpr + tnr) / 2
        value = np.where((pos > 0) & (neg > 0), both, np.where(pos > 0, tpr, tnr * (neg > 0)))
        return value if absent is None else np.where(pos > 0, value, absent)

    return score


def interval(samples: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval (lo, hi) of (B, …) resampled values per column, NaNs left out."""
    tail = (1.0 - level) / 2
    defined = np.isfinite(samples).any(0)
    filled = np.where(defined, samples, 0.0)  # all-NaN columns: NaN bounds, without a warning
    lo, hi = np.nanquantile(filled, [tail, 1.0 - tail], axis=0)
    return np.where(defined, lo, np.nan), np.where(defined, hi, np.nan)


def within_concept_permutation(concept: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """partner (P,): a random permutation of the pairs that maps each pair to one of its concept's."""
    base = np.argsort(concept, kind="stable")
    shuffled = np.argsort(concept + 0.5 * rng.random(len(concept)))  # random order within a concept
    partner = np.empty(len(concept), dtype=np.int64)
    partner[base] = shuffled
    return partner


def as_words(bits: np.ndarray) -> np.ndarray:
    """(P, words) uint64 view of bit-packed (P, bytes) rows, zero-padded to whole words (a
    popcount then sums 8× fewer entries; the padding adds no bits)."""
    bits = np.ascontiguousarray(bits, dtype=np.uint8)
    pad = -bits.shape[1] % 8
    if pad:
        bits = np.concatenate([bits, np.zeros((bits.shape[0], pad), np.uint8)], axis=1)
    return bits.view(np.uint64)


def packed_intersections(pred_bits: np.ndarray, mask_bits: np.ndarray, partner: np.ndarray):
    """|pred[p] ∩ mask[partner[p]]| for bit-packed (P, bytes or uint64 words) rows, in chunks."""
    out = np.empty(len(partner), dtype=np.int64)
    step = max(1, (1 << 26) // max(1, pred_bits.shape[1]))
    for start in range(0, len(partner), step):
        stop = min(len(partner), start + step)
        both = pred_bits[start:stop] & mask_bits[partner[start:stop]]
        out[start:stop] = np.bitwise_count(both).sum(1, dtype=np.int64)
    return out


def null_intersections(
    pred_bits: np.ndarray,
    mask_bits: np.ndarray,
    group: np.ndarray,
    num_groups: int,
    draws: int,
    seed: int,
) -> np.ndarray:
    """(draws, G) summed |M ∩ L'| per group, the true masks permuted among each group's rows.

    pred_bits, mask_bits: (P, bytes) np.packbits rows of the predicted and true masks; group (P,)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((draws, num_groups))
    pred_bits, mask_bits = as_words(pred_bits), as_words(mask_bits)
    for d in range(draws):
        inter = packed_intersections(pred_bits, mask_bits, within_concept_permutation(group, rng))
        out[d] = np.bincount(group, weights=inter, minlength=num_groups)
    return out


def shuffled_null_iou(
    pred_bits: np.ndarray,
    mask_bits: np.ndarray,
    concept: np.ndarray,
    num_concepts: int,
    draws: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """(draws, C) set IoU with each concept's masks permuted among its own pairs.

    pred_bits, mask_bits: (P, bytes) np.packbits rows of the predicted and true masks of the
    validation pairs; concept (P,). Sizes |M| and |L| are kept, so a concept's Σ|M ∪ L'| is
    Σ|M| + Σ|L| − Σ|M ∩ L'|.
    """
    inter = null_intersections(pred_bits, mask_bits, concept, num_concepts, draws, seed)
    pred_area = np.bitwise_count(pred_bits).sum(1, dtype=np.int64)
    mask_area = np.bitwise_count(mask_bits).sum(1, dtype=np.int64)
    areas = np.bincount(concept, weights=pred_area + mask_area, minlength=num_concepts)
    union = areas[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def permuted_labels(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, C) labels with every concept's column permuted across images independently."""
    return rng.permuted(labels, axis=0)
