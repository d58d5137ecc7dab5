"""Bilinear upsampling as two small matrix products.

Bilinear interpolation is separable: upsampling a map Z (h×w) to sh×sw equals U_h · Z · U_wᵀ
with U_h (sh×h) and U_w (sw×w) the 1-D interpolation matrices. Batched over P maps this is two
matmuls, much cheaper than `F.interpolate` on many small maps, and it makes the linearity of
upsampling explicit (weighting filters before or after upsampling is the same).
"""

from __future__ import annotations

import functools

import torch


def bilinear_matrix(
    out_size: int,
    in_size: int,
    align_corners: bool = True,
    dtype: torch.dtype = torch.float32,
    device=None,
) -> torch.Tensor:
    """(out_size, in_size) matrix U with U @ z equal to 1-D linear interpolation of z.

    Follows `F.interpolate(mode="bilinear")` exactly: with ``align_corners=True`` the corner
    samples coincide (src = i·(in−1)/(out−1)); with ``False`` pixel centres are aligned
    (src = (i+0.5)·in/out − 0.5, clamped at 0).
    """
    if out_size < 1 or in_size < 1:
        raise ValueError(
            f"bilinear_matrix: sizes must be positive, got out={out_size}, in={in_size}"
        )
    index = torch.arange(out_size, dtype=torch.float64)
    if align_corners:
        scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        source = index * scale
    else:
        source = ((index + 0.5) * (in_size / out_size) - 0.5).clamp(min=0.0)
    lower = source.floor().long().clamp(max=in_size - 1)
    upper = (lower + 1).clamp(max=in_size - 1)
    frac = source - lower.double()
    matrix = torch.zeros(out_size, in_size, dtype=torch.float64)
    rows = torch.arange(out_size)
    matrix.index_put_((rows, lower), 1.0 - frac, accumulate=True)
    matrix.index_put_((rows, upper), frac, accumulate=True)
    return matrix.to(dtype=dtype, device=device)


@functools.lru_cache(maxsize=32)
def _cached_pair(
    out_hw: tuple[int, int],
    in_hw: tuple[int, int],
    align_corners: bool,
    dtype: torch.dtype,
    device: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    u_h = bilinear_matrix(out_hw[0], in_hw[0], align_corners, dtype, device)
    u_w_t = bilinear_matrix(out_hw[1], in_hw[1], align_corners, dtype, device).t().contiguous()
    return u_h, u_w_t


def upsampling_matrices(
    out_hw: tuple[int, int],
    in_hw: tuple[int, int],
    align_corners: bool = True,
    dtype: torch.dtype = torch.float32,
    device=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(U_h, U_wᵀ) for upsampling in_hw → out_hw; cached per sizes, dtype and device."""
    device = str(torch.device(device) if device is not None else torch.device("cpu"))
    return _cached_pair(
        tuple(int(v) for v in out_hw),
        tuple(int(v) for v in in_hw),
        bool(align_corners),
        dtype,
        device,
    )


def upsample(
    maps: torch.Tensor, out_hw: tuple[int, int], align_corners: bool = True
) -> torch.Tensor:
    """Bilinear upsampling of (..., h, w) maps to (..., sh, sw) by two matmuls (U_h Z U_wᵀ)."""
    h, w = maps.shape[-2:]
    if (h, w) == tuple(out_hw):
        return maps
    u_h, u_w_t = upsampling_matrices(out_hw, (h, w), align_corners, maps.dtype, maps.device)
    return torch.matmul(u_h, torch.matmul(maps, u_w_t))


# Bilinear values of 0/1 maps are rationals; those that equal 0.5 exactly come out as 0.5 ± a few
# ulp depending on the kernel, while any value truly above 0.5 exceeds it by ≥ 1/(4·sh·sw) (far
# more than 1e-6 for any mask size in use). Binarising at 0.5 + 1e-6 is therefore the exact rule
# "M > 0.5" with ties at 0.5 off, independent of the arithmetic's rounding.
HALF = 0.5 + 1e-6


def binarise(upsampled: torch.Tensor) -> torch.Tensor:
    """S(I(A > T)) > 0.5 in exact arithmetic (ties at exactly 0.5 are off)."""
    return upsampled > HALF
