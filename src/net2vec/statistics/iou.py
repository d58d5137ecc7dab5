"""Set IoU and per-image IoU of predicted concept masks (docs/method.md §3).

Inputs are *pairs*: pair p is one (image, concept) with a predicted mask pred[p] and the ground
truth target[p] (both (sh, sw) bool). Only images that contain concept c contribute to c, so

    IoU_set(c) = Σ_{p: concept[p]=c} |pred ∩ target| / Σ_{p: concept[p]=c} |pred ∪ target|.

Convention: a concept whose summed union is 0 (never seen, or empty masks) scores 0, not NaN;
`SetIoU.union` tells the two cases apart. Counts are kept as int64 sums, so results do not depend
on batching and reduce exactly across processes.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric


def pair_counts(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair |pred ∩ target| and |pred ∪ target| (int64) of (P, ...) boolean masks."""
    pred = pred.reshape(
        pred.shape[0], -1 if pred.numel() else 0
    ).bool()  # (0, …) has no -1 to infer
    target = target.reshape(target.shape[0], -1 if target.numel() else 0).bool()
    if pred.shape != target.shape:
        raise ValueError(
            f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape"
        )
    intersection = (pred & target).sum(1)
    union = (pred | target).sum(1)
    return intersection, union


def ratio(intersection: torch.Tensor, union: torch.Tensor) -> torch.Tensor:
    """intersection / union as float64, 0 where the union is 0."""
    union = union.double()
    return torch.where(
        union > 0, intersection.double() / union.clamp(min=1), torch.zeros_like(union)
    )


def set_iou(
    pred: torch.Tensor, target: torch.Tensor, concept: torch.Tensor, num_concepts: int
) -> torch.Tensor:
    """Functional set IoU: (C,) float64 over pairs (pred, target (P, sh, sw) bool, concept (P,))."""
    intersection, union = pair_counts(pred, target)
    inter_sum = torch.zeros(num_concepts, dtype=torch.int64, device=intersection.device)
    union_sum = torch.zeros_like(inter_sum)
    inter_sum.index_add_(0, concept.long(), intersection)
    union_sum.index_add_(0, concept.long(), union)
    return ratio(inter_sum, union_sum)


def per_image_iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Functional per-pair IoU_ind: (P,) float64, 0 where the union is empty."""
    return ratio(*pair_counts(pred, target))


class SetIoU(Metric):
    """Set IoU per concept, accumulated over batches of pairs; compute() -> (C,) float64."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, num_concepts: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_concepts = int(num_concepts)
        self.add_state(
            "intersection", torch.zeros(self.num_concepts, dtype=torch.int64), dist_reduce_fx="sum"
        )
        self.add_state(
            "union", torch.zeros(self.num_concepts, dtype=torch.int64), dist_reduce_fx="sum"
        )

    def update(self, pred: torch.Tensor, target: torch.Tensor, concept: torch.Tensor) -> None:
        """Add pairs: pred, target (P, sh, sw) bool; concept (P,) index in [0, C)."""
        intersection, union = pair_counts(pred, target)
        self.update_counts(concept, intersection, union)

    def update_counts(
        self, concept: torch.Tensor, intersection: torch.Tensor, union: torch.Tensor
    ) -> None:
        """Add precomputed per-pair counts (for callers that count faster themselves). The range
        of ``concept`` is checked on CPU tensors only: on an accelerator it would cost a host sync
        per step (index_add_ still fails there on an index out of range)."""
        concept = concept.long()
        if (
            concept.device.type == "cpu"
            and len(concept)
            and (int(concept.min()) < 0 or int(concept.max()) >= self.num_concepts)
        ):
            raise ValueError(
                f"concept index out of range [0, {self.num_concepts}): "
                f"{int(concept.min())}..{int(concept.max())}"
            )
        self.intersection.index_add_(0, concept, intersection.to(torch.int64))
        self.union.index_add_(0, concept, union.to(torch.int64))

    def compute(self) -> torch.Tensor:
        return ratio(self.intersection, self.union)


class PerImageIoU(Metric):
    """IoU_ind of every (image, concept) pair seen; compute() -> dict image, concept, iou."""

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("image", [], dist_reduce_fx="cat")
        self.add_state("concept", [], dist_reduce_fx="cat")
        self.add_state("iou", [], dist_reduce_fx="cat")

    def update(
        self, pred: torch.Tensor, target: torch.Tensor, concept: torch.Tensor, image: torch.Tensor
    ) -> None:
        """Add pairs: pred, target (P, sh, sw) bool; concept (P,); image (P,) dataset rows."""
        self.image.append(image.long())
        self.concept.append(concept.long())
        self.iou.append(per_image_iou(pred, target))

    def compute(self) -> dict[str, torch.Tensor]:
        def cat(values, dtype):
            if isinstance(values, torch.Tensor):
                return values
            return torch.cat(values) if values else torch.zeros(0, dtype=dtype)

        return {
            "image": cat(self.image, torch.int64),
            "concept": cat(self.concept, torch.int64),
            "iou": cat(self.iou, torch.float64),
        }
