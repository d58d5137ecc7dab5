"""Error bars for a run's scores: bootstrap intervals, paired comparisons and shuffled nulls.

``Statistics`` (``conf/stats/default.yaml``) turns the per-image evidence a task leaves in its
:class:`~net2vec.probes.outcome.ProbeOutcome` (``probes.evidence``) into

- ``<score>_lo`` / ``<score>_hi``: the bootstrap interval (over validation images) of every score
  column (single filter, all filters, each top-F);
- ``p_all_gt_single``: paired bootstrap P(all filters > single filter) (ties count ½);
- ``null_<metric>_val`` / ``p_null`` (learned probe) and ``single_null_<metric>_val`` /
  ``single_p_null`` (single filter): the mean score over ``null_draws`` shuffled-mask draws
  (segmentation; classification permutes each concept's labels across images) and the empirical
  p-value of the observed score against the draws;
- intervals of every category mean and of the share of concepts with all ≥ single (summary.json).

The method is in ``net2vec.statistics.bootstrap``; docs/statistics.md says how to read it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from net2vec.statistics import bootstrap as bs
from net2vec.statistics import significance

if TYPE_CHECKING:  # type only: the outcome is built by the probes, one layer up
    from net2vec.probes.outcome import ProbeOutcome

log = logging.getLogger(__name__)


def category_masks(categories: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(category, concept mask) for every category in sorted order, then ("all", everything)."""
    categories = np.asarray(categories)
    names = sorted(set(categories.tolist()))
    return [(c, categories == c) for c in names] + [("all", np.ones(len(categories), bool))]


def nanmean(values: np.ndarray) -> np.ndarray:
    """Row means over the finite entries (NaN where a row has none)."""
    finite = np.isfinite(values)
    total = np.where(finite, values, 0.0).sum(1)
    return np.where(finite.any(1), total / np.maximum(finite.sum(1), 1), np.nan)


