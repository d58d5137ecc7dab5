"""Error bars and tests for a run's scores (docs/statistics.md says what each may be read as).

``Statistics`` (``conf/stats/default.yaml``) turns the per-image evidence a task leaves in its
:class:`~net2vec.probes.outcome.ProbeOutcome` (``probes.evidence``, as float64 sums:
``statistics.sums``) into

- ``<score>_lo`` / ``<score>_hi``: the BCa bootstrap interval (over validation images) of every
  score column (single filter, all filters, each top-F);
- ``diff_val`` (all − single) with its interval ``diff_val_lo`` / ``diff_val_hi``, the one-sided
  paired p-values ``p_all_gt_single`` / ``p_single_gt_all`` (jackknife t test) and their
  Benjamini–Hochberg q-values ``q_all_gt_single`` / ``q_single_gt_all``;
- ``null_<metric>_val`` / ``p_null`` / ``q_null`` (learned probe) and the ``single_`` ones (best
  single filter): the mean score over ``null_draws`` shuffled-mask draws (classification permutes
  each concept's labels across images), the tie-safe empirical p-value and its q-value;
- intervals of every category mean and of the share of concepts with all ≥ single (summary.json).

p- and q-values are left empty for concepts with fewer than ``min_images`` validation images, and
every "significant" count uses q ≤ ``fdr`` (for all > single also an interval above 0).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from net2vec.common.errors import ConfigError
from net2vec.statistics import bootstrap as bs
from net2vec.statistics import intervals, significance
from net2vec.statistics.sums import EvidenceSums

if TYPE_CHECKING:  # type only: the outcome is built by the probes, one layer up
    from net2vec.probes.outcome import ProbeOutcome

log = logging.getLogger(__name__)


def category_masks(categories: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(category, concept mask) for every category in sorted order, then ("all", everything)."""
    categories = np.asarray(categories)
    names = sorted(set(categories.tolist()))
    return [(c, categories == c) for c in names] + [("all", np.ones(len(categories), bool))]


def all_ge_single(full: np.ndarray, single: np.ndarray) -> np.ndarray:
    """all ≥ single, a difference within float64 rounding of the sums counting as equal (NaN: False)."""
    return full >= single - intervals.TIE_RTOL * np.abs(single)


def check_settings(
    resamples=1000, level=0.95, null_draws=99, seed=0, min_images=10, fdr=0.05
) -> None:
    """One ConfigError naming the first bad ``stats.*`` value."""
    counts = {"resamples": resamples, "null_draws": null_draws, "seed": seed}
    for key, value in {**counts, "min_images": min_images}.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
            raise ConfigError(
                f"stats.{key}={value!r}: expected an integer >= 0 (resamples, null_draws: 0 skips)"
            )
    if min_images < 1:
        raise ConfigError(f"stats.min_images={min_images!r}: expected at least 1 (default 10)")
    for key, value in {"level": level, "fdr": fdr}.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 1:
            raise ConfigError(
                f"stats.{key}={value!r}: expected a value in (0, 1), e.g. 0.95 / 0.05"
            )


