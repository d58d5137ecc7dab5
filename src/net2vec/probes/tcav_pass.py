"""The one pass of ``task=tcav`` over the validation images: sign counts and ablation sums.

Per image batch (docs/tcav.md): one forward pass, one backward pass per class set
(``probes.directional.summed_gradients``) and a (n_sets, B, K) @ (K, M) product give the sign of
every vector's directional derivative for the image's class(es); then, per chunk of ablation
directions, one forward pass of the edited layer output gives the class probabilities with each
direction projected out and clamped. Everything is accumulated per class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from net2vec.probes.directional import (
    ClassOutput,
    ablated_probabilities,
    directional_derivatives,
    summed_gradients,
)

VARIANTS = ("project", "clamp")


@dataclass
class ClassImages:
    """Which classes are scored and which images belong to each (``probes.tcav`` docstring)."""

    rule: str  # labelled | predicted | all
    names: np.ndarray  # (n_out,) a name per network class
    labels: np.ndarray | None  # (N,) dataset row -> labelled class or -1 (rule "labelled")
    selected: list[int] | None  # the scored classes (None: every class)

    def index(self) -> np.ndarray:
        """(n,) the scored network classes."""
        return np.arange(len(self.names)) if self.selected is None else np.asarray(self.selected)

    def selected_names(self) -> np.ndarray:
        return np.asarray(self.names)[self.index()]

    def assign(self, rows: np.ndarray, logits: torch.Tensor) -> torch.Tensor:
        """(B,) each image's class (labelled, else predicted) as a network class index, -1: none."""
        if self.labels is not None:
            return torch.from_numpy(self.labels[rows]).long()
        return logits.argmax(1).cpu()


class TcavPass:
    """Accumulates, per scored class, the images, the positive directional derivatives of each
    of the M vectors and (optionally) the ablated class probabilities and accuracies."""

    def __init__(
        self,
        net: ClassOutput,
        vectors: np.ndarray,
        classes: ClassImages,
        class_batch: int,
        directions: tuple[torch.Tensor, torch.Tensor] | None = None,
        ablation_batch: int = 32,
    ) -> None:
        self.net, self.classes, self.class_batch = net, classes, int(class_batch)
        self.vectors = torch.as_tensor(vectors, dtype=torch.float64).t()  # (K, M)
        index = classes.index()
        self.position = torch.full((len(classes.names),), -1, dtype=torch.long)
        self.position[torch.from_numpy(index)] = torch.arange(len(index))
        n = len(index)
        self.count = np.zeros(n)
        self.positive = np.zeros((self.vectors.shape[1], n))
        self.directions, self.ablation_batch = directions, int(ablation_batch)
        d = 0 if directions is None else len(directions[0])
        self.base = {"prob": np.zeros(n), "correct": np.zeros(n), "images": np.zeros(n)}
        self.ablated = {
            v: {"prob": np.zeros((d, n)), "correct": np.zeros((d, n))} for v in VARIANTS
        }

    def class_sets(self, rows: np.ndarray):
        """``targets_of`` for summed_gradients: the image's own class, or every scored class."""

        def targets_of(logits: torch.Tensor) -> list[torch.Tensor]:
            if self.classes.rule == "all":
                index = torch.from_numpy(self.classes.index())
                sets = index[:, None].expand(-1, len(logits))
                return list(sets.split(self.class_batch))
            return [self.classes.assign(rows, logits).clamp(min=0)[None]]

        return targets_of

    def update(self, rows: np.ndarray, images: torch.Tensor, ablate: bool = True) -> None:
        """Add one batch of validation images (dataset ``rows``, network-ready ``images``)."""
        gradients, logits = summed_gradients(self.net, images, self.class_sets(rows))
        positive = (directional_derivatives(gradients, self.vectors) > 0).double()  # (n_sets, B, M)
        own = self.classes.assign(rows, logits)
        member = self.membership(own)  # (B, n)
        if self.classes.rule == "all":
            self.positive += positive.sum(1).t().numpy()
            self.count += len(rows)
        else:
            self.positive += (positive[0].t() @ member).numpy()
            self.count += member.sum(0).numpy()
        if ablate and self.directions is not None:
            self.ablate(images, logits, own, member)

    def membership(self, own: torch.Tensor) -> torch.Tensor:
        """(B, n) float64 one-hot of each image's scored class (zero rows: none)."""
        position = torch.where(own >= 0, self.position[own.clamp(min=0)], -1)
        member = F.one_hot(position.clamp(min=0), len(self.count)).double()
        return member * (position >= 0).double()[:, None]

    def ablate(self, images, logits, own, member) -> None:
        """Class probability and accuracy on the image's own class, unablated and ablated."""
        target = own.clamp(min=0)
        probs = logits.softmax(1).double().cpu()
        self.base["images"] += member.sum(0).numpy()
        self.base["prob"] += (probs.gather(1, target[:, None])[:, 0] @ member).numpy()
        self.base["correct"] += ((probs.argmax(1) == target).double() @ member).numpy()
        vectors, offsets = self.directions  # (D, K), (2, D): both variants in one pass
        vectors, offsets = vectors.repeat(len(VARIANTS), 1), offsets.reshape(-1)
        probs, right = [], []
        for start in range(0, len(vectors), self.ablation_batch):
            chunk = slice(start, start + self.ablation_batch)
            p = ablated_probabilities(self.net, images, vectors[chunk], offsets[chunk]).double()
            probs.append(p.cpu().gather(2, target[None, :, None].expand(len(p), -1, 1))[..., 0])
            right.append((p.argmax(2).cpu() == target[None]).double())
        prob = (torch.cat(probs) @ member).numpy().reshape(len(VARIANTS), -1, len(self.count))
        correct = (torch.cat(right) @ member).numpy().reshape(prob.shape)
        for i, variant in enumerate(VARIANTS):
            self.ablated[variant]["prob"] += prob[i]
            self.ablated[variant]["correct"] += correct[i]

    def scores(self) -> np.ndarray:
        """(M, n) TCAV scores: the share of each class's images with S > 0 (NaN: no image)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.positive / self.count[None]

    def drops(self, variant: str) -> dict[str, np.ndarray]:
        """(D, n) drop of the class probability and the accuracy under each ablation direction."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return {
                f"{key}_drop": (self.base[key][None] - self.ablated[variant][key])
                / self.base["images"][None]
                for key in ("prob", "correct")
            }
