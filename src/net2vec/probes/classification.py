"""Learned concept classifiers (PROTOCOL §4), batched over concepts and heads.

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

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from net2vec.metrics.accuracy import BalancedAccuracy
from net2vec.probes.segmentation import ddp_loss_scale, init_weights

BALANCES = ("weight", "resample")


def pooled_features(activations: torch.Tensor | np.ndarray, threshold=None) -> torch.Tensor:
    """(n, K) float32 spatial means of (n, K, h, w) activations; of I(A_k > T_k) if ``threshold`` (K,)."""
    acts = torch.as_tensor(np.asarray(activations) if isinstance(activations, np.ndarray) else activations)
    if threshold is not None:
        acts = acts > torch.as_tensor(np.asarray(threshold), dtype=acts.dtype).view(1, -1, 1, 1)
    return acts.float().mean((2, 3))


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
    import hydra

    return hydra.utils.instantiate(spec)


class ClassificationProbe(pl.LightningModule):
    """Concept classifiers (S, C, K) + (S, C) on pooled features; see the module docstring.

    Heads: the all-filter probe first (unless ``all_filters_head=False``), then one per subset F.
    ``scheduler=None`` gives StepLR(15, ×0.1); ``scheduler=False`` none.
    """

    def __init__(self, num_concepts: int, num_filters: int, n_pos=None, n_neg=None, mask=None,
                 subsets=(), balance: str = "weight", ref_batch_size: int = 64, optimizer=None,
                 scheduler=None, seed: int = 0, initial_weights=None, initial_bias=None,
                 all_filters_head: bool = True) -> None:
        super().__init__()
        if balance not in BALANCES:
            raise ValueError(f"balance={balance!r}: expected one of {BALANCES}")
        heads = int(all_filters_head) + len(subsets)
        mask = torch.ones(heads, num_concepts, num_filters) if mask is None else torch.as_tensor(mask).float()
        if tuple(mask.shape) != (heads, num_concepts, num_filters):
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match "
                             f"({heads} heads, C={num_concepts}, K={num_filters})")
        if balance == "weight" and (n_pos is None or n_neg is None):
            raise ValueError("balance='weight' needs the train counts n_pos and n_neg per concept")
        self.save_hyperparameters(ignore=["n_pos", "n_neg", "mask", "optimizer", "scheduler",
                                          "initial_weights", "initial_bias"])
        self.heads = heads
        start = init_weights(num_concepts, num_filters, seed) if initial_weights is None \
            else torch.as_tensor(initial_weights, dtype=torch.float32)
        self.weight = torch.nn.Parameter(start.expand(heads, num_concepts, num_filters).clone())
        bias = torch.zeros(num_concepts) if initial_bias is None else torch.as_tensor(initial_bias).float()
        self.bias = torch.nn.Parameter(bias.expand(heads, num_concepts).clone())
        self.register_buffer("mask", mask)
        neg = negative_weights(n_pos, n_neg) if n_pos is not None else torch.ones(num_concepts)
        self.register_buffer("neg_weight", neg)
        self.optimizer_factory = as_factory(optimizer, default_optimizer)
        self.scheduler_factory = None if scheduler is False else as_factory(scheduler, default_scheduler)
        self.accuracy = BalancedAccuracy(heads * num_concepts)
        self.val_acc: np.ndarray | None = None

    def effective_weights(self) -> torch.Tensor:
        """(S, C, K) weights with the filters outside each head's subset zeroed."""
        return self.weight * self.mask

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """(S, n, C) logits b + Σ_k w_k x_k of every head for (n, K) pooled features."""
        weights = self.effective_weights()
        flat = features.float() @ weights.reshape(-1, weights.shape[2]).t()              # one GEMM: (n, S·C)
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
        total = F.binary_cross_entropy_with_logits(logits, labels.expand_as(logits),
                                                   self.loss_weights(batch).expand_as(logits), reduction="sum")
        return total / self.hparams.ref_batch_size

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch) * ddp_loss_scale(self)
        self.log("train/loss", loss, on_step=False, on_epoch=True, sync_dist=True,
                 batch_size=max(1, len(batch["image_index"])))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        logits = self(batch)                                              # (S, n, C)
        n = logits.shape[1]
        preds = logits.permute(1, 0, 2).reshape(n, -1) > 0                # σ > 0.5
        self.accuracy.update(preds, batch["labels"].repeat(1, self.heads))

    def on_validation_epoch_end(self) -> None:
        acc = self.accuracy.compute().view(self.heads, self.hparams.num_concepts).float()
        self.val_acc = acc.cpu().numpy()
        self.accuracy.reset()
        names = ["val/mean_acc"] if self.hparams.all_filters_head else []
        names += [f"val/mean_acc_F{size}" for size in self.hparams.subsets]
        for head, name in enumerate(names):
            self.log(name, acc[head].mean(), sync_dist=True)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer)}
