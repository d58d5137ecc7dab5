"""Shared pieces of the Network Dissection follow-up experiments.

`dissect` runs NetDissect (``net2vec.probes.netdissect``) over any *activation source*: the
activation store itself or a `TransformedActivations` view of it (a rotation of the filter
space, say), with its own thresholds. A source needs ``num_images``, ``num_filters``,
``map_size``, ``activations(idx)`` and ``thresholded(idx)``, which is all that
`SegmentationDataModule` reads, so the learned all-filter probe can be trained on a view too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from net2vec.analysis.table import Table
from net2vec.data.datamodules import READ_CHUNK, SegmentationDataModule
from net2vec.features.thresholds import TopQuantile
from net2vec.probes.netdissect import (
    DETECTOR_IOU,
    NetDissectResult,
    dissect_layer,
    dissection_labels,
)

log = logging.getLogger(__name__)


class ExperimentError(ValueError):
    """A bad experiment setting (one line)."""


class TransformedActivations:
    """A view of an activation store whose maps pass through ``transform`` (n, K, h, w) -> (n, K', h, w).

    Thresholds default to the exact top-τ quantile of the *transformed* values over all images.
    """

    def __init__(
        self,
        store,
        transform: Callable[[np.ndarray], np.ndarray],
        quantile: float,
        thresholds: np.ndarray | None = None,
    ) -> None:
        self.store, self.transform, self.quantile = store, transform, float(quantile)
        self.num_images, self.map_size = store.num_images, store.map_size
        self.num_filters = int(transform(store.activations([0])).shape[1])
        self.thresholds = (
            compute_thresholds(self, self.quantile)
            if thresholds is None
            else np.asarray(thresholds, np.float32)
        )

    def activations(self, idx) -> np.ndarray:
        return np.asarray(self.transform(self.store.activations(idx)), np.float32)

    def thresholded(self, idx) -> np.ndarray:
        return self.activations(idx) > self.thresholds[None, :, None, None]


def compute_thresholds(source, quantile: float, chunk: int = READ_CHUNK) -> np.ndarray:
    """(K,) exact top-τ thresholds of a source's activations over all its images."""
    h, w = source.map_size
    top = TopQuantile(source.num_filters, source.num_images * h * w, quantile)
    for start in range(0, source.num_images, chunk):
        top.update(
            torch.from_numpy(
                source.activations(np.arange(start, min(start + chunk, source.num_images)))
            )
        )
    return top.compute().cpu().numpy().astype(np.float32)


def at_quantile(store, quantile: float):
    """The store itself when its thresholds are at τ = `quantile`, else a view thresholded at τ."""
    if abs(float(getattr(store, "quantile", -1.0)) - float(quantile)) < 1e-12:
        return store
    return TransformedActivations(store, lambda acts: acts, quantile)


def dissect_kwargs(section: dict | None) -> dict:
    """NetDissect settings of ``experiments.dissect`` (batch size, align_corners, detector IoU,
    union rule, primary category)."""
    section = section or {}
    return {
        "batch_size": int(section.get("batch_size", 64)),
        "align_corners": bool(section.get("align_corners", False)),
        "detector_iou": float(section.get("detector_iou", DETECTOR_IOU)),
        "union": str(section.get("union", "category_hit")),
        "primary": str(section.get("primary", "coverage")),
    }


def dissect(
    concepts,
    source,
    thresholds: np.ndarray | None = None,
    batch_size: int = 64,
    align_corners: bool = False,
    detector_iou: float = DETECTOR_IOU,
    batch_transform: Callable[[dict], dict] | None = None,
    union: str = "category_hit",
    primary: str = "coverage",
) -> NetDissectResult:
    """NetDissect of one layer over both splits (thresholds: the source's unless given), on the
    concepts of the given store view (the experiments pass the probes' view, so the IoU columns
    line up with the probes' concepts; ``task=netdissect`` tallies every label).

    ``batch_transform`` may rewrite each raw batch (e.g. move the concept masks with the image).
    """
    datamodule = SegmentationDataModule(concepts, source, batch_size=batch_size, in_memory=False)
    return dissect_layer(
        datamodule,
        dissection_labels(concepts, primary),
        source.thresholds if thresholds is None else thresholds,
        union=union,
        align_corners=align_corners,
        detector_iou=detector_iou,
        batch_transform=batch_transform,
    )


def detector_counts(
    result: NetDissectResult, concepts, primary: str = "coverage"
) -> dict[str, int]:
    """Unique concept detectors per category name (every category present), plus totals."""
    labels = dissection_labels(concepts, primary)
    by_code = result.unique_detectors(labels.category)
    counts = {name: by_code.get(code, 0) for code, name in enumerate(labels.category_names)}
    counts["unique"] = sum(by_code.values())
    counts["detectors"] = int(result.detector.sum())
    return counts


def plot_detector_bars(
    table: Table, label: str, skip: set[str], title: str, path: Path, rotation: int = 0
) -> None:
    """Unique detectors per category, stacked, one bar per row of `table` (labelled by `label`);
    every column outside `skip` and `label` is a category."""
    plt = pyplot()
    cats = [c for c in table.columns if c not in skip | {label}]
    fig, ax = plt.subplots(figsize=(1.5 + 0.8 * len(table), 4))
    bottom = np.zeros(len(table))
    for cat in cats:
        values = np.array(table[cat], float)
        ax.bar(np.arange(len(table)), values, bottom=bottom, label=cat)
        bottom += values
    ax.set_xticks(
        np.arange(len(table)), table[label], rotation=rotation, ha="right" if rotation else "center"
    )
    ax.set_ylabel("unique concept detectors")
    ax.set_title(title)
    ax.legend(fontsize=7)
    save_figure(fig, path)


def save_figure(fig, path: Path) -> Path:
    """Write a matplotlib figure to PNG and close it."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def pyplot():
    """matplotlib.pyplot on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
