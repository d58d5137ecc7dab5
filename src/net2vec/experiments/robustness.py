"""Detector robustness (CS 381V study of Network Dissection; PROTOCOL §7).

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

import h5py
import numpy as np
import pytorch_lightning as pl
import torch
import torchvision.transforms.functional as TF
from torch.utils.data import DataLoader

from net2vec.experiments.common import (ExperimentError, Table, detector_counts, dissect, dissect_kwargs,
                                        plot_detector_bars)
from net2vec.features.extract import (ActivationModule, ProbeImages, StoreBuilder, StoreWriter, cached_store,
                                      store_file, store_spec)

log = logging.getLogger(__name__)
KINDS = ("noise", "rotation", "patches")


def parse(spec: str) -> tuple[str, float]:
    """'noise:10' -> ('noise', 10.0); one-line error otherwise."""
    kind, _, value = str(spec).partition(":")
    try:
        amount = float(value)
    except ValueError:
        amount = float("nan")
    if kind not in KINDS or not np.isfinite(amount) or (kind == "patches" and (amount < 1 or amount != int(amount))):
        raise ExperimentError(f"perturbation {spec!r}: expected noise:A, rotation:DEGREES or patches:G (G ≥ 1)")
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


def perturb_image(image: torch.Tensor, kind: str, amount: float, seed: int, row: int) -> torch.Tensor:
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
        moved = TF.rotate(masks[:, None], amount, interpolation=TF.InterpolationMode.NEAREST, fill=0)[:, 0]
    else:
        rows = batch["image_index"][batch["pair_image"]].tolist()
        moved = torch.stack([shuffle_patches(m, int(amount), permutation_of(seed, r, int(amount)))
                             for m, r in zip(masks, rows)])
    return {**batch, "masks": moved}


class PerturbedImages(ProbeImages):
    """The probe images, perturbed."""

    def __init__(self, root, names, size: int, kind: str, amount: float, seed: int) -> None:
        super().__init__(root, names, size)
        self.kind, self.amount, self.seed = kind, amount, seed

    def __getitem__(self, i: int):
        row, image = super().__getitem__(i)
        return row, perturb_image(image, self.kind, self.amount, self.seed, row)


def extract_perturbed(cfg, concepts, spec: dict, key: str, kind: str, amount: float, seed: int, out: Path) -> None:
    """One predict pass over the perturbed probe images into the HDF5 file `out`."""
    from net2vec.experiments.common import load_model

    root = Path(str(concepts.attrs["dataset_root"]))
    images = PerturbedImages(root, concepts.images, spec["input_size"], kind, amount, seed)
    loader = DataLoader(images, batch_size=int(cfg.features.get("batch_size", 64)), shuffle=False,
                        num_workers=int(cfg.features.get("num_workers", 0)))
    module = ActivationModule(load_model(cfg, root), spec["module"])
    with h5py.File(out, "w") as handle:
        builder = StoreBuilder(handle, len(images), spec["quantile"], spec["dtype"])
        trainer = pl.Trainer(accelerator=str(cfg.trainer.get("accelerator", "cpu")), devices=1, logger=False,
                             enable_checkpointing=False, enable_model_summary=False,
                             enable_progress_bar=bool(cfg.features.get("progress", True)), callbacks=[StoreWriter(builder)])
        trainer.predict(module, dataloaders=loader, return_predictions=False)
        w = handle["activations"].shape[3]
        builder.finish({**{k: v for k, v in spec.items() if k not in ("quantile", "perturbation")},
                        "layer": str(cfg.layer), "key": key, "stride": spec["input_size"] / w,
                        "perturbation": spec["perturbation"]})


def perturbed_store(cfg, concepts, perturbation: str, seed: int = 0):
    """The activation store of the perturbed probe images (cached like the clean one)."""
    kind, amount = parse(perturbation)
    if str(cfg.network.arch) == "planted":
        raise ExperimentError("robustness needs images and a network; network=planted has neither")
    spec = {**store_spec(cfg, concepts), "perturbation": f"{kind}:{amount:g}:seed{seed}"}
    path, key = store_file(cfg.paths.cache_dir, str(cfg.network.name), f"{cfg.layer}-{kind}{amount:g}", spec)
    return cached_store(path, key, lambda tmp: extract_perturbed(cfg, concepts, spec, key, kind, amount, seed, tmp))


def robustness_test(cfg, concepts, store, perturbations, thresholds: str = "clean", seed: int = 0) -> Table:
    """One row per input condition (clean first): unique detectors per category and mean top IoU."""
    if thresholds not in ("clean", "perturbed"):
        raise ExperimentError(f"experiments.robustness.thresholds={thresholds!r}: expected clean or perturbed")
    kw = dissect_kwargs(cfg)
    rows, header = [], None
    for spec in ["clean", *perturbations]:
        if spec == "clean":
            result = dissect(concepts, store, **kw)
        else:
            kind, amount = parse(spec)
            source = perturbed_store(cfg, concepts, spec, seed)
            use = store.thresholds if thresholds == "clean" else source.thresholds
            result = dissect(concepts, source, thresholds=use,
                             batch_transform=lambda b, k=kind, a=amount: perturb_batch(b, k, a, seed), **kw)
        counts = detector_counts(result, concepts)
        header = header or ["condition", *counts, "mean_top_iou"]
        rows.append([spec, *counts.values(), float(result.top_iou.mean())])
        log.info("robustness: %s: %d unique detectors", spec, counts["unique"])
    return Table(header, rows)


def plot_robustness(table: Table, path: Path) -> None:
    """Unique detectors per category (stacked) for every input condition."""
    plot_detector_bars(table, "condition", {"unique", "detectors", "mean_top_iou"},
                       "Detector robustness to input perturbations", path, rotation=40)


def run_robustness(cfg, concepts, store, out_dir: Path, params) -> dict:
    """The robustness table and figure into `out_dir`; returns unique detectors per condition."""
    perturbations = [f"noise:{a}" for a in params.get("noise", [])] + \
        [f"rotation:{d}" for d in params.get("rotation", [])] + [f"patches:{g}" for g in params.get("patches", [])]
    table = robustness_test(cfg, concepts, store, perturbations, str(params.get("thresholds", "clean")),
                            int(params.get("seed", 0)))
    table.to_csv(out_dir / "robustness.csv")
    plot_robustness(table, out_dir / "robustness.png")
    return dict(zip(table["condition"], table["unique"]))
