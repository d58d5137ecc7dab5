"""Top-F filter subsets (docs/method.md §5): keep, per concept, the F filters of largest |w_k|.

Heads are stacked: head 0 uses all filters, head s ≥ 1 the subset F = subsets[s-1].
"""

from __future__ import annotations

import numpy as np
import torch

from net2vec.common.errors import ConfigError


class SubsetError(ValueError):
    """A subset size outside 1..K."""


def top_filters(weights: np.ndarray | torch.Tensor, size: int) -> np.ndarray:
    """(C, F) indices of the F filters of largest |w| per concept, largest first (ties: lower k)."""
    weights = np.asarray(torch.as_tensor(weights).detach().cpu(), dtype=np.float64)
    num_filters = weights.shape[1]
    if not 0 < size <= num_filters:
        raise SubsetError(f"subset size F={size} must lie in 1..K={num_filters}")
    order = np.argsort(-np.abs(weights), axis=1, kind="stable")
    return order[:, :size]


def subset_masks(weights: np.ndarray | torch.Tensor, subsets: list[int]) -> torch.Tensor:
    """(S, C, K) float32 mask, S = 1 + len(subsets): head 0 all ones, head s the top-F filters."""
    weights_t = torch.as_tensor(weights)
    if weights_t.dim() != 2:
        raise SubsetError(f"weights must be (C, K), got shape {tuple(weights_t.shape)}")
    num_concepts, num_filters = weights_t.shape
    mask = torch.zeros(1 + len(subsets), num_concepts, num_filters, dtype=torch.float32)
    mask[0] = 1.0
    rows = torch.arange(num_concepts)[:, None]
    for head, size in enumerate(subsets, start=1):
        mask[head][rows, torch.from_numpy(top_filters(weights_t, int(size)))] = 1.0
    return mask


def check_subsets(subsets: list[int], num_filters: int) -> list[int]:
    """Subset sizes, sorted and deduplicated, each within 1..K of the layer."""
    for size in subsets:
        if size > num_filters:
            raise ConfigError(
                f"probe.subsets contains F={size}, but the layer has only K={num_filters} filters"
            )
    return sorted(set(int(size) for size in subsets))
