"""The counts behind compositional explanations (docs/compexp.md; search in probes.compexp).

For unit k and a formula f of labels, IoU(k, f) = Σ_x |A_k ∩ M_f| / Σ_x |A_k ∪ M_f| over every
labelled image, A_k the unit's thresholded upsampled map (as in ``probes.netdissect``), M_f the
formula's mask (image-level labels cover the whole image). Beam search: the ``first_beam`` best
labels (the package ``compositional-explanations`` uses 2·beam), then, ``length − 1`` times,
every formula of the newest length in the beam is extended by every label not in it with OR,
AND and AND NOT, and the beam keeps its best ``beam`` formulas of any length (equivalent
formulas, e.g. ``(a OR b)`` and ``(b OR a)``, once).

Nothing is evaluated formula by formula. One pass over the data per round counts, for every
beam formula g of every unit (all units at once), |A_k ∧ g|, |g| and the label histograms
H_A[g, c] = |A_k ∧ g ∧ L_c| and H[g, c] = |g ∧ L_c|; with |A_k ∧ L_c| and |L_c| from the first
pass (g = everything), every candidate follows:

    g OR c:      |A ∧ (g ∨ c)| = |A∧g| + |A∧c| − H_A,   |g ∨ c| = |g| + |c| − H
    g AND c:     H_A,                                   H
    g AND NOT c: |A∧g| − H_A,                           |g| − H

and IoU = |A ∧ f| / (|A| + |f| − |A ∧ f|). Masks stay sparse (a mask per (image, label) pair
present) and formula masks exist for one chunk of images at a time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from net2vec.probes.formulas import Formula
from net2vec.probes.netdissect import DissectionLabels, image_chunks
from net2vec.probes.single_filter import CHUNK_BYTES, pair_intersections
from net2vec.probes.upsample import upsample


@dataclass
class FormulaCounts:
    """Sums over the data for B formulas per unit: |A|, |A∧g|, |g| and the label histograms."""

    active: torch.Tensor  # (K,)
    inter: torch.Tensor  # (K, B)
    area: torch.Tensor  # (K, B)
    label_inter: torch.Tensor  # (K, B, C) |A ∧ g ∧ L_c|
    label_area: torch.Tensor  # (K, B, C) |g ∧ L_c|


def _formula_masks(slots: torch.Tensor, ops: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """(n, F, P) masks of F left-deep formulas; slots (F, L) index ``dense`` (n, S, P), whose
    slot 0 is all ones; ops (F, L−1): 0 OR, 1 AND, 2 AND NOT, −1 none."""
    masks = dense[:, slots[:, 0]]
    for j in range(1, slots.shape[1]):
        term, op = dense[:, slots[:, j]], ops[None, :, j - 1, None]
        masks = torch.where(op == 0, masks | term, masks)
        masks = torch.where(op == 1, masks & term, masks)
        masks = torch.where(op == 2, masks & ~term, masks)
    return masks


def _label_slots(chunk: tuple, used: torch.Tensor, num_labels: int, pixels: int) -> torch.Tensor:
    """(n, 1 + U, P) bool masks of the chunk's images for the labels in ``used`` (slot 0: ones)."""
    acts, masks, pair_image, pair_concept, (whole_image, whole_concept) = chunk
    device = acts.device
    lookup = torch.full((num_labels,), -1, dtype=torch.long, device=device)
    lookup[used] = torch.arange(1, len(used) + 1, device=device)
    dense = torch.zeros(acts.shape[0], len(used) + 1, pixels, dtype=torch.bool, device=device)
    dense[:, 0] = True
    slot = lookup[pair_concept.to(device)]
    keep = slot > 0
    dense[pair_image[keep], slot[keep]] |= masks[keep].to(device) > 0.5
    whole_slot = lookup[torch.as_tensor(whole_concept, device=device)]
    keep = whole_slot > 0
    dense[torch.as_tensor(whole_image, device=device)[keep], whole_slot[keep]] = True
    return dense


@dataclass
class _Sums:
    """Running sums: per unit |A|, |A∧g| and H_A; per distinct formula |g| and H."""

    active: torch.Tensor  # (K,)
    inter: torch.Tensor  # (K, B)
    label_inter: torch.Tensor  # (K, B, C)
    area: torch.Tensor  # (F,)
    label_area: torch.Tensor  # (F, C)


