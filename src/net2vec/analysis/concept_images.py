"""Pictures of learned concepts (segmentation runs), drawn from the run's stores.

- **Fig. 8** (the paper's): for a concept, one validation image per decile of the learned
  weights' per-image IoU (embeddings.h5 ``per_image``), as three rows: the image, the ground
  truth, and the prediction σ(Σ_k w_k·S(I(A_k > T_k)) + b) > 0.5 drawn from the stored maps.
- **Fig. 4 with images**: for a filter chosen as best single filter by several concepts, each
  concept's best validation images (by the single filter's per-image IoU) with the filter's
  thresholded map outlined (yellow) and the concept's mask (magenta).

Both return PIL images, so the report saves them and a logger can log them as they are.
"""

from __future__ import annotations

import numpy as np
import torch
from omegaconf import OmegaConf
from PIL import Image

from net2vec.analysis.images import (
    TRUTH,
    ImagesError,
    StoredImages,
    grid,
    highlight,
    overlay,
    strip,
)
from net2vec.analysis.report import Report, slug
from net2vec.analysis.runs import Run
from net2vec.probes.upsample import upsample

PREDICTION = (255, 80, 60)


def stored_images(run: Run) -> StoredImages:
    """The stores behind a run (ImagesError when they cannot be opened)."""
    return StoredImages(run.summary.get("stores") or {})


def align_corners_of(run: Run) -> bool:
    """task.align_corners of the run (its .hydra/config.yaml), else the seg default (true)."""
    config = run.path / ".hydra" / "config.yaml"
    if config.is_file():
        task = OmegaConf.load(config).get("task") or {}
        return bool(task.get("align_corners", True))
    return True


def prediction(
    images: StoredImages, row: int, weights, bias: float, size: int, align_corners: bool
):
    """(size, size) bool: the learned concept's segmentation of dataset row `row`."""
    maps = torch.from_numpy(np.asarray(images.acts.thresholded([row])[0], np.float64))
    logit = torch.einsum("k,khw->hw", torch.as_tensor(weights, dtype=torch.float64), maps) + bias
    return upsample(logit, (size, size), align_corners).numpy() > 0


def decile_pairs(run: Run, concept: int) -> tuple[np.ndarray, np.ndarray]:
    """(dataset rows, IoUs) of one val image per IoU decile of the learned weights, low to high."""
    per_image = run.embeddings.per_image
    chosen = np.flatnonzero(per_image["concept"] == concept)
    if len(chosen) == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    ious = per_image["all_iou"][chosen]
    order = chosen[np.argsort(ious, kind="stable")]
    picks = np.unique(
        np.minimum(((np.arange(10) + 0.5) / 10 * len(order)).astype(int), len(order) - 1)
    )
    return per_image["image"][order[picks]], per_image["all_iou"][order[picks]]


def fig8_image(run: Run, images: StoredImages, concept: int, size: int = 80) -> Image.Image | None:
    """Fig. 8 for one concept of a seg run: image / ground truth / prediction per IoU decile."""
    rows, ious = decile_pairs(run, concept)
    if len(rows) == 0:
        return None
    name = str(run.concepts[concept])
    weights, bias = run.embeddings.weights[concept], float(run.embeddings.bias[concept])
    align = align_corners_of(run)
    pictures = [images.image(int(r), size) for r in rows]
    truths = [overlay(p, images.truth(int(r), name, size), TRUTH) for p, r in zip(pictures, rows)]
    predicted = [
        overlay(p, prediction(images, int(r), weights, bias, size, align), PREDICTION)
        for p, r in zip(pictures, rows)
    ]
    captions = [f"IoU {v:.2f}" for v in ious]
    title = f"{name} ({run.categories[concept]}), {run.label}"
    return grid(
        [
            strip(pictures, f"{title}: val images, one per IoU decile", captions),
            strip(truths, "ground truth"),
            strip(predicted, "prediction of the learned weights"),
        ]
    )


def fig8_concepts(run: Run, count: int) -> list[int]:
    """The `count` concepts with the most validation pairs (ties: results order)."""
    per_image = run.embeddings.per_image
    pairs = np.bincount(per_image["concept"], minlength=len(run.concepts))
    return [int(c) for c in np.argsort(-pairs, kind="stable")[:count] if pairs[c] > 0]


def fig4_image(run: Run, images: StoredImages, shared, k: int = 4, size: int = 80) -> list:
    """Fig. 4 with images: per shared filter, each concept's best val images by the filter's IoU,
    the filter's thresholded map outlined (yellow) and the concept's mask (magenta)."""
    per_image = run.embeddings.per_image
    position = {str(n): c for c, n in enumerate(run.concepts)}
    out = []
    for unit in dict.fromkeys(int(f) for f in shared["filter"]):
        names = [str(c) for c, f in zip(shared["concept"], shared["filter"]) if int(f) == unit][:3]
        strips = []
        for name in names:
            chosen = np.flatnonzero(per_image["concept"] == position[name])
            best = chosen[np.argsort(-per_image["single_iou"][chosen], kind="stable")[:k]]
            tiles = []
            for p in best:
                row = int(per_image["image"][p])
                picture = overlay(
                    images.image(row, size), images.truth(row, name, size), TRUTH, 0.3
                )
                mask = images.filter_mask(row, unit, size, align_corners_of(run))
                tiles.append(highlight(picture, mask, dim=0.7))
            if tiles:
                strips.append(
                    strip(
                        tiles,
                        f"filter {unit}: {name}",
                        [f"IoU {per_image['single_iou'][p]:.2f}" for p in best],
                    )
                )
        if strips:
            out.append((unit, grid(strips)))
    return out


def add_fig4_images(report: Report, run: Run, shared) -> None:
    """Fig. 4's concept pairs with their images, after the shared-filter table of `run`."""
    if run.embeddings is None or not run.embeddings.per_image:
        return
    try:
        images = stored_images(run)
        for unit, picture in fig4_image(run, images, shared):
            report.image(
                f"fig4_images_{slug(run.label)}_filter{unit}",
                picture,
                "yellow: the filter's thresholded map; magenta: the concept's mask",
            )
    except ImagesError as error:
        report.note(f"{run.label}: no Fig. 4 images ({error})")


def add_fig8_section(report: Report, runs: list[Run], count: int = 4) -> None:
    """Fig. 8 for the `count` concepts with most val images of every seg run with per-image IoUs."""
    report.text("rows: image; ground truth (magenta); prediction of the learned weights (red)")
    chosen = [r for r in runs if r.embeddings is not None and "all_iou" in r.embeddings.per_image]
    if not chosen:
        report.note("no run stores per-image IoUs (segmentation runs only)")
    for run in chosen:
        try:
            images = stored_images(run)
            for concept in fig8_concepts(run, count):
                picture = fig8_image(run, images, concept)
                if picture is not None:
                    name = f"fig8_{slug(run.label)}_{slug(run.concepts[concept])}"
                    report.image(name, picture)
        except ImagesError as error:
            report.note(f"{run.label}: no Fig. 8 images ({error})")
