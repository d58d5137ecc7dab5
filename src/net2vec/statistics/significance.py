"""p-values that a tie cannot fool, and their false-discovery-rate control across concepts.

- ``empirical_p``: (1 + #{draws not below the observation}) / (1 + draws). A draw equal to the
  observation within ``rtol`` (scores are ratios of integer counts, computed in float64) counts
  as not below, so a null that reproduces the observation never makes it "significant".
- ``benjamini_hochberg``: q-values of a family of p-values (Benjamini & Hochberg 1995, step-up);
  NaN p-values (concepts left out, e.g. too few images) stay NaN and do not enlarge the family.
- ``discovered``: q ≤ fdr, the rule of every "significant" count;
- ``enough_images``: which concepts have enough validation images to be tested at all.
- ``paired_t_p``: one-sided p-values of a paired difference (all − single) with its jackknife
  standard error and n − 1 degrees of freedom; a difference of 0 (within ``rtol``) gets p = 1.
"""

from __future__ import annotations

import numpy as np
from scipy import special

TIE_RTOL = 1e-9  # relative tolerance under which a null draw equals the observation


def empirical_p(observed: np.ndarray, null: np.ndarray, rtol: float = TIE_RTOL) -> np.ndarray:
    """(1 + #{draws with null ≥ observed − tol}) / (1 + draws) per column; null (D, C)."""
    observed = np.asarray(observed, dtype=np.float64)
    null = np.asarray(null, dtype=np.float64)
    tolerance = rtol * np.maximum(np.abs(observed), 1e-300)
    not_below = (null >= (observed - tolerance)[None]).sum(0)
    p = (1.0 + not_below) / (1.0 + null.shape[0])
    return np.where(np.isfinite(observed), p, np.nan)


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg q-values of the finite entries of ``p`` (NaN elsewhere), same shape."""
    p = np.asarray(p, dtype=np.float64)
    flat = p.ravel()
    q = np.full(flat.shape, np.nan)
    tested = np.flatnonzero(np.isfinite(flat))
    if tested.size:
        order = tested[np.argsort(flat[tested], kind="stable")]
        ranked = flat[order] * tested.size / np.arange(1, tested.size + 1)
        q[order] = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    return q.reshape(p.shape)


def discovered(q: np.ndarray, fdr: float) -> np.ndarray:
    """q ≤ fdr, with slack for the rounding of q = p · m / r (and of q written to results.csv);
    False where q is NaN (not tested)."""
    return np.asarray(q, dtype=np.float64) <= fdr * (1 + 1e-6)


def enough_images(n_images: np.ndarray, minimum: int) -> np.ndarray:
    """True where a concept has at least ``minimum`` validation images carrying it."""
    return np.asarray(n_images) >= int(minimum)


def paired_t_p(
    difference: np.ndarray,
    scale: np.ndarray,
    variance: np.ndarray,
    dof: np.ndarray,
    rtol: float = TIE_RTOL,
) -> tuple[np.ndarray, np.ndarray]:
    """(p of "difference > 0", p of "difference < 0") per concept: Student t with ``dof`` degrees
    of freedom on difference / √variance. ``scale``: the magnitude the tie tolerance is relative
    to (the larger score); a tie gives p = 1 both ways; NaN where the difference is NaN."""
    difference = np.asarray(difference, dtype=np.float64)
    tie = np.abs(difference) <= rtol * np.maximum(np.abs(scale), 1e-300)
    se = np.sqrt(np.maximum(np.asarray(variance, dtype=np.float64), 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, difference / np.where(se > 0, se, 1.0), np.sign(difference) * np.inf)
    dof = np.maximum(np.asarray(dof, dtype=np.float64), 1.0)
    greater, less = special.stdtr(dof, -t), special.stdtr(dof, t)
    defined = np.isfinite(difference)
    greater = np.where(tie, 1.0, np.where(defined, greater, np.nan))
    less = np.where(tie, 1.0, np.where(defined, less, np.nan))
    return greater, less
