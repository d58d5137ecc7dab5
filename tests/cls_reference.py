"""The original classification loop, one concept at a time, in plain PyTorch (the reference).

Deliberately independent of net2vec: per concept a weight vector w (K,) and a bias b, the logit
b + w · x on pooled features, BCE with logits, SGD (momentum 0.9, lr 0.1), StepLR ×0.1 every 15
epochs, 30 epochs. Two variants:

- ``train_concept_original``: each epoch all train positives plus an equal number of random
  negatives (redrawn each epoch), shuffled, batches of 64, the batch-mean BCE (the released code);
- ``train_concept_weighted``: the batched weighting on all train images — negatives weigh
  n_pos / n_neg — summed and divided by ``norm`` (64), by default in one full batch per epoch.

Balanced accuracy on val is counted in NumPy. ``synthetic_cls`` makes small data where each
concept's label is decided by a few known ("planted") filters plus noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class ClsData:
    """In-memory classification probe data."""

    features: torch.Tensor  # (N, K) float32 pooled, non-negative
    labels: np.ndarray  # (N, C) bool presence
    split: np.ndarray  # (N,) 0 train, 1 val
    planted: np.ndarray  # (C, m) the filters that decide each concept

    @property
    def num_concepts(self) -> int:
        return self.labels.shape[1]

    def train_counts(self) -> tuple[np.ndarray, np.ndarray]:
        train = self.labels[self.split == 0]
        return train.sum(0), (~train).sum(0)


def synthetic_cls(
    num_images=300,
    num_concepts=4,
    num_filters=12,
    planted=2,
    noise=0.3,
    prevalence=(0.1, 0.4),
    val_fraction=0.4,
    seed=0,
) -> ClsData:
    """Features |N(0, 1)|; label c = [Σ_{k∈P_c} x_k + noise·N(0, 1) > its (1 − p_c) quantile]."""
    rng = np.random.default_rng(seed)
    if num_concepts * planted > num_filters:
        raise ValueError("planted filter sets must be disjoint: need C·m ≤ K")
    features = np.abs(rng.normal(size=(num_images, num_filters))).astype(np.float32)
    chosen = rng.permutation(num_filters)[: num_concepts * planted].reshape(num_concepts, planted)
    score = features[:, chosen].sum(2) + noise * rng.normal(size=(num_images, num_concepts))
    rate = rng.uniform(*prevalence, size=num_concepts)
    cut = np.array([np.quantile(score[:, c], 1 - rate[c]) for c in range(num_concepts)])
    labels = score > cut
    split = (rng.random(num_images) < val_fraction).astype(np.uint8)
    return ClsData(torch.from_numpy(features), labels, split, np.sort(chosen, axis=1))


def initial_weights(num_concepts: int, num_filters: int, seed: int) -> torch.Tensor:
    """U(−1/√K, 1/√K) drawn with a seeded generator (the same law as the probe's)."""
    generator = torch.Generator().manual_seed(seed)
    bound = 1.0 / math.sqrt(num_filters)
    return (torch.rand(num_concepts, num_filters, generator=generator) * 2 - 1) * bound


def _sgd(params, lr, momentum, step_size, gamma):
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum)
    return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)


def train_concept_original(
    data: ClsData,
    concept: int,
    w0,
    b0=0.0,
    filters=None,
    epochs=30,
    lr=0.1,
    momentum=0.9,
    step_size=15,
    gamma=0.1,
    batch_size=64,
    seed=0,
    negatives_for_epoch=None,
    norm=None,
):
    """The released loop for one concept; returns (w (K,) or (F,), b).

    ``negatives_for_epoch(epoch)`` may supply the epoch's negative rows (else drawn here);
    ``batch_size=None``: one batch per epoch; ``norm``: divide the summed loss by it instead
    of taking the batch mean.
    """
    x = data.features if filters is None else data.features[:, filters]
    rows = np.flatnonzero(data.split == 0)
    positives = rows[data.labels[rows, concept]]
    negatives = rows[~data.labels[rows, concept]]
    w = torch.as_tensor(w0).detach().clone().float().requires_grad_(True)
    b = torch.tensor(float(b0), requires_grad=True)
    optimizer, scheduler = _sgd([w, b], lr, momentum, step_size, gamma)
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        drawn = (
            negatives_for_epoch(epoch)
            if negatives_for_epoch is not None
            else rng.choice(negatives, size=min(len(positives), len(negatives)), replace=False)
        )
        order = rng.permutation(np.concatenate([positives, drawn]))
        step = batch_size or len(order)
        for start in range(0, len(order), step):
            chunk = torch.from_numpy(order[start : start + step])
            target = torch.from_numpy(data.labels[chunk.numpy(), concept]).float()
            loss = F.binary_cross_entropy_with_logits(x[chunk] @ w + b, target, reduction="sum")
            loss = loss / (norm or len(chunk))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
    return w.detach(), b.detach()


def train_concept_weighted(
    data: ClsData,
    concept: int,
    w0,
    b0=0.0,
    filters=None,
    epochs=30,
    lr=0.1,
    momentum=0.9,
    step_size=15,
    gamma=0.1,
    batch_size=None,
    norm=64,
    seed=0,
):
    """The batched weighting for one concept: all train images, negatives × n_pos/n_neg, Σ / norm."""
    x = data.features if filters is None else data.features[:, filters]
    rows = np.flatnonzero(data.split == 0)
    target_all = torch.from_numpy(data.labels[:, concept]).float()
    n_pos = int(data.labels[rows, concept].sum())
    neg_weight = n_pos / (len(rows) - n_pos)
    w = torch.as_tensor(w0).detach().clone().float().requires_grad_(True)
    b = torch.tensor(float(b0), requires_grad=True)
    optimizer, scheduler = _sgd([w, b], lr, momentum, step_size, gamma)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(rows) if batch_size else rows
        step = batch_size or len(order)
        for start in range(0, len(order), step):
            chunk = torch.from_numpy(order[start : start + step])
            target = target_all[chunk]
            weight = target + (1 - target) * neg_weight
            loss = (
                F.binary_cross_entropy_with_logits(
                    x[chunk] @ w + b, target, weight, reduction="sum"
                )
                / norm
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
    return w.detach(), b.detach()


def val_balanced_accuracy(data: ClsData, concept: int, w, b, filters=None) -> float:
    """(TPR + TNR) / 2 on the val split of the prediction σ(b + w·x) > 0.5, counted in NumPy."""
    x = (data.features if filters is None else data.features[:, filters]).double().numpy()
    val = data.split == 1
    pred = x[val] @ np.asarray(w, dtype=np.float64) + float(b) > 0
    target = data.labels[val, concept]
    return 0.5 * ((pred & target).sum() / target.sum() + (~pred & ~target).sum() / (~target).sum())


def reference_probe(data: ClsData, init=None, seed=0, variant="original", **kwargs):
    """Train every concept separately; returns weights (C, K), biases (C,) and val balanced acc (C,)."""
    num_filters = data.features.shape[1]
    init = initial_weights(data.num_concepts, num_filters, seed) if init is None else init
    train = train_concept_original if variant == "original" else train_concept_weighted
    trained = [
        train(data, c, init[c], seed=seed + 1000 * c, **kwargs) for c in range(data.num_concepts)
    ]
    weights = torch.stack([w for w, _ in trained])
    bias = torch.stack([b for _, b in trained])
    acc = np.array(
        [val_balanced_accuracy(data, c, weights[c], bias[c]) for c in range(data.num_concepts)]
    )
    return weights, bias, acc
