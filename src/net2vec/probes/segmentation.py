"""Learned concept weights for segmentation (docs/method.md §3), batched over concepts and heads.

One weight tensor (S, C, K): head 0 uses all K filters, head s ≥ 1 only the filters that its
fixed (S, C, K) ``mask`` allows (top-F subsets). For every (image, concept) pair p in a batch
and every head s, the logit map is computed at layer resolution,

    Z_sp = Σ_k w[s, c_p, k] · maps[i_p, k]      (h × w; never an N × C full-resolution tensor)

then upsampled by two matmuls to sh × sw; M = σ(S(Z)). With ``head="mlp"`` (one head, no
top-F subsets) Z is a small per-concept non-linear head on the same thresholded maps: the linear
term above plus H hidden units ReLU(Σ_k W1[h, c, k] · maps[i, k] + b1[h, c]) combined by W2[c, h]
(a 1×1-conv hidden layer with a linear skip, so units that die leave the linear probe).
The paper's loss
−Σ_pixels [α M L + (1−α)(1−M)(1−L)] equals −Σ_pixels M · (L − (1−α)) + const, so the hot path
is one sigmoid and one product with a per-pair coefficient map. Each pair's loss is divided by
the reference batch size (64), so every concept gets, per epoch, the summed gradient of
one-concept-at-a-time training. ``loss="soft_iou"`` instead minimises, per concept in the
batch, n_c · sh·sw · (1 − soft set IoU) with soft set IoU = Σ M L / Σ (M + L − M L) over the
concept's pairs (the score the probe is judged by; n_c pairs, scaled like the paper's per-pixel
sum). Prediction: M > 0.5, i.e. logit > 0, or with ``decision="calibrated"`` logit ≥ t_c, a
per-concept threshold chosen on the train split (probes.decision).

Under DDP the training step scales the loss by the world size (probes.base); metric states are
sums, reduced over ranks.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from net2vec.probes.base import ConceptProbe, init_weights  # noqa: F401  (init_weights: public here too)
from net2vec.probes.decision import DECISIONS, ThresholdSearch
from net2vec.probes.single_filter import batch_slots, pair_slots
from net2vec.probes.upsample import upsampling_matrices
from net2vec.statistics.iou import SetIoU, ratio

LOSSES = ("paper", "bce", "soft_iou")
HEADS = ("linear", "mlp")


def pair_maps(
    weights: torch.Tensor,
    maps: torch.Tensor,
    pair_image: torch.Tensor,
    pair_concept: torch.Tensor,
    slots: tuple[torch.Tensor, int] | None = None,
) -> torch.Tensor:
    """Z[s, p] = Σ_k weights[s, c_p, k] · maps[i_p, k]: (S, P, h, w), one bmm over images.

    slots: each pair's rank within its image and the largest rank + 1 (``batch_slots``)."""
    heads = weights.shape[0]
    n, num_filters, h, w = maps.shape
    slot, width = slots if slots is not None else pair_slots(pair_image, n)
    padded = weights.new_zeros(n, width, heads, num_filters)
    padded = padded.index_put((pair_image, slot), weights[:, pair_concept].transpose(0, 1))
    z = torch.bmm(padded.view(n, width * heads, num_filters), maps.view(n, num_filters, h * w))
    return z.view(n, width, heads, h, w)[pair_image, slot].transpose(0, 1)


def upsample_rows(z: torch.Tensor, mask_size: tuple[int, int], align_corners: bool):
    """First half of U_h Z U_wᵀ for (S, P, h, w) logits, as one GEMM: rows (S·P·sh, w) and U_wᵀ."""
    heads, pairs, h, w = z.shape
    u_h, u_w_t = upsampling_matrices(mask_size, (h, w), align_corners, z.dtype, z.device)
    rows = u_h @ z.permute(2, 0, 1, 3).reshape(h, -1)  # (sh, S·P·w)
    return rows.view(mask_size[0], heads * pairs, w).transpose(0, 1).reshape(-1, w), u_w_t


def soft_iou_loss(
    logits: torch.Tensor, masks: torch.Tensor, concept: torch.Tensor, num_concepts: int
) -> torch.Tensor:
    """Σ over heads and the batch's concepts of n_c · sh·sw · (1 − soft set IoU of c)."""
    prob = logits.sigmoid()  # (S, P, sh, sw)
    heads = prob.shape[0]
    inter = prob.new_zeros(heads, num_concepts).index_add_(1, concept, (prob * masks).sum((2, 3)))
    both = prob.new_zeros(heads, num_concepts).index_add_(1, concept, prob.sum((2, 3)))
    both = both + prob.new_zeros(num_concepts).index_add_(0, concept, masks.sum((1, 2)))
    pixels = masks.shape[1] * masks.shape[2]
    weight = torch.bincount(concept, minlength=num_concepts).to(prob.dtype) * pixels
    seen = weight > 0
    iou = inter[:, seen] / (both[:, seen] - inter[:, seen]).clamp(min=1e-6)
    return (weight[seen] * (1 - iou)).sum()


