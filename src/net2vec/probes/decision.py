"""The probes' decision rule: σ = 0.5 (the paper) or a per-concept logit threshold calibrated on train.

``probe.decision=calibrated`` picks, for every head and concept, the logit threshold t that
maximises the concept's *train* set IoU, Σ|{z ≥ t} ∩ L| / Σ|{z ≥ t} ∪ L| over X_train,c; the
validation set IoU is then reported with that t (docs/method.md §3, variants). The search is one
pass over the train pairs that fills, per (head, concept), histograms of the logits of the mask's
positive and negative pixels over `BINS` equal bins of [−B, B], B a bound on |z| (the upsampled
logits are convex combinations of layer-resolution logits); candidate thresholds are the bins'
lower edges, so t is exact up to one bin (2B / BINS).
"""

from __future__ import annotations

import torch

DECISIONS = ("sigmoid", "calibrated")
BINS = 4096


def bin_index(logits: torch.Tensor, bound: torch.Tensor, bins: int = BINS) -> torch.Tensor:
    """Bin of each logit in [−bound, bound] (bound broadcast against logits), clamped to 0..bins−1."""
    width = 2 * bound / bins
    return ((logits + bound) / width).floor().clamp_(0, bins - 1).long()


class ThresholdSearch:
    """Accumulates positive/negative logit histograms per (head, concept); ``best()`` -> thresholds.

    One float64 table (S, C, BINS, 2) holds both histograms (last axis: negative, positive
    pixels); a batch is added in blocks of pairs whose temporaries (two int64 per logit) stay
    within ``chunk_bytes``."""

    def __init__(self, bound: torch.Tensor, bins: int = BINS, chunk_bytes: int = 1 << 28) -> None:
        self.bound = bound.detach().double().clamp(min=1e-6)  # (S, C)
        self.bins, self.chunk_bytes = bins, int(chunk_bytes)
        shape = (*bound.shape, bins, 2)
        self.counts = torch.zeros(shape, dtype=torch.float64, device=bound.device)
        self.one = torch.ones(1, dtype=torch.float64, device=bound.device)

    @property
    def positive(self) -> torch.Tensor:
        return self.counts[..., 1]

    @property
    def negative(self) -> torch.Tensor:
        return self.counts[..., 0]

    def update(self, logits: torch.Tensor, masks: torch.Tensor, concept: torch.Tensor) -> None:
        """Add (S, P, sh, sw) logits of pairs of `concept` (P,) with masks (P, sh, sw)."""
        heads, num_concepts = self.bound.shape
        pixels = logits.shape[2] * logits.shape[3]
        step = max(1, self.chunk_bytes // (16 * heads * pixels))
        head = torch.arange(heads, device=logits.device)[:, None, None]
        for start in range(0, logits.shape[1], step):
            z = logits[:, start : start + step].flatten(2)  # (S, p, pixels)
            part = concept[start : start + step]
            index = bin_index(z, self.bound[:, part].to(z.dtype)[..., None], self.bins)
            index += (head * num_concepts + part[None, :, None]) * self.bins
            index *= 2
            index += (masks[start : start + step].flatten(1) > 0.5)[None]
            flat = index.view(-1)
            self.counts.view(-1).index_add_(0, flat, self.one.expand(flat.numel()))

    def best(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(S, C) thresholds (lower bin edges) maximising train set IoU, and that IoU (head by
        head, so the temporaries are (C, BINS))."""
        scores, bins = [], []
        for head in range(self.counts.shape[0]):
            true_pos = self.positive[head].flip(-1).cumsum(-1).flip(-1)  # pixels with z ≥ edge_j
            false_pos = self.negative[head].flip(-1).cumsum(-1).flip(-1)
            total = true_pos[:, :1]  # every positive pixel is ≥ the lowest edge
            score, j = (true_pos / (total + false_pos).clamp(min=1)).max(-1)
            scores.append(score)
            bins.append(j)
        score, j = torch.stack(scores), torch.stack(bins)
        edges = -self.bound + j.double() * (2 * self.bound / self.bins)
        return edges.float(), score.float()
