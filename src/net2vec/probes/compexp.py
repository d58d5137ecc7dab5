"""Compositional explanations (Mu & Andreas 2020; docs/compexp.md): each unit's best formula.

Beam search over formulas of labels, every unit at once, each round one pass of counts
(``probes.compexp_counts``): start from each unit's ``first_beam`` best labels with IoU > 0
(default 2·beam, as the package ``compositional-explanations``), extend every beam formula of
the newest length by every label not in it with OR, AND and AND NOT, keep the ``beam`` best
formulas of any length (old ones first on ties, equivalent formulas once), ``length − 1``
times; the unit's formula is the best of the final beam. With ``complexity_penalty`` p the beam
ranks by IoU · p^(length−1) (compexp's option); the IoU reported is always the plain IoU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from net2vec.probes.compexp_counts import candidate_iou, count_formulas
from net2vec.probes.formulas import Formula
from net2vec.probes.netdissect import DissectionLabels
from net2vec.probes.single_filter import CHUNK_BYTES

Beam = list[tuple[float, float, Formula]]  # (score, IoU, formula), best first


@dataclass
class CompExpResult:
    """Per unit the final beam (best first; empty when no label overlaps the unit), the best IoU
    found at each formula length (K, length) and every label's IoU (K, C)."""

    beams: list[Beam]
    best_by_length: np.ndarray
    atom_iou: np.ndarray

    def best(self, unit: int) -> tuple[Formula | None, float, float]:
        """(formula, IoU, score) of the unit's explanation; (None, 0, 0) without one."""
        if not self.beams[unit]:
            return None, 0.0, 0.0
        score, iou, formula = self.beams[unit][0]
        return formula, iou, score


def _atom_beams(atom_iou: np.ndarray, width: int) -> list[Beam]:
    beams = []
    for row in atom_iou:
        order = np.argsort(-row, kind="stable")[:width]
        beams.append(
            [(float(row[c]), float(row[c]), Formula((int(c),))) for c in order if row[c] > 0]
        )
    return beams


def _valid(expand: list[list[Formula]], width: int, num_labels: int) -> torch.Tensor:
    """(K, B, C): slot b of unit k holds a formula and label c is not in it."""
    valid = torch.zeros(len(expand), width, num_labels, dtype=torch.bool)
    for k, formulas in enumerate(expand):
        valid[k, : len(formulas)] = True
        for b, formula in enumerate(formulas):
            valid[k, b, list(formula.labels)] = False
    return valid


def _merge(beam: Beam, candidates: Beam, size: int) -> Beam:
    """The best ``size`` of old beam and candidates; stable (old first on ties), no duplicates."""
    merged, seen = [], set()
    for entry in sorted(beam + candidates, key=lambda e: -e[0]):
        key = entry[2].key()
        if key not in seen:
            seen.add(key)
            merged.append(entry)
    return merged[:size]


def _extend(beams: list[Beam], expand, scores, ious, valid, beam: int, keep: int) -> list[Beam]:
    """Each unit's new beam from the top ``keep`` candidates (enough to hold ``beam`` classes)."""
    flat = torch.where(valid[..., None], scores, torch.full_like(scores, -torch.inf)).flatten(1)
    top = flat.topk(min(keep, flat.shape[1]), dim=1)
    values, index = top.values.cpu().numpy(), top.indices.cpu().numpy()
    iou_flat = ious.flatten(1).gather(1, top.indices).cpu().numpy()
    shape = scores.shape[1:]
    out = []
    for k, old in enumerate(beams):
        b, c, op = np.unravel_index(index[k], shape)
        candidates = [
            (float(values[k, i]), float(iou_flat[k, i]), expand[k][b[i]].extend(op[i], c[i]))
            for i in range(len(b))
            if np.isfinite(values[k, i])
        ]
        out.append(_merge(old, candidates, beam))
    return out


def explain_units(
    batches: Callable[[int], Iterable[dict]],
    thresholds: np.ndarray,
    labels: DissectionLabels,
    mask_size: tuple[int, int],
    length: int = 3,
    beam: int = 5,
    complexity_penalty: float | None = None,
    first_beam: int | None = None,
    align_corners: bool = False,
    chunk_bytes: int = CHUNK_BYTES,
) -> CompExpResult:
    """Every unit's formula. ``batches(round)`` gives a fresh pass over the labelled images
    (raw ``activations``, pairs, ``image_index``; both splits); ``length`` passes at most."""
    if length < 1 or beam < 1:
        raise ValueError(f"compexp: length={length} and beam={beam} must be >= 1")
    if complexity_penalty is not None and not 0 < complexity_penalty <= 1:
        raise ValueError(f"compexp: complexity_penalty={complexity_penalty} must be in (0, 1]")

    def count(round_: int, formulas):
        return count_formulas(
            batches(round_), formulas, thresholds, labels, mask_size, align_corners, chunk_bytes
        )

    num_units, num_labels = len(thresholds), len(labels.category)
    first = count(0, [[Formula(())] for _ in range(num_units)])
    atom_inter, atom_area = first.label_inter[:, 0], first.label_area[0, 0]
    union = first.active[:, None] + atom_area - atom_inter
    atom_iou = torch.where(union > 0, atom_inter / union.clamp(min=1e-12), 0.0).cpu().numpy()
    beams = _atom_beams(atom_iou, 2 * beam if first_beam is None else int(first_beam))
    best_by_length = np.zeros((num_units, length))
    best_by_length[:, 0] = atom_iou.max(1, initial=0.0)
    for size in range(1, length):
        expand = [[f for _, _, f in unit if len(f) == size] for unit in beams]
        if not any(expand):
            break
        counts = count(size, expand)
        ious = candidate_iou(counts, atom_inter, atom_area)
        valid = _valid(expand, ious.shape[1], num_labels).to(ious.device)
        best_by_length[:, size] = torch.where(valid[..., None], ious, 0.0).amax((1, 2, 3)).cpu()
        scores = ious * complexity_penalty**size if complexity_penalty else ious
        beams = _extend(beams, expand, scores, ious, valid, beam, beam * (size + 1))
    return CompExpResult([unit[:beam] for unit in beams], best_by_length, atom_iou)
