"""Batched segmentation probe vs the paper's one-concept-at-a-time loop, same data and epochs.

Store: the synthetic probe set with extra procedural concepts (``data.concepts``) and the planted
network (``network=planted``, K filters), built through the pipeline's cached store builders.

* batched: `SegmentationProbe.loss` + SGD in a plain loop over the batches of the real
  `SegmentationDataModule` (``in_memory=True``; batch collation is inside the timing), and the
  same module trained by a Lightning ``Trainer.fit`` (validation off) for the framework overhead;
* reference: ``tests/reference.train_concept`` for every pixel-level concept (plain PyTorch,
  maps and masks already in memory as float tensors, batch 64), same initial weights.

Both are scored by the same NumPy set IoU on the val images (``reference.val_set_iou``).
Throughput = train pairs × mask pixels × epochs / batched train time.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from common import (
    Clock,
    compose,
    emit,
    machine,
    parser,
    planted_stores,
    setup,
    synchronize,
    synthetic_overrides,
    to_device,
)


def reference_data(concepts, acts):
    """All maps thresholded (float) and every pair's mask (float) in memory: reference.PairData."""
    from reference import PairData

    maps = torch.from_numpy(acts.thresholded(np.arange(acts.num_images))).float()
    masks = torch.from_numpy(concepts.masks(np.arange(len(concepts.pair_image)))).float()
    data = PairData(
        maps,
        np.asarray(concepts.split),
        concepts.pair_image.astype(np.int64),
        concepts.pair_concept.astype(np.int64),
        masks,
        concepts.num_concepts,
    )
    alpha = concepts.alpha()
    data.alpha = lambda: alpha  # the store's α (identical formula), not recomputed per concept
    return data


def train_batched(probe, datamodule, epochs: int, device: str) -> float:
    """Plain SGD loop over the datamodule's shuffled train batches; returns seconds."""
    probe.to(device)
    optimizer = probe.configure_optimizers()
    loader = datamodule.train_dataloader()
    shuffle = loader.batch_sampler if hasattr(loader.batch_sampler, "set_epoch") else loader.sampler
    with Clock() as clock:
        for epoch in range(epochs):
            shuffle.set_epoch(epoch)  # what Lightning does: a new (seed, epoch) order
            for batch in loader:
                loss = probe.loss(to_device(batch, device))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        synchronize(device)
    return clock.seconds


def train_lightning(probe, datamodule, epochs: int, device: str) -> float:
    import pytorch_lightning as pl

    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="gpu" if device == "cuda" else "cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    with Clock() as clock:
        trainer.fit(probe, datamodule=datamodule)
    return clock.seconds


def train_reference(data, seg: np.ndarray, init: torch.Tensor, epochs: int, seed: int, device: str):
    """(weights (C, K) on the CPU, seconds) of reference.train_concept on every concept in `seg`,
    its maps and masks held on `device`."""
    from reference import train_concept

    alpha = data.alpha
    data = dataclasses.replace(data, maps=data.maps.to(device), masks=data.masks.to(device))
    data.alpha = alpha
    weights, init = init.clone().to(device), init.to(device)
    with Clock() as clock:
        for c in seg:
            weights[c] = train_concept(data, int(c), init[c], epochs=epochs, seed=seed + int(c))
        synchronize(device)
    return weights.cpu(), clock.seconds


