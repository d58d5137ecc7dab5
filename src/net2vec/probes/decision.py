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
    """Accumulates positive/negative logit histograms per (head, concept); ``best()`` -> thresholds."""

    def __init__(self, bound: torch.Tensor, bins: int = BINS) -> None:
        self.bound = bound.detach().double().clamp(min=1e-6)  # (S, C)
        self.bins = bins
        shape = (*bound.shape, bins)
        self.positive = torch.zeros(shape, dtype=torch.float64, device=bound.device)
        self.negative = torch.zeros_like(self.positive)

    def update(self, logits: torch.Tensor, masks: torch.Tensor, concept: torch.Tensor) -> None:
        """Add (S, P, sh, sw) logits of pairs of `concept` (P,) with masks (P, sh, sw)."""
        heads, num_concepts = self.bound.shape
        bound = self.bound[:, concept].to(logits.dtype)[..., None, None]
        index = bin_index(logits, bound, self.bins)  # (S, P, sh, sw)
        head = torch.arange(heads, device=logits.device)[:, None, None, None]
        flat = (head * num_concepts + concept[None, :, None, None]) * self.bins + index
        positive = (masks > 0.5).expand_as(index)
        for hist, select in ((self.positive, positive), (self.negative, ~positive)):
            hist.view(-1).index_add_(
                0, flat[select], torch.ones_like(flat[select], dtype=hist.dtype)
            )

    def best(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(S, C) thresholds (lower bin edges) maximising train set IoU, and that IoU."""
        true_pos = self.positive.flip(-1).cumsum(-1).flip(-1)  # pixels with z ≥ edge_j
        false_pos = self.negative.flip(-1).cumsum(-1).flip(-1)
        total = self.positive.sum(-1, keepdim=True)
        iou = true_pos / (total + false_pos).clamp(min=1)
        score, j = iou.max(-1)
        edges = -self.bound + j.double() * (2 * self.bound / self.bins)
        return edges.float(), score.float()
