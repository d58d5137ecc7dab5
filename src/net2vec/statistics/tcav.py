"""TCAV's test: is a concept's score for a class different from random concepts' scores?

For concept c and class k, the R repeat vectors of c give R TCAV scores s_{c,k,1..R}; the N random
controls give N scores r_{k,1..N} (docs/tcav.md). TCAV (Kim et al. 2018) compares them with a
two-sided Student t-test (``scipy.stats.ttest_ind``, equal variances, as its reference code):

- ``score``: the mean of the R repeat scores; ``score_lo``/``score_hi``: its t interval
  (mean ± t_{R−1, 1−α/2} · sd / √R, clipped to [0, 1]);
- ``random_mean``: the mean of the N random scores;
- ``p``: the t-test's two-sided p; where both samples are constant (e.g. every score 1) the
  t statistic is undefined: p = 0 if the two constants differ, else 1;
- ``q``: Benjamini–Hochberg across every tested (concept, class) cell;
  ``significant``: q < α. Cells of classes with fewer than ``min_images`` images are NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from net2vec.statistics.significance import benjamini_hochberg


@dataclass
class TcavTest:
    """(C, n_classes) arrays of the test (module docstring)."""

    score: np.ndarray
    score_lo: np.ndarray
    score_hi: np.ndarray
    random_mean: np.ndarray
    p: np.ndarray
    q: np.ndarray
    significant: np.ndarray

    COLUMNS = ("score", "score_lo", "score_hi", "random_mean", "p", "q", "significant")


def t_test_p(concept: np.ndarray, random: np.ndarray) -> np.ndarray:
    """Two-sided p of Student's t-test of concept (C, R, n) against random (N, n) per (c, k)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        p = stats.ttest_ind(concept, random[None], axis=1).pvalue
    constant = (np.ptp(concept, axis=1) == 0) & (np.ptp(random, axis=0) == 0)[None]
    differ = concept[:, 0] != random[0][None]
    return np.where(constant, np.where(differ, 0.0, 1.0), p)


def tcav_test(
    concept: np.ndarray,
    random: np.ndarray,
    tested: np.ndarray | None = None,
    alpha: float = 0.05,
) -> TcavTest:
    """The test of every (concept, class): concept (C, R, n) repeat scores, random (N, n) scores,
    ``tested`` (n,) bool classes with enough images (others NaN)."""
    concept, random = np.asarray(concept, np.float64), np.asarray(random, np.float64)
    repeats = concept.shape[1]
    tested = np.ones(concept.shape[2], bool) if tested is None else np.asarray(tested, bool)
    score = concept.mean(1)
    half = stats.t.ppf(1 - alpha / 2, repeats - 1) * concept.std(1, ddof=1) / np.sqrt(repeats)
    p = np.where(tested[None], t_test_p(concept, random), np.nan)
    q = benjamini_hochberg(p)
    blank = np.where(tested[None], 1.0, np.nan)
    return TcavTest(
        score=score * blank,
        score_lo=np.clip(score - half, 0, 1) * blank,
        score_hi=np.clip(score + half, 0, 1) * blank,
        random_mean=np.broadcast_to(random.mean(0) * blank[0], score.shape).copy(),
        p=p,
        q=q,
        significant=np.nan_to_num(q, nan=1.0) < alpha,
    )
