"""p-values that a tie cannot fool, and their false-discovery-rate control across concepts.

- ``empirical_p``: (1 + #{draws not below the observation}) / (1 + draws). A draw equal to the
  observation within ``rtol`` (scores are ratios of integer counts, computed in float64) counts
  as not below, so a null that reproduces the observation never makes it "significant".
- ``benjamini_hochberg``: q-values of a family of p-values (Benjamini & Hochberg 1995, step-up);
  NaN p-values (concepts left out, e.g. too few images) stay NaN and do not enlarge the family.
- ``enough_images``: which concepts have enough validation images to be tested at all.
"""

from __future__ import annotations

import numpy as np

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


def enough_images(n_images: np.ndarray, minimum: int) -> np.ndarray:
    """True where a concept has at least ``minimum`` validation images carrying it."""
    return np.asarray(n_images) >= int(minimum)
