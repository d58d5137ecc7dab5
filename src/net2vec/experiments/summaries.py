"""Per-layer NetDissect summaries (docs/method.md §7): top concepts per unit, top units per concept.

For every layer of a network (its ``layers`` aliases unless given), NetDissect gives a (K, C)
IoU matrix; from it one long table ``layer_units.csv`` (layer, unit, rank, concept, category,
IoU, detector flag of the unit) holds each unit's ``top`` concepts, ``layer_concepts.csv`` each
pixel-level concept's ``top`` units, and ``layer_detectors.csv`` the unique detectors per
category per layer (also plotted).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from net2vec.experiments.common import (
    Table,
    at_quantile,
    detector_counts,
    dissect,
    plot_detector_bars,
)

log = logging.getLogger(__name__)


def unit_rows(layer: str, result, concepts, top: int) -> list[list]:
    """Each unit's `top` concepts by IoU."""
    names, cats = (
        np.asarray(concepts.names).astype(str),
        np.asarray(concepts.categories).astype(str),
    )
    rows = []
    for unit, ious in enumerate(result.iou):
        for rank, c in enumerate(np.argsort(-ious, kind="stable")[:top]):
            rows.append(
                [
                    layer,
                    unit,
                    rank + 1,
                    names[c],
                    cats[c],
                    float(ious[c]),
                    bool(result.detector[unit]),
                ]
            )
    return rows


def concept_rows(layer: str, result, concepts, top: int) -> list[list]:
    """Each pixel-level concept's `top` units by IoU."""
    names, cats = (
        np.asarray(concepts.names).astype(str),
        np.asarray(concepts.categories).astype(str),
    )
    rows = []
    for c in np.flatnonzero(np.asarray(concepts.pixel_level, bool)):
        ious = result.iou[:, c]
        for rank, unit in enumerate(np.argsort(-ious, kind="stable")[:top]):
            rows.append(
                [
                    layer,
                    names[c],
                    cats[c],
                    rank + 1,
                    int(unit),
                    float(ious[unit]),
                    bool(result.detector[unit] and result.top_concept[unit] == c),
                ]
            )
    return rows


def layer_summaries(ctx, concepts, layers=None, top: int = 3) -> tuple[Table, Table, Table]:
    """(units table, concepts table, detector counts per layer) over the network's layers."""
    layers = [str(a) for a in (layers or ctx.layers)]
    units, per_concept, counts = [], [], []
    header = None
    for layer in layers:
        store = ctx.store(concepts, layer)
        result = dissect(concepts, at_quantile(store, ctx.quantile), **ctx.dissect)
        units += unit_rows(layer, result, concepts, top)
        per_concept += concept_rows(layer, result, concepts, top)
        found = detector_counts(result, concepts)
        header = header or ["layer", "units", *found]
        counts.append([layer, store.num_filters, *found.values()])
        log.info(
            "layer %s: %d unique detectors of %d units", layer, found["unique"], store.num_filters
        )
    return (
        Table(["layer", "unit", "rank", "concept", "category", "iou", "detector"], units),
        Table(
            ["layer", "concept", "category", "rank", "unit", "iou", "is_top_concept_of_unit"],
            per_concept,
        ),
        Table(header, counts),
    )


def plot_layers(counts: Table, path: Path) -> None:
    """Stacked unique detectors per category, one bar per layer."""
    plot_detector_bars(
        counts, "layer", {"units", "unique", "detectors"}, "Unique detectors per layer", path
    )


def run_summaries(ctx, concepts, out_dir: Path, params) -> dict:
    """The three per-layer tables and the figure into `out_dir`."""
    units, per_concept, counts = layer_summaries(
        ctx, concepts, params.get("layers"), int(params.get("top", 3))
    )
    units.to_csv(out_dir / "layer_units.csv")
    per_concept.to_csv(out_dir / "layer_concepts.csv")
    counts.to_csv(out_dir / "layer_detectors.csv")
    plot_layers(counts, out_dir / "layer_detectors.png")
    return dict(zip(counts["layer"], counts["unique"]))
