"""Detector robustness (CS 381V study of Network Dissection; docs/method.md §7).

The probe images are perturbed before the network sees them, the layer is re-extracted into
its own activation store (cached, keyed by the perturbation), and NetDissect is recounted:

- ``noise:A``      x + A·U(−1, 1) per pixel and channel, in 0..255 pixel units, clipped to 0..255
                   (seeded per image by (seed, row));
- ``rotation:D``   rotation by D degrees about the centre (bilinear, corners filled with 0);
- ``patches:G``    the image cut into a G×G grid of patches, shuffled by a permutation seeded by
                   (seed, row).

Geometric perturbations move the concept masks with the image (nearest neighbour, same angle or
permutation), so a detector is scored on *where the concept now is*; noise leaves them as they
are. Thresholds: by default the **clean** store's T_k (``thresholds: clean``), so a unit whose
activations fall under noise loses pixels as it would at test time; ``perturbed`` uses the
top-τ quantile of the perturbed activations instead.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF

from net2vec.experiments.common import (
    ExperimentError,
    Table,
    detector_counts,
    dissect,
    plot_detector_bars,
)

log = logging.getLogger(__name__)
KINDS = ("noise", "rotation", "patches")


def parse(spec: str) -> tuple[str, float]:
    """'noise:10' -> ('noise', 10.0); one-line error otherwise."""
    kind, _, value = str(spec).partition(":")
    try:
        amount = float(value)
    except ValueError:
        amount = float("nan")
    if (
        kind not in KINDS
        or not np.isfinite(amount)
        or (kind == "patches" and (amount < 1 or amount != int(amount)))
    ):
        raise ExperimentError(
            f"perturbation {spec!r}: expected noise:A, rotation:DEGREES or patches:G (G ≥ 1)"
        )
    return kind, amount


def patch_index(size: int, grid: int, permutation: np.ndarray) -> np.ndarray:
    """(size,size) flat source index: destination patch p shows source patch permutation[p]
    (same offset inside the patch; exact integer arithmetic for any size)."""
    y = np.arange(size)
    patch = (y * grid) // size
    py, px = np.meshgrid(patch, patch, indexing="ij")
    q = permutation[py * grid + px]
    qy, qx = q // grid, q % grid
    yy, xx = np.meshgrid(y, y, indexing="ij")
    src_y = np.clip(yy + ((qy - py) * size) // grid, 0, size - 1)
    src_x = np.clip(xx + ((qx - px) * size) // grid, 0, size - 1)
    return src_y * size + src_x


def permutation_of(seed: int, row: int, grid: int) -> np.ndarray:
    return np.random.default_rng([int(seed), int(row), 7]).permutation(grid * grid)


def shuffle_patches(planes: torch.Tensor, grid: int, permutation: np.ndarray) -> torch.Tensor:
    """(..., H, W) square planes with their G×G patches rearranged."""
    size = planes.shape[-1]
    index = torch.from_numpy(patch_index(size, grid, permutation).reshape(-1))
    return planes.flatten(-2)[..., index].view(planes.shape)


def perturb_image(
    image: torch.Tensor, kind: str, amount: float, seed: int, row: int
) -> torch.Tensor:
    """(3, H, W) uint8 -> perturbed (3, H, W) uint8."""
    if kind == "noise":
        generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(row))
        noise = (torch.rand(image.shape, generator=generator) * 2 - 1) * amount
        return (image.float() + noise).round().clamp(0, 255).to(torch.uint8)
    if kind == "rotation":
        return TF.rotate(image, amount, interpolation=TF.InterpolationMode.BILINEAR, fill=0)
    return shuffle_patches(image, int(amount), permutation_of(seed, row, int(amount)))


def perturb_batch(batch: dict, kind: str, amount: float, seed: int) -> dict:
    """Move each pair's concept mask as its image was moved (geometric perturbations only)."""
    if kind == "noise" or len(batch["masks"]) == 0:
        return batch
    masks = batch["masks"]
    if kind == "rotation":
        moved = TF.rotate(
            masks[:, None], amount, interpolation=TF.InterpolationMode.NEAREST, fill=0
        )[:, 0]
    else:
        rows = batch["image_index"][batch["pair_image"]].tolist()
        moved = torch.stack(
            [
                shuffle_patches(m, int(amount), permutation_of(seed, r, int(amount)))
                for m, r in zip(masks, rows)
            ]
        )
    return {**batch, "masks": moved}


class Perturbation:
    """An input transform for extraction: ``perturbation(image, row)`` perturbs a uint8 image;
    ``key`` names it in the activation store's key and file name."""

    def __init__(self, kind: str, amount: float, seed: int) -> None:
        self.kind, self.amount, self.seed = kind, float(amount), int(seed)
        self.key = f"{kind}{self.amount:g}-seed{self.seed}"

    def __call__(self, image: torch.Tensor, row: int) -> torch.Tensor:
        return perturb_image(image, self.kind, self.amount, self.seed, row)


def perturbed_store(ctx, concepts, perturbation: str, seed: int = 0):
    """The activation store of the perturbed probe images (cached like the clean one)."""
    kind, amount = parse(perturbation)
    if not hasattr(ctx.network, "build"):
        raise ExperimentError("robustness needs images and a network; network=planted has neither")
    return ctx.store(concepts, transform=Perturbation(kind, amount, seed))


def robustness_test(
    ctx, concepts, store, perturbations, thresholds: str = "clean", seed: int = 0
) -> Table:
    """One row per input condition (clean first): unique detectors per category and mean top IoU."""
    if thresholds not in ("clean", "perturbed"):
        raise ExperimentError(
            f"experiments.robustness.thresholds={thresholds!r}: expected clean or perturbed"
        )
    kw = ctx.dissect
    rows, header = [], None
    for spec in ["clean", *perturbations]:
        if spec == "clean":
            result = dissect(concepts, store, **kw)
        else:
            kind, amount = parse(spec)
            source = perturbed_store(ctx, concepts, spec, seed)
            use = store.thresholds if thresholds == "clean" else source.thresholds
            result = dissect(
                concepts,
                source,
                thresholds=use,
                batch_transform=lambda b, k=kind, a=amount: perturb_batch(b, k, a, seed),
                **kw,
            )
        counts = detector_counts(result, concepts)
        header = header or ["condition", *counts, "mean_top_iou"]
        rows.append([spec, *counts.values(), float(result.top_iou.mean())])
        log.info("robustness: %s: %d unique detectors", spec, counts["unique"])
    return Table(header, rows)


def plot_robustness(table: Table, path: Path) -> None:
    """Unique detectors per category (stacked) for every input condition."""
    plot_detector_bars(
        table,
        "condition",
        {"unique", "detectors", "mean_top_iou"},
        "Detector robustness to input perturbations",
        path,
        rotation=40,
    )


def run_robustness(ctx, concepts, store, out_dir: Path, params) -> dict:
    """The robustness table and figure into `out_dir`; returns unique detectors per condition."""
    perturbations = (
        [f"noise:{a}" for a in params.get("noise", [])]
        + [f"rotation:{d}" for d in params.get("rotation", [])]
        + [f"patches:{g}" for g in params.get("patches", [])]
    )
    table = robustness_test(
        ctx,
        concepts,
        store,
        perturbations,
        str(params.get("thresholds", "clean")),
        int(params.get("seed", 0)),
    )
    table.to_csv(out_dir / "robustness.csv")
    plot_robustness(table, out_dir / "robustness.png")
    return dict(zip(table["condition"], table["unique"]))
