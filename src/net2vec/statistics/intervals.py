"""Bootstrap intervals that cover their estimate: BCa with jackknife acceleration (docs/statistics.md).

The percentile interval [q_2.5 %, q_97.5 %] of the resampled values assumes the bootstrap
distribution is centred on the estimate. It is not for a ratio of sums on a few images, nor for a
share of concepts (the share all ≥ single sat on the edge of its percentile interval). The BCa
interval (Efron 1987; Efron & Tibshirani 1993, §14.3) reads the quantiles at shifted levels

    α₁,₂ = Φ(z₀ + (z₀ + z_α) / (1 − a (z₀ + z_α))),   z_α = Φ⁻¹(0.025), Φ⁻¹(0.975),

with the bias correction z₀ = Φ⁻¹(share of resampled values below the estimate, ties ½) and the
acceleration a = Σ d³ / (6 (Σ d²)^{3/2}) from the jackknife d_i = θ̄₍.₎ − θ₍ᵢ₎ (leave image i out).
Every score here is a function of sums over images, so θ₍ᵢ₎ needs no refit: the sums less image
i's terms. Only images that carry terms change θ; ``jackknife_moments`` takes the non-zero changes
θ₍ᵢ₎ − θ̂ (sparse: the (image, concept) pairs) and counts the other images as unchanged.

On n images the bootstrap spread is that of a plug-in variance (÷ n, not n − 1) and its tails
are normal, not Student's: intervals on 10–20 images cover ~0.88 instead of 0.95. With the
column's sample size n (the images carrying the concept), z_α is replaced by the expanded
√(n / (n − 1)) · t_{n−1, α} (Hesterberg 2015, "expanded percentile"; a no-op for large n).

An interval whose levels would leave out the estimate (a degenerate bootstrap distribution, e.g.
every resample above it) is widened to reach it: the estimate always lies inside.
"""

from __future__ import annotations

import numpy as np
from scipy import special

TIE_RTOL = 1e-9  # resampled values equal to the estimate within this relative tolerance are ties


def jackknife_moments(
    delta: np.ndarray, group: np.ndarray, num_groups: int, num_images: int
) -> tuple[np.ndarray, np.ndarray]:
    """Σ_i d_i² and Σ_i d_i³ per group over all ``num_images`` images, d_i = mean(δ) − δ_i.

    delta (E,): θ₍ᵢ₎ − θ̂ of the entries that change (NaN counts as 0); group (E,) in 0..G−1;
    each (image, group) at most once; the group's remaining images have δ = 0."""
    delta = np.nan_to_num(np.asarray(delta, dtype=np.float64))
    sums = [np.bincount(group, delta**k, minlength=num_groups) for k in (1, 2, 3)]
    n = float(num_images)
    mean = sums[0] / n
    second = np.maximum(sums[1] - n * mean**2, 0.0)
    third = -sums[2] + 3 * mean * sums[1] - 2 * n * mean**3
    return second, third


def dense_moments(delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same moments for a dense (N, G) array of θ₍ᵢ₎ − θ̂ (every image listed)."""
    delta = np.nan_to_num(np.asarray(delta, dtype=np.float64))
    d = delta.mean(0) - delta
    return (d**2).sum(0), (d**3).sum(0)


def acceleration(second: np.ndarray, third: np.ndarray) -> np.ndarray:
    """a = Σ d³ / (6 (Σ d²)^{3/2}); 0 where the jackknife does not vary."""
    second = np.asarray(second, dtype=np.float64)
    scale = 6.0 * np.maximum(second, 1e-300) ** 1.5
    return np.divide(third, scale, out=np.zeros_like(second), where=second > 1e-24)


def column_quantiles(samples: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """(k, C) quantiles at per-column levels (k, C) over each column's finite values (linear)."""
    ordered = np.sort(samples, axis=0)  # NaN last
    count = np.isfinite(samples).sum(0)
    position = np.clip(levels, 0.0, 1.0) * np.maximum(count - 1, 0)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, np.maximum(count - 1, 0))
    columns = np.arange(samples.shape[1])
    low, high = ordered[below, columns], ordered[above, columns]
    value = low + (position - below) * (high - low)
    return np.where(count > 0, value, np.nan)


def bias_correction(samples: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """z₀ = Φ⁻¹(share of finite resamples below the estimate, ties ½), kept inside (±Φ⁻¹(1 − 1/2B))."""
    finite = np.isfinite(samples)
    count = np.maximum(finite.sum(0), 1)
    tolerance = TIE_RTOL * np.maximum(np.abs(estimate), 1e-300)
    below = (finite & (samples < estimate - tolerance)).sum(0)
    ties = (finite & (np.abs(samples - estimate) <= tolerance)).sum(0)
    share = np.clip((below + 0.5 * ties) / count, 0.5 / count, 1.0 - 0.5 / count)
    return special.ndtri(share)


def expanded_z(level: float, sizes: np.ndarray | None, columns: int) -> np.ndarray:
    """(2, C) lower and upper z_α: normal, or √(n/(n−1)) t_{n−1} for sample sizes n (≥ 2)."""
    tail = (1.0 - level) / 2
    if sizes is None:
        return np.broadcast_to(special.ndtri(np.array([tail, 1.0 - tail]))[:, None], (2, columns))
    n = np.maximum(np.broadcast_to(np.asarray(sizes, dtype=np.float64), (columns,)), 2.0)
    upper = np.sqrt(n / (n - 1)) * special.stdtrit(n - 1, 1.0 - tail)
    return np.stack([-upper, upper])


def bca_interval(
    samples: np.ndarray,
    estimate: np.ndarray,
    accel: np.ndarray,
    level: float = 0.95,
    sizes: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """BCa (lo, hi) per column of (B, C) resampled values (NaN: resample left out), widened to
    contain the estimate; NaN where a column has no finite resample or no finite estimate.
    ``sizes``: each column's sample size, for the small-sample expansion (None: normal z)."""
    samples = np.asarray(samples, dtype=np.float64)
    estimate = np.broadcast_to(np.asarray(estimate, dtype=np.float64), samples.shape[1:])
    accel = np.broadcast_to(np.asarray(accel, dtype=np.float64), samples.shape[1:])
    z0 = bias_correction(samples, estimate)
    z = expanded_z(level, sizes, samples.shape[1])
    shifted = z0 + z
    denominator = 1.0 - accel * shifted
    levels = np.where(
        denominator > 0,
        special.ndtr(z0 + shifted / np.maximum(denominator, 1e-12)),
        np.where(z < 0, 0.0, 1.0),
    )
    lo, hi = column_quantiles(samples, levels)
    defined = np.isfinite(samples).any(0) & np.isfinite(estimate)
    lo, hi = np.minimum(lo, estimate), np.maximum(hi, estimate)
    return np.where(defined, lo, np.nan), np.where(defined, hi, np.nan)
