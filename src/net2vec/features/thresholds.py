"""Exact streaming per-filter top-τ thresholds (docs/method.md §2).

With n = N·h·w values per filter and m = ⌈τ·n⌉, the threshold T_k is the (m+1)-th largest
value of filter k, so that exactly m values exceed it when there are no ties. While streaming
batches, only the m+1 largest values per filter are kept: each update takes ``torch.topk`` over
the kept values and the batch's values, filter by filter (all filters at once, batched).
τ·n is computed exactly from τ's decimal representation, so 0.005 · 200 gives m = 1, not 2.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch


def top_count(total: int, quantile: float) -> int:
    """m = ⌈τ·n⌉, exact in τ's decimal form."""
    return math.ceil(Fraction(str(float(quantile))) * int(total))


class TopQuantile:
    """Streaming exact top-τ threshold for K filters over a known number of values per filter."""

    def __init__(self, num_filters: int, total_values_per_filter: int, quantile: float) -> None:
        if not 0.0 < float(quantile) < 1.0:
            raise ValueError(f"quantile={quantile!r}: τ must lie strictly between 0 and 1")
        self.num_filters, self.total = int(num_filters), int(total_values_per_filter)
        self.quantile = float(quantile)
        self.m = top_count(self.total, self.quantile)
        if self.m + 1 > self.total:
            raise ValueError(
                f"quantile={quantile} over {self.total} values per filter: m+1 = {self.m + 1} "
                f"exceeds the number of values; use more images or a smaller τ"
            )
        self.keep = self.m + 1
        self.kept: torch.Tensor | None = None
        self.seen = 0

    def update(self, acts: torch.Tensor) -> None:
        """Add a batch of activations (n, K, h, w) (or (n, K))."""
        if acts.shape[1] != self.num_filters:
            raise ValueError(
                f"activations have {acts.shape[1]} filters, expected {self.num_filters}"
            )
        values = acts.detach().float().transpose(0, 1).reshape(self.num_filters, -1)
        self.seen += values.shape[1]
        if self.seen > self.total:
            raise ValueError(
                f"received {self.seen} values per filter, more than the declared {self.total}"
            )
        if self.kept is not None:
            values = torch.cat([self.kept.to(values.device), values], dim=1)
        if values.shape[1] > self.keep:
            values = torch.topk(values, self.keep, dim=1, sorted=False).values
        self.kept = values

    def compute(self) -> torch.Tensor:
        """(K,) thresholds T_k: the (m+1)-th largest value of each filter (after all values)."""
        if self.seen != self.total:
            raise ValueError(f"received {self.seen} values per filter, expected {self.total}")
        ordered = torch.sort(self.kept, dim=1, descending=True).values
        return ordered[:, self.m].clone()