def _count_chunk(
    sums: _Sums, chunk, formulas, index, used, mask_size, align_corners, thresholds, budget
):
    """Add one chunk of images: the distinct formulas' counts, then the units' (in blocks)."""
    acts, masks, pair_image, pair_concept, (whole_image, whole_concept) = chunk
    device, num_labels = acts.device, sums.label_area.shape[1]
    up = upsample(acts.float(), mask_size, align_corners).flatten(2)
    active = up > thresholds.to(device)[None, :, None]
    sums.active += active.sum((0, 2)).to(sums.active)
    n, pixels = active.shape[0], up.shape[2]
    whole_image = torch.as_tensor(whole_image, dtype=torch.long, device=device)
    concept = torch.cat([pair_concept.to(device), torch.as_tensor(whole_concept, device=device)])
    onehot = torch.zeros(num_labels, len(concept), dtype=torch.float64, device=device)
    onehot[concept, torch.arange(len(concept), device=device)] = 1.0
    masks = masks.to(device)

    def histogram(binary: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, M, P) bool -> label histogram (M, C) and totals (M,) over the chunk."""
        flat = binary.float()
        totals = flat.sum(2)
        hist = torch.cat([pair_intersections(flat, masks, pair_image), totals[whole_image]])
        return (onehot @ hist.double()).t(), totals.sum(0).double()

    formula = _formula_masks(*formulas, _label_slots(chunk, used, num_labels, pixels))
    step = max(1, budget // (8 * n * pixels))
    for start in range(0, formula.shape[1], step):
        hist, totals = histogram(formula[:, start : start + step])
        sums.label_area[start : start + step] += hist.to(sums.label_area)
        sums.area[start : start + step] += totals.to(sums.area)
    width = index.shape[1]
    for start in range(0, index.shape[0], max(1, step // width)):
        units = slice(start, start + max(1, step // width))
        both = active[:, units, None] & formula[:, index[units]]  # (n, k, B, P)
        hist, totals = histogram(both.flatten(1, 2))
        sums.label_inter[units] += hist.reshape(both.shape[1], width, -1).to(sums.label_inter)
        sums.inter[units] += totals.reshape(both.shape[1], width).to(sums.inter)


def _zeros(units: int, width: int, formulas: int, labels: int, device) -> _Sums:
    def zeros(*shape):
        return torch.zeros(*shape, dtype=torch.float64, device=device)

    return _Sums(
        zeros(units), zeros(units, width), zeros(units, width, labels),
        zeros(formulas), zeros(formulas, labels),
    )  # fmt: skip


def _distinct(formulas: list[list[Formula]]) -> tuple[list[Formula], torch.Tensor]:
    """The distinct formulas (the first is every pixel) and each unit's slots into them."""
    width = max(1, max(len(f) for f in formulas))
    distinct: dict[Formula, int] = {Formula(()): 0}
    index = torch.zeros((len(formulas), width), dtype=torch.long)
    for k, unit_formulas in enumerate(formulas):
        for b, g in enumerate(unit_formulas):
            index[k, b] = distinct.setdefault(g, len(distinct))
    return list(distinct), index


def count_formulas(
    batches: Iterable[dict],
    formulas: list[list[Formula]],
    thresholds: np.ndarray,
    labels: DissectionLabels,
    mask_size: tuple[int, int],
    align_corners: bool = False,
    chunk_bytes: int = CHUNK_BYTES,
) -> FormulaCounts:
    """One pass: the counts of every unit's formulas (``formulas[k]``, padded with the formula
    of no labels, which means every pixel). Formulas shared by units are counted once."""
    num_units, num_labels = len(formulas), len(labels.category)
    table, index = _distinct(formulas)
    depth = max(max(len(g) for g in table), 1)
    slots = torch.full((len(table), depth), -1, dtype=torch.long)
    ops = torch.full((len(table), max(depth - 1, 1)), -1, dtype=torch.long)
    for f, g in enumerate(table):
        slots[f, : len(g)] = torch.tensor(g.labels, dtype=torch.long)
        ops[f, : len(g.ops)] = torch.tensor(g.ops, dtype=torch.long)
    used = torch.unique(slots[slots >= 0])
    remap = torch.zeros(num_labels + 1, dtype=torch.long)
    remap[used + 1] = torch.arange(1, len(used) + 1)
    slots = remap[slots + 1]  # slot 0: every pixel (no label, or padding)
    thresholds_t = torch.as_tensor(np.asarray(thresholds), dtype=torch.float32)
    sums, width = None, index.shape[1]
    for chunk in image_chunks(batches, labels, num_units, max(chunk_bytes // width, 1)):
        device = chunk[0].device
        if sums is None:
            sums = _zeros(num_units, width, len(table), num_labels, device)
        _count_chunk(
            sums, chunk, (slots.to(device), ops.to(device)), index.to(device), used.to(device),
            tuple(mask_size), align_corners, thresholds_t, chunk_bytes,
        )  # fmt: skip
    if sums is None:
        raise ValueError("compexp: no labelled images to count")
    index = index.to(sums.area.device)
    return FormulaCounts(
        sums.active, sums.inter, sums.area[index], sums.label_inter, sums.label_area[index]
    )


def candidate_iou(counts: FormulaCounts, atom_inter: torch.Tensor, atom_area: torch.Tensor):
    """(K, B, C, 3) IoU of ``g op c`` for every beam formula g, label c and op (OR, AND,
    AND NOT), from the counts of the beam and the atoms' |A∧L_c| (K, C) and |L_c| (C,)."""
    hist_inter, hist_area = counts.label_inter, counts.label_area
    g_inter, g_area = counts.inter[..., None], counts.area[..., None]
    inter = torch.stack(
        [g_inter + atom_inter[:, None] - hist_inter, hist_inter, g_inter - hist_inter], -1
    )
    area = torch.stack([g_area + atom_area - hist_area, hist_area, g_area - hist_area], -1)
    union = counts.active[:, None, None, None] + area - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))
