"""Per-image evidence behind a run's validation scores, for intervals and nulls (net2vec.statistics.scores).

Every validation score is a sum over images, so keeping the per-image terms lets the bootstrap
redraw the images without touching the probes again:

- segmentation: for every validation (image, concept) pair, |M ∩ L| and |M ∪ L| of the best single
  filter and of every probe head (all filters, each top-F), plus the bit-packed predicted masks of
  the single filter and of the all-filter probe and the true masks (for the shuffled-mask null);
- classification: the (N_val, C) labels and every head's (N_val, C) predictions.

One extra pass over the validation batches, with the probes' own ``predict`` (the decision they
are scored by), so the sums reproduce the results.csv scores exactly.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from net2vec.probes.upsample import binarise, upsample
from net2vec.statistics.iou import pair_counts

NULL_SCORES = ("single_iou_val", "iou_val")  # the scores whose predicted masks are kept


def _bits(mask: torch.Tensor) -> np.ndarray:
    return np.packbits(mask.reshape(mask.shape[0], -1).cpu().numpy(), axis=1)


def seg_evidence(
    batches, best: np.ndarray, heads: list[tuple], mask_size, align_corners: bool
) -> dict:
    """Per-pair counts of the best single filter and every head over validation batches.

    best: (C,) k* per concept; heads: [(probe module, [column per head])] with ``module.predict``.
    Returns image, concept (P,), counts {column: (intersection, union)}, bits {column: packed
    prediction} for ``NULL_SCORES`` and mask_bits, all sorted by (image, concept).
    """
    best_t = torch.as_tensor(np.asarray(best), dtype=torch.long)
    parts: dict[str, list] = defaultdict(list)
    with torch.no_grad():
        for batch in batches:
            pair_image, concept = batch["pair_image"].long(), batch["pair_concept"].long()
            if not len(concept):
                continue
            target = batch["masks"] > 0.5
            maps = batch["maps"][pair_image, best_t.to(concept.device)[concept]]
            preds = {"single_iou_val": binarise(upsample(maps.float(), mask_size, align_corners))}
            for module, names in heads:
                module.to(target.device).eval()
                preds.update(zip(names, module.predict(batch)))
            for name, pred in preds.items():
                inter, union = pair_counts(pred, target)
                parts[f"{name}/inter"].append(inter.cpu().numpy())
                parts[f"{name}/union"].append(union.cpu().numpy())
                if name in NULL_SCORES:
                    parts[f"{name}/bits"].append(_bits(pred))
            parts["mask_bits"].append(_bits(target))
            parts["image"].append(batch["image_index"].long().cpu()[pair_image.cpu()].numpy())
            parts["concept"].append(concept.cpu().numpy())
    joined = {key: np.concatenate(values) for key, values in parts.items()}
    order = np.lexsort((joined["concept"], joined["image"]))
    joined = {key: values[order] for key, values in joined.items()}
    names = [key[: -len("/inter")] for key in joined if key.endswith("/inter")]
    return {
        "image": joined["image"],
        "concept": joined["concept"],
        "counts": {n: (joined[f"{n}/inter"], joined[f"{n}/union"]) for n in names},
        "bits": {n: joined[f"{n}/bits"] for n in names if f"{n}/bits" in joined},
        "mask_bits": joined["mask_bits"],
    }


def restrict_pairs(evidence: dict, remap: np.ndarray) -> dict:
    """Segmentation evidence with concept indices mapped by ``remap`` (−1: dropped)."""
    keep = remap[evidence["concept"]] >= 0
    return {
        "image": evidence["image"][keep],
        "concept": remap[evidence["concept"][keep]],
        "counts": {n: (i[keep], u[keep]) for n, (i, u) in evidence["counts"].items()},
        "bits": {n: bits[keep] for n, bits in evidence["bits"].items()},
        "mask_bits": evidence["mask_bits"][keep],
    }


def pair_ious(evidence: dict) -> dict[str, np.ndarray]:
    """IoU_ind of the best filter and of the all-filter probe on every validation pair (the
    per_image arrays of embeddings.h5, Fig. 7), from the evidence counts."""

    def ratio(name: str) -> np.ndarray:
        inter, union = (v.astype(np.float64) for v in evidence["counts"][name])
        return np.where(union > 0, inter / np.maximum(union, 1), 0.0).astype(np.float32)

    return {
        "image": evidence["image"].astype(np.int64),
        "concept": evidence["concept"].astype(np.int64),
        "single_iou": ratio("single_iou_val"),
        "all_iou": ratio("iou_val"),
    }


def cls_evidence(batch: dict, heads: list[tuple]) -> dict:
    """Labels (N, C) bool and every head's predictions on one batch of all validation images."""
    preds = {}
    with torch.no_grad():
        for module, names in heads:
            module.to(batch["features"].device).eval()
            preds.update((n, p.cpu().numpy()) for n, p in zip(names, module.predict(batch)))
    return {"labels": (batch["labels"] > 0.5).cpu().numpy(), "preds": preds}
