"""The paper's segmentation loop, one concept at a time, in plain PyTorch (the reference).

Deliberately independent of net2vec's fast path: per concept a weight vector w (K,), the logits
Σ_k w_k A_k at layer resolution, `F.interpolate` to mask size, the sigmoid, and the loss of
docs/method.md §3 written out literally, −Σ[α M L + (1−α)(1−M)(1−L)] / (batch size or `norm`);
SGD (lr 1e-4, momentum 0.9), batch 64 over X_train,c only, 30 epochs; val set IoU by NumPy.

Also a small planted-like data generator (`planted_pairs`) and batch builder used by the tests
and the benchmark: masks are random blobs, each filter's thresholded map partially encodes one
concept (downsampled mask, thresholded, with flipped pixels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class PairData:
    """In-memory probe data: thresholded maps, (image, concept) pairs sorted by image, masks."""

    maps: torch.Tensor  # (N, K, h, w) float 0/1
    split: np.ndarray  # (N,) 0 train, 1 val
    pair_image: np.ndarray  # (P,) sorted
    pair_concept: np.ndarray  # (P,)
    masks: torch.Tensor  # (P, sh, sw) float 0/1
    num_concepts: int

    @property
    def mask_size(self) -> tuple[int, int]:
        return tuple(self.masks.shape[-2:])

    def alpha(self) -> np.ndarray:
        """(C,) 1 − mean fraction of mask pixels that are c over X_train,c."""
        frac = self.masks.flatten(1).mean(1).double().numpy()
        train = self.split[self.pair_image] == 0
        out = np.ones(self.num_concepts)
        for c in range(self.num_concepts):
            sel = train & (self.pair_concept == c)
            if sel.any():
                out[c] = 1.0 - frac[sel].mean()
        return out

    def batch(self, rows: np.ndarray, key: str = "maps") -> dict:
        """The segmentation batch dict of docs/architecture.md for dataset rows ``rows``."""
        rows = np.sort(np.asarray(rows))
        local = {int(r): i for i, r in enumerate(rows)}
        sel = np.flatnonzero(np.isin(self.pair_image, rows))
        return {
            key: self.maps[torch.from_numpy(rows)],
            "pair_image": torch.tensor(
                [local[int(r)] for r in self.pair_image[sel]], dtype=torch.long
            ),
            "pair_concept": torch.from_numpy(self.pair_concept[sel]).long(),
            "masks": self.masks[torch.from_numpy(sel)],
            "image_index": torch.from_numpy(rows).long(),
        }

    def batches(self, rows: np.ndarray, batch_size: int, key: str = "maps") -> list[dict]:
        return [self.batch(rows[i : i + batch_size], key) for i in range(0, len(rows), batch_size)]


def blob_masks(rng: np.random.Generator, count: int, size: tuple[int, int]) -> np.ndarray:
    """(count, sh, sw) bool random ellipses covering a few to ~40 % of the image."""
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]]
    cy, cx = rng.random((2, count, 1, 1)) * np.array(size)[:, None, None, None]
    ry, rx = (0.1 + 0.35 * rng.random((2, count, 1, 1))) * np.array(size)[:, None, None, None]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1.0


def planted_pairs(
    num_images=60,
    num_concepts=4,
    num_filters=12,
    map_size=(6, 6),
    mask_size=(24, 24),
    presence=0.5,
    flip=0.1,
    val_fraction=0.4,
    seed=0,
) -> PairData:
    """Planted-like data: filter k partially encodes concept k mod C (others: noise maps)."""
    rng = np.random.default_rng(seed)
    present = rng.random((num_images, num_concepts)) < presence
    present[np.arange(num_images), rng.integers(0, num_concepts, num_images)] = True
    pair_image, pair_concept = np.nonzero(present)
    masks = blob_masks(rng, len(pair_image), mask_size)
    full = torch.zeros(num_images, num_concepts, *mask_size)
    full[pair_image, pair_concept] = torch.from_numpy(masks).float()
    small = F.interpolate(full, size=map_size, mode="area")
    maps = torch.zeros(num_images, num_filters, *map_size)
    for k in range(num_filters):
        level = rng.uniform(0.2, 0.7)
        encoded = (small[:, k % num_concepts] > level).float() if k < 2 * num_concepts else 0.0
        noise = torch.from_numpy(rng.random((num_images, *map_size)) < flip).float()
        maps[:, k] = (encoded + noise) % 2 if k < 2 * num_concepts else noise
    split = (rng.random(num_images) < val_fraction).astype(np.uint8)
    return PairData(
        maps,
        split,
        pair_image.astype(np.int64),
        pair_concept.astype(np.int64),
        torch.from_numpy(masks).float(),
        num_concepts,
    )


def reference_logits(
    w: torch.Tensor, maps: torch.Tensor, mask_size, align_corners: bool
) -> torch.Tensor:
    z = torch.einsum("k,bkhw->bhw", w, maps)[:, None]
    return F.interpolate(z, size=mask_size, mode="bilinear", align_corners=align_corners)[:, 0]


def reference_loss(
    logits: torch.Tensor, masks: torch.Tensor, alpha: float, loss: str
) -> torch.Tensor:
    m = torch.sigmoid(logits)
    if loss == "paper":
        return -(alpha * m * masks + (1 - alpha) * (1 - m) * (1 - masks)).sum()
    return -(
        alpha * masks * F.logsigmoid(logits) + (1 - alpha) * (1 - masks) * F.logsigmoid(-logits)
    ).sum()


def train_concept(
    data: PairData,
    concept: int,
    init: torch.Tensor,
    epochs=30,
    lr=1e-4,
    momentum=0.9,
    batch_size=64,
    seed=0,
    norm=None,
    align_corners=True,
    loss="paper",
) -> torch.Tensor:
    """The paper's loop for one concept; returns the trained w (K,)."""
    sel = np.flatnonzero((data.pair_concept == concept) & (data.split[data.pair_image] == 0))
    alpha = float(data.alpha()[concept])
    w = init.detach().clone().float().requires_grad_(True)
    optimizer = torch.optim.SGD([w], lr=lr, momentum=momentum)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = sel[torch.randperm(len(sel), generator=generator).numpy()]
        for start in range(0, len(order), batch_size):
            chunk = torch.from_numpy(order[start : start + batch_size])
            maps = data.maps[torch.from_numpy(data.pair_image)[chunk]]
            logits = reference_logits(w, maps, data.mask_size, align_corners)
            value = reference_loss(logits, data.masks[chunk], alpha, loss) / (norm or len(chunk))
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
    return w.detach()