class PaperLoss(torch.autograd.Function):
    """−Σ σ(rows · U_wᵀ) · coef over heads, pairs and pixels, fused to spare full-size passes.

    Forward: one GEMM into the (S, P, sh, sw) buffer, an in-place sigmoid, one GEMV over heads.
    Backward: one fused σ' · coef pass and one GEMM back to layer-width rows, where the
    incoming scalar gradient is applied to the small tensor.
    """

    @staticmethod
    def forward(ctx, rows, u_w_t, coef, heads):
        prob = (rows @ u_w_t).view(heads, *coef.shape).sigmoid_()
        total = (prob.view(heads, -1) @ coef.reshape(-1)).sum()  # every head in one product
        ctx.save_for_backward(prob, u_w_t, coef)
        return -total

    @staticmethod
    def backward(ctx, grad):
        prob, u_w_t, coef = ctx.saved_tensors
        slope = torch.ops.aten.sigmoid_backward(coef.expand_as(prob), prob)  # σ(1−σ)·coef
        return (slope.view(-1, u_w_t.shape[1]) @ u_w_t.t()).mul_(-grad), None, None, None


class SegmentationProbe(ConceptProbe):
    """Concept weights (S, C, K) trained on thresholded maps; see the module docstring.

    Heads: the all-filter probe first (unless ``all_filters_head=False``), then one per subset F.
    """

    metric = "iou"

    def __init__(
        self,
        num_concepts: int,
        num_filters: int,
        alpha,
        mask=None,
        subsets=(),
        loss: str = "paper",
        bias: bool = False,
        align_corners: bool = True,
        ref_batch_size: int = 64,
        optimizer=None,
        scheduler=None,
        seed: int = 0,
        initial_weights=None,
        all_filters_head: bool = True,
        head: str = "linear",
        hidden: int = 8,
        decision: str = "sigmoid",
    ) -> None:
        super().__init__()
        for name, value, allowed in (
            ("task.loss", loss, LOSSES),
            ("probe.head", head, HEADS),
            ("probe.decision", decision, DECISIONS),
        ):
            if value not in allowed:
                raise ValueError(f"{name}={value!r}: expected one of {allowed}")
        if head == "mlp" and subsets:
            raise ValueError("probe.head=mlp: top-F subsets are defined for the linear head only")
        self.save_hyperparameters(
            ignore=["alpha", "mask", "optimizer", "scheduler", "initial_weights"]
        )
        self.setup_heads(
            num_concepts, num_filters, mask, subsets, all_filters_head, seed, initial_weights
        )
        self.bias = torch.nn.Parameter(torch.zeros(self.heads, num_concepts)) if bias else None
        if head == "mlp":
            self.setup_mlp(num_concepts, num_filters, int(hidden), seed)
        self.register_buffer("threshold", torch.zeros(self.heads, num_concepts))
        self.register_buffer("alpha", torch.as_tensor(np.asarray(alpha), dtype=torch.float32))
        self.set_factories(
            optimizer or functools.partial(torch.optim.SGD, lr=1e-4, momentum=0.9), scheduler
        )
        self.set_iou = SetIoU(self.heads * num_concepts)
        self.val_iou = self.val_union = None

    def setup_mlp(self, num_concepts: int, num_filters: int, hidden: int, seed: int) -> None:
        """The non-linear head: W1 (H, C, K), b1 (H, C) zero, W2 (C, H) U(±1/√H); seeded."""
        first = torch.stack(
            [init_weights(num_concepts, num_filters, seed + 1 + h) for h in range(hidden)]
        )
        second = init_weights(num_concepts, hidden, seed + 1 + hidden)
        self.hidden_weight = torch.nn.Parameter(first)
        self.hidden_bias = torch.nn.Parameter(torch.zeros(hidden, num_concepts))
        self.out_weight = torch.nn.Parameter(second)

    def layer_logits(self, batch: dict) -> torch.Tensor:
        """Z of every head for every pair at layer resolution (S, P, h, w), bias included."""
        pair_image, pair_concept = batch["pair_image"].long(), batch["pair_concept"].long()
        maps = batch["maps"].float()
        slots = batch_slots(batch, maps.shape[0])
        z = pair_maps(self.effective_weights(), maps, pair_image, pair_concept, slots)
        if self.hparams.head == "mlp":
            units = pair_maps(self.hidden_weight, maps, pair_image, pair_concept, slots)
            units = (units + self.hidden_bias[:, pair_concept, None, None]).relu()
            z = z + torch.einsum("hpyx,ph->pyx", units, self.out_weight[pair_concept])[None]
        if self.bias is not None:  # rows of U sum to 1: a bias before upsampling is the same after
            z = z + self.bias[:, pair_concept, None, None]
        return z

    def forward(self, batch: dict) -> torch.Tensor:
        """Logits S(Z) of every head for every pair: (S, P, sh, sw)."""
        masks = batch["masks"]
        rows, u_w_t = upsample_rows(
            self.layer_logits(batch), tuple(masks.shape[-2:]), self.hparams.align_corners
        )
        return (rows @ u_w_t).view(self.heads, *masks.shape)

    def predict(self, batch: dict) -> torch.Tensor:
        """Predicted masks of every head for every pair: (S, P, sh, sw) bool (``decide``)."""
        return self.decide(self(batch), batch["pair_concept"].long())

    def loss(self, batch: dict) -> torch.Tensor:
        """Summed per-pair loss of all heads divided by the reference batch size."""
        masks = batch["masks"].float()
        if masks.shape[0] == 0:  # no pairs in this batch: nothing to learn, keep the graph
            return self.weight.sum() * 0.0
        beta = 1.0 - self.alpha[batch["pair_concept"].long()]  # 1 − α per pair
        if self.hparams.loss == "soft_iou":
            total = soft_iou_loss(
                self(batch), masks, batch["pair_concept"].long(), self.hparams.num_concepts
            )
        elif self.hparams.loss == "paper":
            rows, u_w_t = upsample_rows(
                self.layer_logits(batch), tuple(masks.shape[-2:]), self.hparams.align_corners
            )
            pixels = masks.shape[1] * masks.shape[2]
            const = (beta * (pixels - masks.sum((1, 2)))).sum() * self.heads  # Σ(1−α)(1−L)
            total = PaperLoss.apply(rows, u_w_t, masks - beta[:, None, None], self.heads) - const
        else:
            logits = self(batch)
            weight = torch.where(masks > 0.5, 1.0 - beta[:, None, None], beta[:, None, None])
            total = F.binary_cross_entropy_with_logits(
                logits, masks.expand_as(logits), weight.expand_as(logits), reduction="sum"
            )
        return total / self.hparams.ref_batch_size

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """Per-(head, concept) set IoU counts of the batch's pairs (no host sync, no copies of
        the targets per head)."""
        concept = batch["pair_concept"].long()
        if len(concept) == 0:  # no pairs: nothing to count (the metric's state stays typed)
            return
        pred = self.decide(self(batch), concept)  # (S, P, sh, sw)
        target = (batch["masks"] > 0.5)[None]
        inter = (pred & target).sum((2, 3))
        union = (pred | target).sum((2, 3))
        heads = torch.arange(self.heads, device=concept.device)[:, None]
        index = heads * self.hparams.num_concepts + concept
        self.set_iou.update_counts(index.flatten(), inter.flatten(), union.flatten())

    def decide(self, logits: torch.Tensor, concept: torch.Tensor) -> torch.Tensor:
        """Predicted masks: σ > 0.5 (logit > 0), or logit ≥ the calibrated threshold of the concept."""
        if self.hparams.decision == "sigmoid":
            return logits > 0
        return logits >= self.threshold[:, concept, None, None]

    def logit_bound(self) -> torch.Tensor:
        """(S, C) bound on |logit| at any pixel (maps are 0/1, upsampling is a convex combination)."""
        bound = self.effective_weights().abs().sum(-1)
        if self.hparams.head == "mlp":
            units = self.hidden_weight.abs().sum(-1) + self.hidden_bias.abs()  # (H, C)
            bound = bound + (self.out_weight.abs() * units.T).sum(1)[None]
        return bound + (self.bias.abs() if self.bias is not None else 0.0)

    @torch.no_grad()
    def calibrate(self, batches) -> torch.Tensor:
        """Set every (head, concept) threshold to maximise train set IoU over `batches` (train
        pairs); returns the (S, C) train set IoU reached. See probes.decision."""
        search = ThresholdSearch(self.logit_bound())
        for batch in batches:
            if len(batch["pair_concept"]):
                batch = {
                    k: v.to(self.device) if isinstance(v, torch.Tensor) else v
                    for k, v in batch.items()
                }
                search.update(self(batch), batch["masks"], batch["pair_concept"].long())
        threshold, score = search.best()
        self.threshold.copy_(threshold)
        return score

    def on_validation_epoch_end(self) -> None:
        shape = (self.heads, self.hparams.num_concepts)
        with self.set_iou.sync_context():  # summed over DDP ranks
            iou = ratio(self.set_iou.intersection, self.set_iou.union).view(shape).float()
            union = self.set_iou.union.view(shape).clone()
        self.val_iou, self.val_union = iou.cpu().numpy(), union.cpu().numpy()
        self.set_iou.reset()
        for head, name in enumerate(self.head_names()):
            seen = union[head] > 0
            if bool(seen.any()):
                self.log(name, iou[head][seen].mean(), sync_dist=True)
