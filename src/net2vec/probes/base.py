"""What the segmentation and classification probes share: heads over concepts, training, optimiser.

A probe holds one weight tensor (S, C, K) for S heads, C concepts and K filters: head 0 is the
all-filter probe (unless ``all_filters_head=False``), head s ≥ 1 the top-F subset F = subsets[s-1],
whose fixed (S, C, K) ``mask`` zeroes the filters it may not use (docs/method.md §5). Subclasses
define ``loss(batch)`` and the validation metrics; this base class initialises the weights
U(−1/√K, 1/√K) from a seeded generator, logs the training loss, applies DDP's loss scale and builds
the optimiser (and scheduler) from factories (Hydra ``_partial_`` configs).

Under DDP each of the W ranks holds a 1/W share of every batch and DDP averages the ranks'
gradients, so the training step multiplies the summed loss by W (``ddp_loss_scale``): the update
is the full batch's, as in one process.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytorch_lightning as pl
import torch


def init_weights(num_concepts: int, num_filters: int, seed: int) -> torch.Tensor:
    """(C, K) float32 drawn from U(−1/√K, 1/√K) with a seeded generator."""
    generator = torch.Generator().manual_seed(int(seed))
    bound = 1.0 / math.sqrt(num_filters)
    return (torch.rand(num_concepts, num_filters, generator=generator) * 2 - 1) * bound


def ddp_loss_scale(module: pl.LightningModule) -> int:
    """W, the trainer's world size (1 when not attached): undoes DDP's mean over ranks' gradients."""
    trainer = module._trainer
    return int(trainer.world_size) if trainer is not None else 1


def head_mask(mask, heads: int, num_concepts: int, num_filters: int) -> torch.Tensor:
    """The (S, C, K) float mask (all ones when None), checked against the heads and sizes."""
    mask = (
        torch.ones(heads, num_concepts, num_filters)
        if mask is None
        else torch.as_tensor(mask).float()
    )
    if tuple(mask.shape) != (heads, num_concepts, num_filters):
        raise ValueError(
            f"mask shape {tuple(mask.shape)} does not match "
            f"({heads} heads, C={num_concepts}, K={num_filters})"
        )
    return mask


class ConceptProbe(pl.LightningModule):
    """Weights (S, C, K) with per-head filter masks; training step and optimisers shared by probes."""

    metric = "score"

    def setup_heads(
        self,
        num_concepts: int,
        num_filters: int,
        mask,
        subsets,
        all_filters_head: bool,
        seed: int,
        initial_weights,
    ) -> None:
        """Register ``weight`` (S, C, K) and the ``mask`` buffer; sets ``self.heads``."""
        self.heads = int(all_filters_head) + len(subsets)
        mask = head_mask(mask, self.heads, num_concepts, num_filters)
        start = (
            init_weights(num_concepts, num_filters, seed)
            if initial_weights is None
            else torch.as_tensor(initial_weights, dtype=torch.float32)
        )
        self.weight = torch.nn.Parameter(
            start.expand(self.heads, num_concepts, num_filters).clone()
        )
        self.register_buffer("mask", mask)

    def set_factories(self, optimizer: Callable | None, scheduler: Callable | None) -> None:
        """``optimizer(params)`` and ``scheduler(optimizer)`` factories (scheduler None: none)."""
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler

    def effective_weights(self) -> torch.Tensor:
        """(S, C, K) weights with the filters outside each head's subset zeroed."""
        return self.weight * self.mask

    def head_names(self) -> list[str]:
        """Validation metric name of every head: ``val/mean_<metric>`` then ``…_F<F>`` per subset."""
        names = [f"val/mean_{self.metric}"] if self.hparams.all_filters_head else []
        return names + [f"val/mean_{self.metric}_F{size}" for size in self.hparams.subsets]

    def val_score(self):
        """(S, C) validation scores of the last validation pass (set IoU or balanced accuracy)."""
        return getattr(self, f"val_{self.metric}")

    def loss(self, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch) * ddp_loss_scale(self)
        self.log(
            "train/loss",
            loss,
            on_step=False,
            on_epoch=True,
            sync_dist=True,
            batch_size=max(1, len(batch["image_index"])),
        )
        return loss

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer)}