def val_ious(data, weights: torch.Tensor, concepts: np.ndarray) -> np.ndarray:
    from reference import val_set_iou

    return np.array([val_set_iou(data, int(c), weights[c]) for c in concepts])


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=None)
    p.add_argument("--size", type=int, default=None, help="image size (masks are half of it)")
    p.add_argument("--concepts", type=int, default=270, help="synthetic catalogue size")
    p.add_argument("--filters", type=int, default=256)
    p.add_argument("--epochs", type=int, default=None)
    args = p.parse_args()
    setup(args)
    images = args.images or (300 if args.small else 1000)
    size = args.size or (64 if args.small else 128)
    epochs = args.epochs or (2 if args.small else 3)
    cfg = compose(
        args.work,
        "network=planted",
        f"network.filters={args.filters}",
        f"network.channels.conv5={args.filters}",
        *synthetic_overrides(images, size, args.concepts),
    )
    concepts, acts = planted_stores(cfg)

    from net2vec.data.datamodules import SegmentationDataModule
    from net2vec.probes.segmentation import SegmentationProbe, init_weights

    C, K = concepts.num_concepts, acts.num_filters
    datamodule = SegmentationDataModule(
        concepts,
        acts,
        batch_size=64,
        in_memory=True,
        seed=0,
        device="cuda" if args.device == "cuda" else None,
    )  # as train(cfg) on one GPU
    datamodule.setup()
    init = init_weights(C, K, 0)
    make = lambda: SegmentationProbe(C, K, concepts.alpha(), initial_weights=init, seed=0)  # noqa: E731
    probe = make()
    batched_s = train_batched(probe, datamodule, epochs, args.device)
    lightning_s = train_lightning(make(), datamodule, epochs, args.device)

    data = reference_data(concepts, acts)
    seg = np.flatnonzero(concepts.pixel_level & (concepts.n_train > 0))
    ref_w, ref_s = train_reference(data, seg, init, epochs, seed=0, device=args.device)
    noise_w, _ = train_reference(
        data, seg, init_weights(C, K, 1), epochs, seed=1000, device=args.device
    )

    scored = seg[np.isin(seg, data.pair_concept[data.split[data.pair_image] == 1])]
    iou_b = val_ious(data, probe.effective_weights()[0].detach().cpu(), scored)
    iou_r, iou_n = val_ious(data, ref_w, scored), val_ious(data, noise_w, scored)
    train_pairs = int((concepts.split[concepts.pair_image] == 0).sum())
    pixels = concepts.mask_size[0] * concepts.mask_size[1]
    throughput = train_pairs * pixels * epochs / batched_s
    record = {
        "machine": machine(),
        "device": args.device,
        "images": images,
        "mask_size": list(concepts.mask_size),
        "map_size": list(acts.map_size),
        "concepts_seg": int(len(seg)),
        "filters": K,
        "train_pairs": train_pairs,
        "epochs": epochs,
        "batched_mode": "real SegmentationDataModule(in_memory=True) batches, plain SGD loop (collation timed)",
        "batched_s": round(batched_s, 3),
        "lightning_fit_s": round(lightning_s, 3),
        "reference_s": round(ref_s, 3),
        "speedup": round(ref_s / batched_s, 2),
        "speedup_lightning": round(ref_s / lightning_s, 2),
        "pair_pixels_per_s": round(throughput),
        "val_iou_batched": round(float(iou_b.mean()), 4),
        "val_iou_reference": round(float(iou_r.mean()), 4),
        "mean_abs_diff": round(float(np.abs(iou_b - iou_r).mean()), 4),
        "mean_signed_diff": round(float((iou_b - iou_r).mean()), 4),
        "reference_seed_noise_abs": round(float(np.abs(iou_n - iou_r).mean()), 4),
        "targets": (
            {"speedup>=20": bool(ref_s / batched_s >= 20)}
            if args.device == "cuda"
            else {
                "speedup>=5": bool(ref_s / batched_s >= 5),
                "pair_pixels_per_s>=1e8": bool(throughput >= 1e8),
            }
        ),
    }
    emit(
        "probe_speed",
        record,
        [
            f"{len(seg)} seg concepts, {train_pairs} train pairs, masks {concepts.mask_size}, {epochs} epochs",
            f"batched {batched_s:.2f} s (Lightning fit {lightning_s:.2f} s) vs reference {ref_s:.2f} s: "
            f"{ref_s / batched_s:.1f}x; {throughput / 1e6:.0f} M pair-pixels/s",
            f"val IoU batched {iou_b.mean():.4f} vs reference {iou_r.mean():.4f}: mean |d| {np.abs(iou_b - iou_r).mean():.4f}"
            f" (reference seed-to-seed {np.abs(iou_n - iou_r).mean():.4f})",
        ],
    )


if __name__ == "__main__":
    main()
