"""The report's Network Dissection section: detector counts per category and unit strips.

A ``task=netdissect`` run directory holds units.csv, dissection.h5 and summary.json
(docs/netdissect.md). For each such run the report shows the detector counts per category (the
published bar charts: unique concepts per category, and units per label coloured by category),
a table of the counts, the strips of the best units inline, and every unit's strip on paged HTML
(``units-<run>/page-001.html`` …; 64 strips a page, lazily loaded, so a 512-unit layer opens
quickly). A strip is the unit's top-k images (by maximum activation) with its thresholded map
outlined, titled with its label, category and IoU. ``dissection_images`` returns the same
pictures as (name, image) pairs for a logger.
"""

from __future__ import annotations

import csv
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from net2vec.analysis.figures import plt
from net2vec.analysis.images import ImagesError, StoredImages, highlight, strip
from net2vec.analysis.report import Report, slug
from net2vec.analysis.table import Table

PER_PAGE = 64
PAGE_STYLE = (
    "body{font-family:sans-serif;max-width:1360px;margin:auto;padding:0 1em}img{max-width:100%}"
)
PALETTE = {
    "object": "#4B4CBF",
    "scene": "#55B05B",
    "part": "#50BDAC",
    "material": "#D4CF24",
    "texture": "#F0883B",
    "color": "#D92E2B",
}


@dataclass
class DissectionRun:
    """One task=netdissect run directory."""

    path: Path
    summary: dict
    units: list[dict]
    top_images: np.ndarray  # (K, k) dataset rows
    extra: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        config = self.summary.get("config", {})
        return f"{config.get('network', '?')}/{config.get('layer', '?')}/netdissect"

    @property
    def counts(self) -> dict:
        return self.summary.get("netdissect", {})

    def order(self) -> list[int]:
        """Units by IoU of their top label, best first (NetDissect's report order)."""
        return sorted(range(len(self.units)), key=lambda u: -float(self.units[u]["iou"]))

    def best_per_label(self, count: int) -> list[int]:
        """The best unit of each of the `count` labels with the highest IoU."""
        chosen, seen = [], set()
        for unit in self.order():
            if self.units[unit]["concept"] not in seen:
                seen.add(self.units[unit]["concept"])
                chosen.append(unit)
        return chosen[:count]


def is_dissection_run(path: str | Path) -> bool:
    """Whether `path` is a task=netdissect run directory."""
    path = Path(path)
    return (path / "units.csv").is_file() and (path / "dissection.h5").is_file()


def read_unit_run(path: Path, table: str, arrays: str) -> tuple[dict, list[dict], np.ndarray]:
    """summary.json, the per-unit CSV ``table`` and the top images of the HDF5 file ``arrays`` of
    a run that dissected a layer (task=netdissect, compexp)."""
    with open(path / table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    with h5py.File(path / arrays, "r") as h5:
        top_images = h5["top_images"][()]
    return json.loads((path / "summary.json").read_text()), rows, top_images


def load_dissection(path: str | Path) -> DissectionRun:
    """Read a task=netdissect run directory."""
    path = Path(path)
    return DissectionRun(path, *read_unit_run(path, "units.csv", "dissection.h5"))


def unit_strip(images: StoredImages, run: DissectionRun, unit: int, k: int, size: int = 96):
    """The unit's top-k images with its thresholded map outlined, titled label, category, IoU."""
    row = run.units[unit]
    tiles = [
        highlight(images.image(int(r), size), images.unit_mask(int(r), unit, size))
        for r in run.top_images[unit, :k]
    ]
    mark = "" if row["detector"] == "True" else "  (below the detector threshold)"
    title = f"unit {unit}: {row['concept']} ({row['category']}), IoU {float(row['iou']):.3f}{mark}"
    formula = run.extra.get("formulas", {}).get(unit)  # set by compexp_report.attach_formulas
    if formula:
        title += f"  |  formula {formula[0]}, IoU {formula[1]:.3f}"
    return strip(tiles, title)


def detector_figure(run: DissectionRun, top_labels: int = 40):
    """Unique detected concepts per category, and detector units per label (by category)."""
    counts = run.counts.get("by_category", {})
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 3.8), gridspec_kw={"width_ratios": [1, 3]})
    names = list(counts)
    colours = [PALETTE.get(n, "#888888") for n in names]
    left.bar(names, [counts[n]["unique_concepts"] for n in names], color=colours)
    left.set_ylabel("unique concepts detected")
    left.set_title(f"{run.label}: {run.counts.get('unique_concepts', 0)} unique")
    left.tick_params(axis="x", rotation=45)
    per_label: dict[tuple[str, str], int] = {}
    for row in run.units:
        if row["detector"] == "True":
            key = (row["concept"], row["category"])
            per_label[key] = per_label.get(key, 0) + 1
    ranked = sorted(per_label.items(), key=lambda item: -item[1])[:top_labels]
    right.bar(
        range(len(ranked)),
        [n for _, n in ranked],
        color=[PALETTE.get(cat, "#888888") for (_, cat), _ in ranked],
    )
    right.set_xticks(range(len(ranked)), [name for (name, _), _ in ranked], rotation=90, fontsize=7)
    right.set_ylabel("detector units")
    right.set_title(
        f"{run.counts.get('detectors', 0)} of {run.counts.get('units', 0)} units are detectors "
        f"(IoU > {run.counts.get('detector_iou', 0.04)}), coloured by category"
    )
    fig.tight_layout()
    return fig


