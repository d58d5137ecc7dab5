"""``task=netdissect``: Network Dissection of one layer as a run (docs/method.md §7).

The task tallies every label of the concept store (both splits, image-level labels as whole-image
masks) against the layer's stored activations, keeps each unit's top activating images on the
way, and writes into the run directory:

- ``units.csv``: one row per unit: ``unit, concept, category, label_number, iou, detector`` (its
  top label over every category; detector: IoU > ``detector_iou``, and above every shuffled-mask
  null when ``require_significant``), then the next two labels (``concept_2, category_2,
  iou_2, concept_3, …``), then ``null_iou, p_null, q_null, significant`` (``probes.unit_null``:
  the tie-safe p-value, its Benjamini–Hochberg q-value across units, q_null ≤ ``fdr``; empty when
  ``null_draws`` is 0);
- ``dissection.h5``: ``iou`` (K, C), ``concepts``, ``categories``, ``label_numbers``,
  ``top_images`` (K, k) dataset rows by max activation and ``top_values`` (K, k), ``thresholds``;
- ``summary.json``: per category the detectors and the unique concepts they detect, and totals;
  ``null`` gives the totals under both rules (IoU alone, and IoU with the null beaten).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from net2vec.common import wandb_media
from net2vec.common.cache import atomic_path
from net2vec.probes.netdissect import (
    DETECTOR_IOU,
    NetDissectResult,
    dissect_layer,
    dissection_labels,
)
from net2vec.probes.outcome import write_task_summary
from net2vec.probes.unit_null import UnitNull, null_counts, unit_null_layer

# the category order of the published bar charts; others follow alphabetically
CATEGORY_ORDER = ("object", "scene", "part", "material", "texture", "color")


class TopImages:
    """Running top-k dataset rows per unit by the unit's maximum activation over the map."""

    def __init__(self, num_filters: int, k: int) -> None:
        self.k = int(k)
        self.values = torch.full((num_filters, 0), -torch.inf)
        self.rows = torch.zeros((num_filters, 0), dtype=torch.long)

    def update(self, activations: torch.Tensor, rows: torch.Tensor) -> None:
        peak = activations.detach().float().flatten(2).amax(2).t().cpu()  # (K, n)
        values = torch.cat([self.values, peak], 1)
        index = torch.cat([self.rows, rows.cpu()[None].expand(len(peak), -1)], 1)
        top = values.topk(min(self.k, values.shape[1]), dim=1)
        self.values, self.rows = top.values, index.gather(1, top.indices)

    def observe(self, batch: dict) -> dict:
        """A batch transform that records the batch and passes it on."""
        self.update(batch["activations"], batch["image_index"])
        return batch