class Statistics:
    """Bootstrap and null settings (plain values from the ``stats`` config group)."""

    def __init__(
        self, resamples: int = 1000, level: float = 0.95, null_draws: int = 5, seed: int = 0
    ) -> None:
        if not 0 < float(level) < 1:
            raise ValueError(f"stats.level={level}: expected a value in (0, 1), e.g. 0.95")
        if int(resamples) < 0 or int(null_draws) < 0:
            raise ValueError("stats.resamples and stats.null_draws must be >= 0 (0: skip)")
        self.resamples, self.level = int(resamples), float(level)
        self.null_draws, self.seed = int(null_draws), int(seed)

    def annotate(self, outcome: ProbeOutcome) -> None:
        """Fill the outcome's intervals, extra columns and summary statistics from its evidence."""
        if not getattr(outcome, "evidence", None):  # e.g. a NetDissect outcome
            return
        info: dict = {"resamples": self.resamples, "level": self.level, "seed": self.seed}
        if self.resamples:
            self._intervals(outcome, self.samples(outcome), info)
        if self.null_draws:
            self._nulls(outcome, info)
        outcome.statistics = info

    def samples(self, outcome: ProbeOutcome) -> dict[str, np.ndarray]:
        """(B, C) bootstrap values of every score column, all from the same resamples."""
        evidence, num_concepts = outcome.evidence, len(outcome.names)
        if outcome.task == "seg":
            _, image = np.unique(evidence["image"], return_inverse=True)
            num_images = int(image.max(initial=-1)) + 1
            matrices, scores = {}, {}
            for name, counts in evidence["counts"].items():
                for part, values in zip(("inter", "union"), counts):
                    matrices[f"{name}/{part}"] = bs.count_matrix(
                        image, evidence["concept"], values, num_images, num_concepts
                    )
                scores[name] = bs.iou_of(f"{name}/inter", f"{name}/union", absent=np.nan)
        else:
            labels = evidence["labels"]
            num_images = len(labels)
            matrices = {"pos": labels.astype(np.float32), "neg": (~labels).astype(np.float32)}
            scores = {}
            for name, pred in evidence["preds"].items():
                matrices[f"{name}/tp"] = (pred & labels).astype(np.float32)
                matrices[f"{name}/tn"] = (~pred & ~labels).astype(np.float32)
                scores[name] = bs.balanced_accuracy_of(f"{name}/", absent=np.nan)
        if num_images == 0:
            return {}
        return bs.bootstrap(matrices, scores, num_images, self.resamples, self.seed)

    def _intervals(self, outcome: ProbeOutcome, samples: dict, info: dict) -> None:
        for name, values in samples.items():
            outcome.intervals[name] = bs.interval(values, self.level)
        metric = outcome.metric
        single, full = samples.get(f"single_{metric}_val"), samples.get(f"{metric}_val")
        if single is None or full is None:
            return
        p = bs.p_greater(full, single)
        outcome.columns["p_all_gt_single"] = p
        both = np.isfinite(full) & np.isfinite(single)  # concepts the resample drew
        share = 100.0 * ((full >= single) & both).sum(1) / np.maximum(both.sum(1), 1)
        info["percent_all_ge_single_lo"], info["percent_all_ge_single_hi"] = map(
            float, bs.interval(share, self.level)
        )
        tail = (1.0 - self.level) / 2
        info["concepts_all_gt_single_significant"] = int((p >= 1.0 - tail).sum())
        info["concepts_single_gt_all_significant"] = int((p <= tail).sum())
        info["percent_all_gt_single_significant"] = float(100.0 * (p >= 1.0 - tail).mean())
        series = {"single": single, "all": full}
        series.update(
            {f"F{size}": samples.get(f"{metric}_val_F{size}") for size in outcome.subsets}
        )
        outcome.category_intervals = {
            category: {
                key: tuple(map(float, bs.interval(nanmean(values[:, chosen]), self.level)))
                for key, values in series.items()
                if values is not None and chosen.any()
            }
            for category, chosen in category_masks(outcome.categories)
        }

    def _nulls(self, outcome: ProbeOutcome, info: dict) -> None:
        metric = outcome.metric
        observed = {f"single_{metric}_val": outcome.single_val, f"{metric}_val": outcome.score_val}
        for k, (name, value) in enumerate(observed.items()):
            null = self.null_scores(outcome, name, np.random.default_rng([self.seed, 1, k]))
            if null is None:
                continue
            prefix = "single_" if name.startswith("single_") else ""
            outcome.columns[f"{prefix}null_{metric}_val"] = null.mean(0)
            outcome.columns[f"{prefix}p_null"] = significance.empirical_p(np.asarray(value), null)
            info[f"concepts_{prefix}above_every_null_draw"] = int((null < value).all(0).sum())
        info["null_draws"] = self.null_draws

    def null_scores(self, outcome: ProbeOutcome, name: str, rng) -> np.ndarray | None:
        """(draws, C) scores of column ``name`` against shuffled masks (permuted labels for cls)."""
        evidence = outcome.evidence
        if outcome.task == "seg":
            bits = evidence["bits"].get(name)
            if bits is None:
                return None
            return bs.shuffled_null_iou(
                bits,
                evidence["mask_bits"],
                evidence["concept"],
                len(outcome.names),
                self.null_draws,
                int(rng.integers(2**31)),
            )
        pred = evidence["preds"].get(name)
        if pred is None:
            return None
        score = bs.balanced_accuracy_of("")
        draws = []
        for _ in range(self.null_draws):
            labels = bs.permuted_labels(evidence["labels"], rng)
            sums = {"tp": (pred & labels).sum(0), "tn": (~pred & ~labels).sum(0)}
            sums.update(pos=labels.sum(0), neg=(~labels).sum(0))
            draws.append(score({k: v.astype(np.float64) for k, v in sums.items()}))
        return np.stack(draws)
