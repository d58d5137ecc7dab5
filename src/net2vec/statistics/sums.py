"""A run's per-image evidence as sums: its observed scores, bootstrap resamples and jackknife.

Every validation score is a function of per-concept sums over images (docs/statistics.md):

- segmentation: set IoU = Σ_i |M ∩ L| / Σ_i |M ∪ L| over the concept's (image, concept) pairs;
- classification: balanced accuracy from the summed tp, tn and the positives / negatives.

:class:`EvidenceSums` holds the per-entry terms (one entry per pair for seg, per (image,
concept) for cls) as integer counts (uint8 for cls: N × C per head), sums them in float64 and
evaluates the scores from the sums three ways: on all images (the
observed score written to results.csv), on bootstrap-reweighted images and with one image left
out (the jackknife). One path and one precision, so a null draw or a resample that reproduces the
observation gives exactly the observed value.
"""

from __future__ import annotations

import numpy as np

from net2vec.statistics import bootstrap as bs


class EvidenceSums:
    """Per-entry terms of every score of one run (``probes.evidence`` layout), summed in float64."""

    def __init__(self, task: str, evidence: dict, num_concepts: int) -> None:
        self.task, self.num_concepts = task, int(num_concepts)
        self.values: dict[str, np.ndarray] = {}
        self.scores: dict = {}
        if task == "seg":
            _, self.image = np.unique(evidence["image"], return_inverse=True)
            self.image = self.image.reshape(-1)
            self.concept = np.asarray(evidence["concept"], dtype=np.int64)
            self.num_images = int(self.image.max(initial=-1)) + 1
            for name, (inter, union) in evidence["counts"].items():
                self.values[f"{name}/inter"] = np.asarray(inter, dtype=np.int64)
                self.values[f"{name}/union"] = np.asarray(union, dtype=np.int64)
                self.scores[name] = (f"{name}/inter", f"{name}/union")
        else:
            labels = np.asarray(evidence["labels"], dtype=bool)
            self.num_images = labels.shape[0]
            self.image = np.repeat(np.arange(self.num_images), labels.shape[1])
            self.concept = np.tile(np.arange(labels.shape[1]), self.num_images)
            self.values["pos"] = labels.ravel().astype(np.uint8)
            self.values["neg"] = (~labels).ravel().astype(np.uint8)
            for name, pred in evidence["preds"].items():
                pred = np.asarray(pred, dtype=bool)
                self.values[f"{name}/tp"] = (pred & labels).ravel().astype(np.uint8)
                self.values[f"{name}/tn"] = (~pred & ~labels).ravel().astype(np.uint8)
                self.scores[name] = f"{name}/"

    @property
    def names(self) -> list[str]:
        """The score columns the evidence covers."""
        return list(self.scores)

    def score(self, name: str, sums: dict, absent: float | None) -> np.ndarray:
        """Score ``name`` from sums (any shape); ``absent`` where the concept has no terms."""
        if self.task == "seg":
            inter, union = self.scores[name]
            fallback = 0.0 if absent is None else absent
            return bs.iou_of(inter, union, absent=fallback)(sums)
        return bs.balanced_accuracy_of(self.scores[name], absent=absent)(sums)

    def totals(self) -> dict[str, np.ndarray]:
        """(C,) sums of every term over all images."""
        return {
            key: np.bincount(self.concept, values, minlength=self.num_concepts)
            for key, values in self.values.items()
        }

    def observed(self) -> dict[str, np.ndarray]:
        """(C,) float64 score of every column on all images (0 set IoU without pairs, as torchmetrics)."""
        totals = self.totals()
        return {name: self.score(name, totals, None) for name in self.scores}

    def resamples(self, resamples: int, seed: int) -> dict[str, np.ndarray]:
        """(B, C) float64 bootstrap values of every column (NaN: a resample without the concept)."""
        if self.num_images == 0 or resamples == 0:
            return {}
        shape = (self.num_images, self.num_concepts)
        matrices = {}
        for key, values in self.values.items():
            if self.task == "seg":
                matrices[key] = bs.count_matrix(self.image, self.concept, values, *shape)
            else:
                matrices[key] = values.reshape(shape)
        scores = {name: self._resampled(name) for name in self.scores}
        return bs.bootstrap(matrices, scores, self.num_images, resamples, seed)

    def _resampled(self, name: str):
        return lambda sums: self.score(name, sums, np.nan)

    def leave_one_out(self, name: str) -> np.ndarray:
        """(E,) θ₍ᵢ₎ of every entry (image i, concept c): the score with image i's terms removed."""
        totals = self.totals()
        sums = {
            key: totals[key][self.concept] - values.astype(np.float64)
            for key, values in self.values.items()
        }
        return self.score(name, sums, np.nan)
