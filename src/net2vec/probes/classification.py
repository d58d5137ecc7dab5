"""Learned concept classifiers (docs/method.md §4), batched over concepts and heads.

One weight tensor (S, C, K) and one bias (S, C): head 0 uses all K filters, head s ≥ 1 only the
filters its fixed (S, C, K) ``mask`` allows (top-F subsets). For an image with pooled features
x (K,) (spatial means of the raw activations, or of the thresholded maps as an option),

    f_sc(x) = σ(b[s, c] + Σ_k (w ⊙ mask)[s, c, k] · x_k).

Loss: binary cross-entropy with logits, summed over images, concepts and heads and divided by the
reference batch size (64). Balance (the original drew all positives plus as many random negatives
per concept, redrawn each epoch):

- ``balance="weight"`` (default): negatives of concept c weigh n_pos(c) / n_neg(c) (train counts),
  positives 1, so each concept's summed gradient per epoch is the expectation of the original's;
- ``balance="resample"``: the batch carries an ``include`` (n, C) 0/1 mask, the epoch's draw of
  all positives + n_pos random negatives per concept (``ClassificationDataModule`` draws it).

Validation: balanced accuracy (TPR + TNR) / 2 per head and concept, prediction σ > 0.5.
Under DDP the loss is multiplied by the world size, as for segmentation (``ddp_loss_scale``).
"""

from __future__ import annotations

import hydra
import numpy as np
import torch
import torch.nn.functional as F

from net2vec.probes.base import ConceptProbe
from net2vec.statistics.accuracy import BalancedAccuracy

BALANCES = ("weight", "resample")


def negative_weights(n_pos, n_neg) -> torch.Tensor:
    """(C,) float32 weight of a concept's negatives: n_pos / n_neg (0 where there are no negatives)."""
    n_pos = torch.as_tensor(np.asarray(n_pos), dtype=torch.float64)
    n_neg = torch.as_tensor(np.asarray(n_neg), dtype=torch.float64)
    return torch.where(n_neg > 0, n_pos / n_neg.clamp(min=1), torch.zeros_like(n_pos)).float()


def default_optimizer(params, lr: float = 0.1, momentum: float = 0.9):
    """The analysis notebooks' setting: SGD, lr 0.1, momentum 0.9."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum)


def default_scheduler(optimizer):
    """lr × 0.1 every 15 epochs."""
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=15, gamma=0.1)


def as_factory(spec, default):
    """A callable from a partial, a hydra-style ``{_target_, _partial_: true}`` dict, or None (default)."""
    if spec is None:
        return default
    if callable(spec):
        return spec
    return hydra.utils.instantiate(spec)


class ClassificationProbe(ConceptProbe):
    """Concept classifiers (S, C, K) + (S, C) on pooled features; see the module docstring.

    Heads: the all-filter probe first (unless ``all_filters_head=False``), then one per subset F.
    ``scheduler`` defaults to StepLR(15, ×0.1); ``None`` or ``False``: none.
    """

    metric = "acc"

    def __init__(
        self,
        num_concepts: int,
        num_filters: int,
        n_pos=None,
        n_neg=None,
        mask=None,
        subsets=(),
        balance: str = "weight",
        ref_batch_size: int = 64,
        optimizer=None,
        scheduler=default_scheduler,
        seed: int = 0,
        initial_weights=None,
        initial_bias=None,
        all_filters_head: bool = True,
    ) -> None:
        super().__init__()
        if balance not in BALANCES:
            raise ValueError(f"balance={balance!r}: expected one of {BALANCES}")
        if balance == "weight" and (n_pos is None or n_neg is None):
            raise ValueError("balance='weight' needs the train counts n_pos and n_neg per concept")
        self.save_hyperparameters(
            ignore=[
                "n_pos",
                "n_neg",
                "mask",
                "optimizer",
                "scheduler",
                "initial_weights",
                "initial_bias",
            ]
        )
        self.setup_heads(
            num_concepts, num_filters, mask, subsets, all_filters_head, seed, initial_weights
        )
        bias = (
            torch.zeros(num_concepts)
            if initial_bias is None
            else torch.as_tensor(initial_bias).float()
        )
        self.bias = torch.nn.Parameter(bias.expand(self.heads, num_concepts).clone())
        neg = negative_weights(n_pos, n_neg) if n_pos is not None else torch.ones(num_concepts)
        self.register_buffer("neg_weight", neg)
        self.set_factories(
            as_factory(optimizer, default_optimizer),
            None if scheduler is None or scheduler is False else as_factory(scheduler, None),
        )
        self.accuracy = BalancedAccuracy(self.heads * num_concepts)
        self.val_acc: np.ndarray | None = None

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """(S, n, C) logits b + Σ_k w_k x_k of every head for (n, K) pooled features."""
        weights = self.effective_weights()
        flat = features.float() @ weights.reshape(-1, weights.shape[2]).t()  # one GEMM: (n, S·C)
        return flat.view(-1, *weights.shape[:2]).transpose(0, 1) + self.bias[:, None, :]

    def forward(self, batch: dict) -> torch.Tensor:
        return self.logits(batch["features"])

    def loss_weights(self, batch: dict) -> torch.Tensor:
        """(n, C) per-entry BCE weights: 1 / n_pos÷n_neg, or the epoch's inclusion mask."""
        labels = batch["labels"].float()
        if self.hparams.balance == "resample":
            if "include" not in batch:
                raise ValueError("balance='resample' needs batches with an 'include' (n, C) mask")
            return batch["include"].float()
        return labels + (1.0 - labels) * self.neg_weight

    def loss(self, batch: dict) -> torch.Tensor:
        """Weighted BCE summed over images, concepts and heads, / the reference batch size."""
        logits = self(batch)
        labels = batch["labels"].float()
        total = F.binary_cross_entropy_with_logits(
            logits,
            labels.expand_as(logits),
            self.loss_weights(batch).expand_as(logits),
            reduction="sum",
        )
        return total / self.hparams.ref_batch_size

    def predict(self, batch: dict) -> torch.Tensor:
        """(S, n, C) bool predictions of every head (σ > 0.5)."""
        return self(batch) > 0

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        pred = self.predict(batch)  # (S, n, C)
        preds = pred.permute(1, 0, 2).reshape(pred.shape[1], -1)
        self.accuracy.update(preds, batch["labels"].repeat(1, self.heads))

    def on_validation_epoch_end(self) -> None:
        acc = self.accuracy.compute().view(self.heads, self.hparams.num_concepts).float()
        self.val_acc = acc.cpu().numpy()
        self.accuracy.reset()
        for head, name in enumerate(self.head_names()):
            self.log(name, acc[head].mean(), sync_dist=True)
