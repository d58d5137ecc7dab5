"""Each NetDissect unit's top IoU against a shuffled-mask null (docs/method.md §6, §7).

After the tally, one more pass over the same images adds up, for each unit k and its top label c,
Σ_x |A_k(x) ∩ L_c(x')| under D draws of a pairing x → x' that

- permutes c's masks among the images that carry c (same sizes), for a pixel-level label, or
- permutes which of the tallied images carry c (same count), for an image-level label (scene,
  texture; a whole-image mask permuted among its own images would change nothing),

and recomputes IoU(k, c) with the denominator's other terms, Σ|A_k|·[x counts for cat(c)] +
Σ|L_c|, held at their observed values (from the tally). That is exact for pixel-level labels under
``union=any_label`` and an approximation otherwise (which images count for the category can move).
Observed and null IoU are computed from the same float64 counts; p_null is the tie-safe
``significance.empirical_p`` (a draw equal to the observation counts as not below), q_null its
Benjamini–Hochberg q-value across the units, and a unit *beats the null* when q_null ≤ ``fdr``.

Memory is bounded (docs/benchmarks.md): the masks of each top label are held once, bit-packed
(not once per unit), the draws are streamed through the image chunks, and every temporary is
bounded by the chunk budget. All units whose top label is c share one permutation per draw.
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

BITS = torch.arange(7, -1, -1, dtype=torch.uint8)  # np.packbits order: most significant first
READ_PAIRS = 4096  # masks read from the concept store at once


@dataclass
class UnitNull:
    """Per unit: mean null IoU of its top label over the draws, p_null, q_null (BH across units)
    and whether it beats the null (q_null ≤ fdr)."""

    null_iou: np.ndarray  # (K,)
    p_null: np.ndarray  # (K,)
    q_null: np.ndarray  # (K,)
    significant: np.ndarray  # (K,) bool, q_null <= fdr
    draws: int
    seed: int
    fdr: float = 0.05


@dataclass
class TopLabels:
    """What the draws permute, gathered before the pass: the masks of every top label's pairs
    once, bit-packed in stream order, and which tallied images carry each image-level top label."""

    masks: np.ndarray  # (P', B) uint8 packed masks of the pairs whose label is some unit's top
    label: np.ndarray  # (P',) their labels
    whole: np.ndarray  # (L,) the image-level top labels
    carries: np.ndarray  # (N, L) bool, tallied image (stream order) carries whole[l]


def _whole_tops(top: np.ndarray, labels: DissectionLabels) -> np.ndarray:
    return np.unique(top[np.isin(top, np.asarray(labels.whole_concept))])


def _carries(position, concept, num_images: int, whole: np.ndarray) -> np.ndarray:
    carries = np.zeros((num_images, len(whole)), bool)
    hit = np.isin(concept, whole)
    carries[position[hit], np.searchsorted(whole, concept[hit])] = True
    return carries


def top_labels_from_chunks(chunks, top: np.ndarray, labels: DissectionLabels) -> TopLabels:
    """``TopLabels`` from one pass over ``image_chunks`` (reads the masks only)."""
    packed, label, positions, concepts, seen = [], [], [], [], 0
    for acts, masks, _, pair_concept, (position, concept) in chunks:
        keep = np.isin(pair_concept.cpu().numpy(), top)
        packed.append(np.packbits(masks.cpu().numpy()[keep] > 0.5, axis=1))
        label.append(pair_concept.cpu().numpy()[keep])
        positions.append(np.asarray(position) + seen)
        concepts.append(np.asarray(concept))
        seen += acts.shape[0]
    whole = _whole_tops(top, labels)
    carries = _carries(np.concatenate(positions), np.concatenate(concepts), seen, whole)
    return TopLabels(np.concatenate(packed), np.concatenate(label), whole, carries)


def top_labels_from_store(concepts, top: np.ndarray, labels: DissectionLabels) -> TopLabels:
    """``TopLabels`` read from a concept store view, in the order ``unit_null_layer`` streams
    (``labelled_rows``, each row's pairs in store order)."""
    rows = labelled_rows(concepts)
    offsets = np.asarray(concepts.pair_offsets, np.int64)
    starts, counts = offsets[rows], offsets[rows + 1] - offsets[rows]
    pairs = np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(counts.sum())
    pairs = pairs[np.isin(np.asarray(concepts.pair_concept)[pairs], top)]
    packed = []
    for start in range(0, len(pairs), READ_PAIRS):
        block = concepts.masks(pairs[start : start + READ_PAIRS])
        packed.append(np.packbits(block.reshape(len(block), -1), axis=1))
    whole = _whole_tops(top, labels)
    carries = _carries(*labels.whole_labels(rows), len(rows), whole)
    sh, sw = concepts.mask_size
    empty = np.zeros((0, (sh * sw + 7) // 8), np.uint8)
    label = np.asarray(concepts.pair_concept)[pairs].astype(np.int64)
    return TopLabels(np.concatenate(packed) if packed else empty, label, whole, carries)


class NullSums:
    """Running (D+1, K) float64 Σ|A_k ∩ L'| of each unit's top label: row 0 observed, then draws."""

    def __init__(self, top: np.ndarray, evidence: TopLabels, draws: int, seed: int, device):
        rng = np.random.default_rng(seed)
        self.top, self.evidence, self.device = np.asarray(top), evidence, device
        self.partner = np.stack(
            [np.arange(len(evidence.label))]
            + [bs.within_concept_permutation(evidence.label, rng) for _ in range(draws)]
        )  # (D+1, P'): the pair whose mask pair j gets under each draw (row 0: its own)
        self.carried = [np.nonzero(evidence.carries)]  # per draw: (image, whole label), by image
        self.carried += [
            np.nonzero(bs.permuted_labels(evidence.carries, rng)) for _ in range(draws)
        ]
        self.units = {
            int(c): torch.as_tensor(np.flatnonzero(top == c), device=device) for c in np.unique(top)
        }
        self.whole_units = np.flatnonzero(np.isin(top, evidence.whole))
        self.whole_label = torch.as_tensor(
            np.searchsorted(evidence.whole, top[self.whole_units]), device=device
        )
        self.sums = torch.zeros(draws + 1, len(top), dtype=torch.float64, device=device)
        self.pairs_seen = self.images_seen = 0

    def add(self, active: torch.Tensor, pair_image, pair_concept, chunk_bytes: int) -> None:
        """A chunk's A_k(x): (n, K, S) bool, and its pairs (image in chunk, concept)."""
        concept = pair_concept.cpu().numpy()
        keep = np.flatnonzero(np.isin(concept, self.top))
        index = self.pairs_seen + np.arange(len(keep))
        if not np.array_equal(self.evidence.label[index], concept[keep]):
            raise ValueError("unit null: the chunks differ from the ones the top labels came from")
        self.pairs_seen += len(keep)
        image = pair_image[torch.as_tensor(keep, device=pair_image.device)]
        for c in np.unique(concept[keep]):
            rows = np.flatnonzero(concept[keep] == c)
            units = self.units[int(c)]
            maps = active[image[torch.as_tensor(rows, device=image.device)][:, None], units[None]]
            self._pixel_label(maps.float(), index[rows], units, chunk_bytes)
        self._whole_labels(active)
        self.images_seen += active.shape[0]

    def _pixel_label(self, maps, index, units, chunk_bytes: int) -> None:
        """maps (m, U, S) of m pairs of one label: Σ|A ∩ L'| for the draws, in blocks of draws."""
        pairs, pixels = maps.shape[0], maps.shape[2]
        step = max(1, chunk_bytes // (4 * pairs * pixels))
        for start in range(0, self.partner.shape[0], step):
            partner = self.partner[start : start + step, index]  # (d, m)
            packed = torch.from_numpy(self.evidence.masks[partner.ravel()]).to(self.device)
            bits = (packed[:, :, None] >> BITS.to(self.device)) & 1
            masks = bits.flatten(1)[:, :pixels].view(*partner.shape, pixels).float()
            inter = torch.bmm(masks.transpose(0, 1), maps.transpose(1, 2))  # (m, d, U)
            self.sums[start : start + step, units] += inter.double().sum(0)

    def _whole_labels(self, active: torch.Tensor) -> None:
        """|A_k(x)| of the chunk's images where (the draw says) x carries k's image-level label."""
        if not len(self.whole_units):
            return
        n, first = active.shape[0], self.images_seen
        units = torch.as_tensor(self.whole_units, device=self.device)
        counts = active[:, units].sum(2, dtype=torch.float64)  # (n, U)
        carried = torch.zeros(len(self.carried), n, len(self.evidence.whole), dtype=torch.float64)
        for draw, (image, label) in enumerate(self.carried):
            lo, hi = np.searchsorted(image, [first, first + n])
            carried[draw, image[lo:hi] - first, label[lo:hi]] = 1.0
        carried = carried.to(self.device)[:, :, self.whole_label]  # (D+1, n, U)
        self.sums[:, units] += torch.einsum("xu,dxu->du", counts, carried)


def unit_null(
    chunks,
    result: NetDissectResult,
    evidence: TopLabels,
    thresholds,
    mask_size,
    align_corners: bool,
    draws: int,
    seed: int,
    fdr: float = 0.05,
    chunk_bytes: int = CHUNK_BYTES,
) -> UnitNull:
    """The null of each unit's top label from ``image_chunks`` over the tallied images (the same
    images, in the same order, as ``evidence``)."""
    sums = None
    thresholds_t = torch.as_tensor(np.asarray(thresholds), dtype=torch.float32)
    for acts, _masks, pair_image, pair_concept, _ in chunks:
        if sums is None:
            sums = NullSums(result.top_concept, evidence, draws, seed, acts.device)
        up = upsample(acts.float(), tuple(mask_size), align_corners).flatten(2)
        active = up > thresholds_t.to(acts.device)[None, :, None]
        del up
        sums.add(active, pair_image, pair_concept, chunk_bytes)
    if sums is None:
        raise ValueError("unit null: no images")
    counts = sums.sums.cpu().numpy()
    # denominator = Σ|A_k|·[x counts] + Σ|L_c|, held at its observed value; union = it − inter
    denominator = np.asarray(result.top_denominator, np.float64)

    def iou(inter):
        union = denominator - inter
        return np.where(union > 0, inter / np.maximum(union, 1e-300), 0.0)

    observed, null = iou(counts[0]), iou(counts[1:])
    p = significance.empirical_p(observed, null)
    q = significance.benjamini_hochberg(p)
    return UnitNull(null.mean(0), p, q, q <= fdr, draws, seed, float(fdr))


def unit_null_layer(
    datamodule,
    result: NetDissectResult,
    labels: DissectionLabels,
    thresholds: np.ndarray,
    draws: int,
    seed: int = 0,
    align_corners: bool = False,
    fdr: float = 0.05,
    progress: bool = False,
) -> UnitNull:
    """The null over every labelled image of ``datamodule`` (as ``dissect_layer`` reads them)."""
    concepts = datamodule.concepts
    evidence = top_labels_from_store(concepts, result.top_concept, labels)
    loader = datamodule.probe_dataloader(raw=True, rows=labelled_rows(concepts))
    batches = tqdm(
        loader, desc="NetDissect null", total=len(loader), mininterval=1, disable=not progress
    )
    chunks = image_chunks(batches, labels, len(thresholds), CHUNK_BYTES)
    return unit_null(
        chunks, result, evidence, thresholds, concepts.mask_size, align_corners, draws, seed, fdr
    )


def null_counts(result: NetDissectResult, null: UnitNull | None, require: bool) -> dict | None:
    """Detectors and unique concepts by IoU alone and by IoU with the null beaten (q ≤ fdr)."""
    if null is None:
        return None
    plain, both = result.detector, result.detector & null.significant
    top = result.top_concept
    return {
        "draws": null.draws,
        "seed": null.seed,
        "fdr": null.fdr,
        "require_significant": require,
        "detectors_iou": int(plain.sum()),
        "detectors_beating_null": int(both.sum()),
        "unique_concepts_iou": len(set(top[plain].tolist())),
        "unique_concepts_beating_null": len(set(top[both].tolist())),
    }