def dissection_images(run: DissectionRun, k: int = 8, units=None, size: int = 96) -> list:
    """(name, picture) pairs for a logger: the detector bar chart (a matplotlib figure) and the
    strip of each unit (PIL images; `units` default: all, best first)."""
    images = StoredImages(run.summary.get("stores", {}), every_label=True)
    chosen = run.order() if units is None else list(units)
    pairs: list = [(f"netdissect/{slug(run.label)}/detectors", detector_figure(run))]
    for unit in chosen:
        pairs.append(
            (
                f"netdissect/{slug(run.label)}/unit_{unit:04d}",
                unit_strip(images, run, unit, k, size),
            )
        )
    return pairs


def write_unit_pages(run: DissectionRun, out_dir: Path, k: int = 8, size: int = 96) -> Path:
    """Every unit's strip as a JPEG and paged HTML (PER_PAGE strips a page); the first page."""
    folder = Path(out_dir) / f"units-{slug(run.label)}"
    folder.mkdir(parents=True, exist_ok=True)
    images = StoredImages(run.summary.get("stores", {}), every_label=True)
    order = run.order()
    pages = [order[i : i + PER_PAGE] for i in range(0, len(order), PER_PAGE)] or [[]]
    for unit in order:
        unit_strip(images, run, unit, k, size).save(folder / f"unit-{unit:04d}.jpg", quality=85)
    for number, units in enumerate(pages, start=1):
        nav = " ".join(
            f"<b>{n}</b>" if n == number else f"<a href='page-{n:03d}.html'>{n}</a>"
            for n in range(1, len(pages) + 1)
        )
        body = "".join(
            f"<div><img loading='lazy' src='unit-{u:04d}.jpg' alt='unit {u}'></div>" for u in units
        )
        (folder / f"page-{number:03d}.html").write_text(
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(run.label)} "
            f"units, page {number}</title><style>{PAGE_STYLE}</style></head><body>"
            f"<h1>{html.escape(run.label)}: units by IoU, page {number} of {len(pages)}</h1>"
            f"<p><a href='../index.html'>report</a> · pages: {nav}</p>{body}<p>pages: {nav}</p>"
            "</body></html>",
            encoding="utf-8",
        )
    return folder / "page-001.html"


def add_dissection_sections(report: Report, runs: list[DissectionRun], k: int = 8) -> None:
    """One NetDissect section per run: counts, bar chart, the best units' strips, unit pages."""
    for run in runs:
        counts = run.counts
        report.subsection(
            f"Network Dissection: {run.label}",
            f"{counts.get('detectors', 0)} of {counts.get('units', 0)} units are detectors "
            f"(IoU > {counts.get('detector_iou', 0.04)}) of {counts.get('unique_concepts', 0)} "
            f"unique concepts; union rule {counts.get('union', '?')}, primary category "
            f"{counts.get('primary', '?')} ({run.path})",
        )
        rows = [
            [name, c["detectors"], c["unique_concepts"]]
            for name, c in counts.get("by_category", {}).items()
        ]
        report.table(
            f"netdissect_counts_{slug(run.label)}",
            Table(["category", "detectors", "unique_concepts"], rows),
        )
        report.figure(f"netdissect_detectors_{slug(run.label)}", detector_figure(run))
        try:
            first = write_unit_pages(run, report.out_dir, k)
        except ImagesError as error:
            report.note(f"{run.label}: no unit images ({error})")
            continue
        report.link(
            f"every unit's top {k} images ({len(run.units)} units, {PER_PAGE} a page)",
            str(first.relative_to(report.out_dir)),
        )
        best = [Image.open(first.parent / f"unit-{u:04d}.jpg") for u in run.best_per_label(6)]
        report.image(
            f"netdissect_best_units_{slug(run.label)}",
            grid_of(best),
            "the best unit of each of the 6 labels with the highest IoU",
        )


def grid_of(images: list[Image.Image]) -> Image.Image:
    """Pictures stacked vertically on white."""
    width = max((i.width for i in images), default=1)
    canvas = Image.new("RGB", (width, sum(i.height + 4 for i in images) or 1), "white")
    y = 0
    for image in images:
        canvas.paste(image, (0, y))
        y += image.height + 4
    return canvas
