"""A layer's output as (B, K, h, w) maps, whatever its layout: CNN maps, ViT tokens, NHWC.

A ViT block outputs tokens (B, T, D): ``prefix`` class/register tokens first (torchvision: one
class token; timm: ``model.num_prefix_tokens``), then the h·w patch tokens in row-major order.
`spatial_maps` drops the prefix tokens and reshapes the patch tokens to (B, D, h, w), with
h/w = H/W of the input (non-square inputs included), so D token channels are probed as D
filters and thresholds, probes and NetDissect apply unchanged (docs/method.md §2).
"""

from __future__ import annotations

import math

import torch

from net2vec.features.hooks import NetworkError

LAYOUTS = ("auto", "nchw", "nhwc", "tokens")


def image_hw(input_size) -> tuple[int, int]:
    """``input_size`` (an int, or [H, W]) as (H, W)."""
    if isinstance(input_size, int | float | str):
        return int(input_size), int(input_size)
    height, width = (int(v) for v in input_size)
    return height, width


def token_grid(patches: int, input_hw: tuple[int, int]) -> tuple[int, int]:
    """(h, w) with h·w = `patches` and h/w = H/W; NetworkError when no such grid exists."""
    height, width = input_hw
    h = round(math.sqrt(patches * height / width))
    if h < 1 or patches % h or abs(patches // h * height - h * width) > max(height, width) / 2:
        raise NetworkError(
            f"{patches} patch tokens do not form a grid for a {height}x{width} input: "
            f"check network.prefix_tokens (class/register tokens) and network.input_size"
        )
    return h, patches // h


def spatial_maps(
    output: torch.Tensor, input_hw: tuple[int, int], prefix: int = 0, layout: str = "auto"
) -> torch.Tensor:
    """A layer output as (B, K, h, w): 4-D is NCHW (``layout=nhwc``: permuted), 3-D is tokens
    (B, T, D) -> (B, D, h, w) without the first `prefix` tokens, 2-D is (B, K, 1, 1)."""
    if not isinstance(output, torch.Tensor):
        raise NetworkError(f"the layer outputs a {type(output).__name__}, not a tensor")
    if layout not in LAYOUTS:
        raise NetworkError(f"network.layout={layout!r}: expected one of {', '.join(LAYOUTS)}")
    if output.dim() == 4:
        return output.permute(0, 3, 1, 2) if layout == "nhwc" else output
    if output.dim() == 3:
        patches = output[:, int(prefix) :]
        h, w = token_grid(patches.shape[1], input_hw)
        return patches.transpose(1, 2).reshape(output.shape[0], output.shape[2], h, w)
    if output.dim() == 2:
        return output[:, :, None, None]
    raise NetworkError(f"the layer outputs shape {tuple(output.shape)}; expected 2-4 dimensions")