def val_set_iou(data: PairData, concept: int, w: torch.Tensor, align_corners=True) -> float:
    """Set IoU on X_val,c of the prediction σ(logits) > 0.5, counted in NumPy."""
    sel = np.flatnonzero((data.pair_concept == concept) & (data.split[data.pair_image] == 1))
    maps = data.maps[torch.from_numpy(data.pair_image[sel])]
    pred = (torch.sigmoid(reference_logits(w, maps, data.mask_size, align_corners)) > 0.5).numpy()
    target = data.masks[torch.from_numpy(sel)].numpy() > 0.5
    union = np.logical_or(pred, target).sum()
    return float(np.logical_and(pred, target).sum() / union) if union else 0.0


def reference_probe(data: PairData, init: torch.Tensor | None = None, seed=0, **kwargs):
    """Train every concept separately; returns weights (C, K) and val set IoU (C,)."""
    num_filters = data.maps.shape[1]
    if init is None:
        generator = torch.Generator().manual_seed(seed)
        bound = 1.0 / math.sqrt(num_filters)
        init = (torch.rand(data.num_concepts, num_filters, generator=generator) * 2 - 1) * bound
    weights = torch.stack(
        [train_concept(data, c, init[c], seed=seed + c, **kwargs) for c in range(data.num_concepts)]
    )
    align = kwargs.get("align_corners", True)
    return weights, np.array(
        [val_set_iou(data, c, weights[c], align) for c in range(data.num_concepts)]
    )


# ---- probe variants (probe.head=mlp, task.loss=soft_iou, probe.decision=calibrated), one concept at a time


def reference_mlp_logits(params, maps: torch.Tensor, mask_size, align_corners=True) -> torch.Tensor:
    """One concept's mlp head: units_h = ReLU(Σ_k W1[h, k] A_k + b1[h]) at layer resolution,
    z = Σ_k w_k A_k + Σ_h W2[h] units_h, bilinear upsampling. params = (W1 (H, K), b1 (H,),
    W2 (H,), w (K,))."""
    first, bias, second, linear = params
    units = torch.relu(torch.einsum("hk,bkyx->bhyx", first, maps) + bias[None, :, None, None])
    z = torch.einsum("h,bhyx->byx", second, units) + torch.einsum("k,bkyx->byx", linear, maps)
    z = z[:, None]
    return F.interpolate(z, size=mask_size, mode="bilinear", align_corners=align_corners)[:, 0]


def reference_soft_iou_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """n · sh·sw · (1 − Σ M L / Σ (M + L − M L)) over one concept's pairs."""
    m = torch.sigmoid(logits)
    inter = (m * masks).sum()
    union = m.sum() + masks.sum() - inter
    return masks.shape[0] * masks.shape[1] * masks.shape[2] * (1 - inter / union)


def train_concept_params(
    data: PairData,
    concept: int,
    params,
    logits_fn,
    loss_fn,
    epochs=30,
    lr=1e-4,
    momentum=0.9,
    norm=64,
):
    """Full-batch SGD of one concept's parameters: one step per epoch over X_train,c."""
    sel = np.flatnonzero((data.pair_concept == concept) & (data.split[data.pair_image] == 0))
    params = [p.detach().clone().float().requires_grad_(True) for p in params]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum)
    maps = data.maps[torch.from_numpy(data.pair_image[sel])]
    for _ in range(epochs):
        value = loss_fn(logits_fn(params, maps), data.masks[torch.from_numpy(sel)]) / norm
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    return [p.detach() for p in params]


def best_threshold_iou(logits: np.ndarray, masks: np.ndarray) -> float:
    """Brute force: max over thresholds t (every distinct logit) of the set IoU of {z ≥ t}."""
    z, positive = logits.ravel(), masks.ravel() > 0.5
    order = np.argsort(-z, kind="stable")
    z, positive = z[order], positive[order]
    tp, fp = np.cumsum(positive), np.cumsum(~positive)
    last = np.r_[z[1:] != z[:-1], True]  # a threshold keeps every tie
    return float((tp / (positive.sum() + fp))[last].max())
