"""Balanced accuracy of concept classifiers (docs/method.md §4).

The paper scores a classifier by its accuracy on a balanced validation set (equal positives and
negatives); the expected value of that is the balanced accuracy (TPR + TNR) / 2, which we compute
exactly from per-concept counts of true/false positives/negatives.

Convention: a concept with positives but no negatives (or the reverse) scores the one rate it has;
a concept with neither (no valid entries) scores 0. Counts are int64 sums, so results do not
depend on batching and reduce exactly across processes.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric


def confusion_counts(
    preds: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor | None = None,
    logits: bool = True,
) -> torch.Tensor:
    """(4, C) int64 counts tp, fp, tn, fn of (n, C) predictions against (n, C) 0/1 labels.

    ``preds``: bool predictions, or scores predicted positive when logit > 0 (``logits``) or
    probability > 0.5 (otherwise). ``valid``: optional (n, C) mask of the entries to count.
    """
    if preds.shape != labels.shape or preds.dim() != 2:
        raise ValueError(
            f"preds {tuple(preds.shape)} and labels {tuple(labels.shape)} must both be (n, C)"
        )
    if valid is not None and valid.shape != labels.shape:
        raise ValueError(f"valid mask {tuple(valid.shape)} must match labels {tuple(labels.shape)}")
    if preds.dtype == torch.bool:
        pred = preds
    else:
        pred = preds > 0 if logits else preds > 0.5
    target = labels > 0.5
    keep = torch.ones_like(target) if valid is None else valid.bool()
    tp = (pred & target & keep).sum(0)
    fp = (pred & ~target & keep).sum(0)
    tn = (~pred & ~target & keep).sum(0)
    fn = (~pred & target & keep).sum(0)
    return torch.stack([tp, fp, tn, fn]).to(torch.int64)


def balanced_from_counts(
    tp: torch.Tensor, fp: torch.Tensor, tn: torch.Tensor, fn: torch.Tensor
) -> torch.Tensor:
    """(C,) float64 (TPR + TNR) / 2 from counts, with the module's convention for missing classes."""
    pos, neg = (tp + fn).double(), (tn + fp).double()
    tpr = tp.double() / pos.clamp(min=1)
    tnr = tn.double() / neg.clamp(min=1)
    has_pos, has_neg = pos > 0, neg > 0
    both = (tpr + tnr) / 2
    one = torch.where(has_pos, tpr, tnr)
    return torch.where(
        has_pos & has_neg, both, torch.where(has_pos | has_neg, one, torch.zeros_like(both))
    )


def balanced_accuracy(
    preds: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor | None = None,
    logits: bool = True,
) -> torch.Tensor:
    """Functional balanced accuracy: (C,) float64 for (n, C) preds and labels (see confusion_counts)."""
    return balanced_from_counts(*confusion_counts(preds, labels, valid, logits))


class BalancedAccuracy(Metric):
    """Balanced accuracy per concept, accumulated over batches; compute() -> (C,) float64.

    ``logits=True``: float predictions are logits (positive when > 0); ``False``: probabilities
    (positive when > 0.5). Boolean predictions are used as they are.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, num_concepts: int, logits: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_concepts = int(num_concepts)
        self.logits = bool(logits)
        for name in ("tp", "fp", "tn", "fn"):
            self.add_state(
                name, torch.zeros(self.num_concepts, dtype=torch.int64), dist_reduce_fx="sum"
            )

    def update(
        self, preds: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor | None = None
    ) -> None:
        """Add a batch: preds, labels (n, C); optional (n, C) mask of the entries to count."""
        if preds.dim() != 2 or preds.shape[1] != self.num_concepts:
            raise ValueError(f"preds shape {tuple(preds.shape)}: expected (n, {self.num_concepts})")
        tp, fp, tn, fn = confusion_counts(preds, labels, valid, self.logits)
        self.tp += tp
        self.fp += fp
        self.tn += tn
        self.fn += fn

    def compute(self) -> torch.Tensor:
        return balanced_from_counts(self.tp, self.fp, self.tn, self.fn)