@dataclass
class DissectionOutcome:
    """A dissected layer: the tally's result with the labels it ranked, and the top images."""

    result: NetDissectResult
    names: np.ndarray  # (C,)
    categories: np.ndarray  # (C,) primary category used by the tally
    label_numbers: np.ndarray  # (C,)
    thresholds: np.ndarray  # (K,)
    top_images: np.ndarray  # (K, k)
    top_values: np.ndarray  # (K, k)
    settings: dict
    null: UnitNull | None = None
    require_significant: bool = False
    task: str = "netdissect"

    def write(self, run_dir: Path, config: dict, timings: dict, stores: dict) -> dict:
        """units.csv, dissection.h5 and summary.json (the task's outcome protocol, see run.pipeline)."""
        return write_dissection(self, run_dir, config, timings, stores)

    def log(self, logger, summary: dict) -> None:
        """The counts and units.csv to the run's logger."""
        log_dissection(logger, *self.unit_rows(), summary)

    def terminal(self, summary: dict) -> str:
        """What the run prints at its end."""
        return summary_line(summary)

    @property
    def detector(self) -> np.ndarray:
        """(K,) the detectors under the run's rule: IoU > threshold (and the null beaten)."""
        if self.require_significant:
            return self.result.detector & self.null.significant
        return self.result.detector

    def unit_rows(self, ranked: int = 3) -> tuple[list[str], list[list]]:
        """Header and rows of units.csv."""
        header = ["unit", "concept", "category", "label_number", "iou", "detector"]
        for r in range(2, ranked + 1):
            header += [f"concept_{r}", f"category_{r}", f"iou_{r}"]
        header += ["null_iou", "p_null", "q_null", "significant"]
        rows = []
        for unit in range(len(self.result.iou)):
            best = self.result.ranked(unit, ranked)
            row = [unit, str(self.names[best[0]]), str(self.categories[best[0]])]
            row += [int(self.label_numbers[best[0]]), _num(self.result.iou[unit, best[0]])]
            row.append(bool(self.detector[unit]))
            for c in best[1:]:
                row += [str(self.names[c]), str(self.categories[c]), _num(self.result.iou[unit, c])]
            row += ["", "", "", ""] if self.null is None else self.null_row(unit)
            rows.append(row)
        return header, rows

    def null_row(self, unit: int) -> list:
        """null_iou, p_null, q_null, significant of one unit."""
        null = self.null
        values = (null.null_iou[unit], null.p_null[unit], null.q_null[unit])
        return [_num(v) for v in values] + [bool(null.significant[unit])]

    def counts(self) -> dict:
        """Per category (published order): detector units and the unique concepts they detect;
        ``null``: the totals under both rules."""
        detector = self.detector
        top_category = self.categories[self.result.top_concept]
        present = set(self.categories.tolist())
        order = [c for c in CATEGORY_ORDER if c in present] + sorted(present - set(CATEGORY_ORDER))
        by_category = {
            name: {
                "detectors": int((detector & (top_category == name)).sum()),
                "unique_concepts": len(
                    set(self.result.top_concept[detector & (top_category == name)].tolist())
                ),
            }
            for name in order
        }
        return {
            "units": int(len(detector)),
            "detectors": int(detector.sum()),
            "unique_concepts": len(set(self.result.top_concept[detector].tolist())),
            "by_category": by_category,
            "null": null_counts(self.result, self.null, self.require_significant),
        }


def _num(value) -> str:
    return f"{float(value):.6g}"


def summary_line(summary: dict) -> str:
    """One terminal line: detectors, unique concepts and their split by category."""
    nd = summary["netdissect"]
    parts = ", ".join(
        f"{name} {c['detectors']} ({c['unique_concepts']})"
        for name, c in nd["by_category"].items()
        if c["detectors"]
    )
    config, null = summary["config"], nd.get("null")
    rule = " and beating the null" if null and null["require_significant"] else ""
    line = (
        f"netdissect {config['network']} {config['layer']}: {nd['detectors']}/{nd['units']} units "
        f"are detectors (IoU > {nd['detector_iou']:g}{rule}) of {nd['unique_concepts']} unique "
        f"concepts [union={nd['union']}]; by category, detectors (unique): {parts or 'none'}"
    )
    if null:
        line += (
            f"\nshuffled-mask null ({null['draws']} draws): {null['detectors_beating_null']} of "
            f"{null['detectors_iou']} IoU detectors beat it (q_null <= {null['fdr']:g}) "
            f"({null['unique_concepts_beating_null']} of {null['unique_concepts_iou']} unique concepts)"
        )
    return line


def log_dissection(logger, header: list[str], rows: list[list], summary: dict) -> None:
    """The counts as metrics (any logger); with W&B, units.csv as a table and the detector counts
    per category as bar charts."""
    if logger is None:
        return
    nd = summary["netdissect"]
    flat = {f"netdissect/{key}": nd[key] for key in ("units", "detectors", "unique_concepts")}
    null = nd.get("null") or {}
    flat.update(
        {f"netdissect/{k}": v for k, v in null.items() if k.startswith(("detectors", "unique"))}
    )
    for name, counts in nd["by_category"].items():
        flat.update({f"netdissect/{name}/{key}": value for key, value in counts.items()})
    logger.log_metrics(flat)
    if hasattr(logger, "log_table"):
        logger.log_table(key="units", columns=header, data=rows)
    if wandb_media.is_wandb(logger):
        wandb_media.log_detector_plots(logger.experiment, nd)


def write_unit_table(path: Path, header: list[str], rows: list[list]) -> None:
    """A per-unit CSV (units.csv, formulas.csv), written atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])


def write_unit_arrays(h5: h5py.File, outcome) -> None:
    """What the report's unit strips read from a dissected layer's outcome (netdissect, compexp):
    thresholds (K,), top_images and top_values (K, k), and the task's settings as attributes."""
    h5["thresholds"] = outcome.thresholds.astype(np.float32)
    h5["top_images"] = outcome.top_images.astype(np.int64)
    h5["top_values"] = outcome.top_values.astype(np.float32)
    h5.attrs.update({k: str(v) for k, v in outcome.settings.items()})