class Statistics:
    """Bootstrap, test and null settings (plain values from the ``stats`` config group)."""

    def __init__(
        self,
        resamples: int = 1000,
        level: float = 0.95,
        null_draws: int = 99,
        seed: int = 0,
        min_images: int = 10,
        fdr: float = 0.05,
    ) -> None:
        check_settings(resamples, level, null_draws, seed, min_images, fdr)
        self.resamples, self.level = int(resamples), float(level)
        self.null_draws, self.seed = int(null_draws), int(seed)
        self.min_images, self.fdr = int(min_images), float(fdr)

    def annotate(self, outcome: ProbeOutcome) -> None:
        """Fill the outcome's intervals, extra columns and summary statistics from its evidence."""
        if not getattr(outcome, "evidence", None):  # e.g. a NetDissect outcome
            return
        sums = EvidenceSums(outcome.task, outcome.evidence, len(outcome.names))
        observed = sums.observed()
        tested = significance.enough_images(outcome.n_val, self.min_images)
        info: dict = {
            "resamples": self.resamples,
            "level": self.level,
            "seed": self.seed,
            "interval": "bca",
            "min_images": self.min_images,
            "fdr": self.fdr,
            "concepts_tested": int(tested.sum()),
            "concepts_below_min_images": int((~tested).sum()),
        }
        if self.resamples:
            self._intervals(outcome, sums, observed, tested, info)
        if self.null_draws:
            self._nulls(outcome, observed, tested, info)
        outcome.statistics = info

    def _intervals(self, outcome, sums: EvidenceSums, observed: dict, tested, info: dict) -> None:
        samples = sums.resamples(self.resamples, self.seed)
        if not samples:
            return
        deltas = {n: sums.leave_one_out(n) - observed[n][sums.concept] for n in samples}
        for name, values in samples.items():
            moments = intervals.jackknife_moments(
                deltas[name], sums.concept, sums.num_concepts, sums.num_images
            )
            accel = intervals.acceleration(*moments)
            outcome.intervals[name] = intervals.bca_interval(
                values, observed[name], accel, self.level, outcome.n_val
            )
        single, full = f"single_{outcome.metric}_val", f"{outcome.metric}_val"
        if single in samples and full in samples:
            self._paired(outcome, sums, observed, samples, deltas, tested, info)
            self._share(sums, observed, samples, deltas, info, (full, single))
        series = {"single": single, "all": full}
        series.update({f"F{f}": f"{outcome.metric}_val_F{f}" for f in sorted(outcome.subsets)})
        series = {key: name for key, name in series.items() if name in samples}
        outcome.category_intervals = self._category_intervals(
            outcome.categories, sums, observed, samples, deltas, series
        )

    def _paired(self, outcome, sums, observed, samples, deltas, tested, info: dict) -> None:
        """diff_val all − single with its BCa interval; one-sided p, q and the significant counts."""
        single, full = f"single_{outcome.metric}_val", f"{outcome.metric}_val"
        diff = observed[full] - observed[single]
        second, third = intervals.jackknife_moments(
            deltas[full] - deltas[single], sums.concept, sums.num_concepts, sums.num_images
        )
        accel = intervals.acceleration(second, third)
        lo, hi = intervals.bca_interval(
            samples[full] - samples[single], diff, accel, self.level, outcome.n_val
        )
        n = max(sums.num_images, 2)
        scale = np.maximum(np.abs(observed[full]), np.abs(observed[single]))
        p_gt, p_lt = significance.paired_t_p(
            diff, scale, (n - 1) / n * second, np.asarray(outcome.n_val) - 1
        )
        p_gt, p_lt = (np.where(tested, p, np.nan) for p in (p_gt, p_lt))
        q_gt, q_lt = significance.benjamini_hochberg(p_gt), significance.benjamini_hochberg(p_lt)
        outcome.columns.update(
            {"diff_val": diff, "diff_val_lo": lo, "diff_val_hi": hi, "p_all_gt_single": p_gt}
        )
        outcome.columns.update(
            {"q_all_gt_single": q_gt, "p_single_gt_all": p_lt, "q_single_gt_all": q_lt}
        )
        better = significance.discovered(q_gt, self.fdr) & (lo > 0)
        worse = significance.discovered(q_lt, self.fdr) & (hi < 0)
        info["concepts_all_gt_single_significant"] = int(better.sum())
        info["concepts_single_gt_all_significant"] = int(worse.sum())
        share = 100.0 * better.sum() / tested.sum() if tested.any() else float("nan")
        info["percent_all_gt_single_significant"] = float(share)
        chosen = diff[tested & np.isfinite(diff)]
        info["diff_val_mean"] = float(chosen.mean()) if len(chosen) else float("nan")
        info["diff_val_median"] = float(np.median(chosen)) if len(chosen) else float("nan")

    def _share(self, sums, observed, samples, deltas, info: dict, names: tuple) -> None:
        """% concepts with all ≥ single and its BCa interval; a resample without a concept keeps
        that concept's observed comparison (the denominator is every concept with a score)."""
        full, single = names
        valid = np.isfinite(observed[full]) & np.isfinite(observed[single])
        if not valid.any():
            return
        ge = all_ge_single(observed[full], observed[single])
        drawn = np.isfinite(samples[full]) & np.isfinite(samples[single])
        boot = np.where(drawn, all_ge_single(samples[full], samples[single]), ge)
        share = 100.0 * boot[:, valid].mean(1)
        estimate = 100.0 * ge[valid].mean()
        out_full = deltas[full] + observed[full][sums.concept]
        out_single = deltas[single] + observed[single][sums.concept]
        undefined = np.isnan(out_full) | np.isnan(out_single)
        left = np.where(undefined, ge[sums.concept], all_ge_single(out_full, out_single))
        change = (left.astype(float) - ge[sums.concept]) * valid[sums.concept]
        per_image = np.bincount(sums.image, change, minlength=sums.num_images) * 100.0 / valid.sum()
        accel = intervals.acceleration(*intervals.dense_moments(per_image[:, None]))
        lo, hi = intervals.bca_interval(share[:, None], np.array([estimate]), accel, self.level)
        info["percent_all_ge_single"] = float(estimate)
        info["percent_all_ge_single_lo"], info["percent_all_ge_single_hi"] = (
            float(lo[0]),
            float(hi[0]),
        )

    def _category_intervals(self, categories, sums, observed, samples, deltas, series) -> dict:
        """category -> series -> BCa (lo, hi) of the category mean (absent concepts: observed)."""
        table: dict = {}
        for category, chosen in category_masks(categories):
            if not chosen.any():
                continue
            table[category] = {}
            for key, name in series.items():
                filled = np.where(np.isfinite(samples[name]), samples[name], observed[name])
                mean = filled[:, chosen].mean(1)
                weight = np.nan_to_num(deltas[name]) * chosen[sums.concept] / chosen.sum()
                per_image = np.bincount(sums.image, weight, minlength=sums.num_images)
                accel = intervals.acceleration(*intervals.dense_moments(per_image[:, None]))
                estimate = np.array([observed[name][chosen].mean()])
                lo, hi = intervals.bca_interval(mean[:, None], estimate, accel, self.level)
                table[category][key] = (float(lo[0]), float(hi[0]))
        return table

    def _nulls(self, outcome: ProbeOutcome, observed: dict, tested, info: dict) -> None:
        metric = outcome.metric
        for k, name in enumerate((f"single_{metric}_val", f"{metric}_val")):
            null = self.null_scores(outcome, name, np.random.default_rng([self.seed, 1, k]))
            if null is None:
                continue
            prefix = "single_" if name.startswith("single_") else ""
            p = np.where(tested, significance.empirical_p(observed[name], null), np.nan)
            q = significance.benjamini_hochberg(p)
            outcome.columns[f"{prefix}null_{metric}_val"] = null.mean(0)
            outcome.columns[f"{prefix}p_null"] = p
            outcome.columns[f"{prefix}q_null"] = q
            info[f"concepts_{prefix}above_null_significant"] = int(
                significance.discovered(q, self.fdr).sum()
            )
        info["null_draws"] = self.null_draws
        info["null_smallest_p"] = 1.0 / (self.null_draws + 1)

    def null_scores(self, outcome: ProbeOutcome, name: str, rng) -> np.ndarray | None:
        """(draws, C) float64 scores of column ``name`` against shuffled masks (permuted labels for cls)."""
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