def write_dissection(
    outcome: DissectionOutcome, run_dir: Path, config: dict, timings: dict, stores: dict
) -> dict:
    """units.csv, dissection.h5 and summary.json into ``run_dir``; returns the summary."""
    run_dir = Path(run_dir)
    write_unit_table(run_dir / "units.csv", *outcome.unit_rows())
    text = h5py.string_dtype()
    with atomic_path(run_dir / "dissection.h5") as tmp, h5py.File(tmp, "w") as h5:
        h5["iou"] = outcome.result.iou.astype(np.float32)
        h5.create_dataset("concepts", data=[str(n) for n in outcome.names], dtype=text)
        h5.create_dataset("categories", data=[str(c) for c in outcome.categories], dtype=text)
        h5["label_numbers"] = outcome.label_numbers.astype(np.int64)
        write_unit_arrays(h5, outcome)
    section = {**outcome.settings, **outcome.counts()}
    return write_task_summary(run_dir, config, outcome.task, section, timings, stores)


class NetDissectTask:
    """Network Dissection of the run's layer (built from conf/task/netdissect.yaml).

    ``datamodule(concepts, activations)`` is a SegmentationDataModule factory (Hydra partial);
    ``union``: ``category_hit`` (NetDissect-Lite) | ``any_label``; ``primary``: ``coverage``
    (NetDissect) | ``first_listed``; ``top_images``: how many top images per unit to keep."""

    metric = "iou"

    def __init__(
        self,
        name: str,
        datamodule: Callable,
        union: str = "category_hit",
        primary: str = "coverage",
        detector_iou: float = DETECTOR_IOU,
        align_corners: bool = False,
        top_images: int = 16,
        null_draws: int = 0,
        null_seed: int = 0,
        fdr: float = 0.05,
        require_significant: bool = False,
        **settings,
    ) -> None:
        self.name, self.datamodule = str(name), datamodule
        self.union, self.primary = str(union), str(primary)
        self.detector_iou, self.align_corners = float(detector_iou), bool(align_corners)
        self.top_images = int(top_images)
        self.null_draws, self.null_seed = int(null_draws), int(null_seed)
        self.require_significant, self.fdr = bool(require_significant), float(fdr)
        if self.null_draws < 0 or (self.require_significant and not self.null_draws):
            raise ValueError(
                f"task.null_draws={null_draws}: expected >= 1 with task.require_significant=true"
                " (0 skips the null), e.g. stats.null_draws=5"
            )

    def run(self, concepts, activations, subsets, fitter, timer) -> DissectionOutcome:
        """Tally every label (both splits) against the layer; the probes' arguments are unused."""
        every = concepts.with_every_label()
        labels = dissection_labels(every, self.primary)
        top = TopImages(activations.num_filters, self.top_images)
        with timer("netdissect"):
            result = dissect_layer(
                self.datamodule(every, activations),
                labels,
                activations.thresholds,
                union=self.union,
                align_corners=self.align_corners,
                detector_iou=self.detector_iou,
                batch_transform=top.observe,
                progress=True,
            )
        null = None
        if self.null_draws:
            with timer("netdissect_null"):
                null = unit_null_layer(
                    self.datamodule(every, activations),
                    result,
                    labels,
                    activations.thresholds,
                    self.null_draws,
                    self.null_seed,
                    self.align_corners,
                    self.fdr,
                    progress=True,
                )
        return DissectionOutcome(
            result,
            np.asarray(every.names),
            np.asarray(labels.category_names)[labels.category],
            np.asarray(every.label_numbers),
            np.asarray(activations.thresholds),
            top.rows.numpy(),
            top.values.numpy(),
            {
                "union": self.union,
                "primary": self.primary,
                "detector_iou": self.detector_iou,
                "align_corners": self.align_corners,
                "quantile": float(getattr(activations, "quantile", float("nan"))),
                "labels": int(every.num_concepts),
                "images": int(every.num_images),
                "require_significant": self.require_significant,
            },
            null,
            self.require_significant,
        )
