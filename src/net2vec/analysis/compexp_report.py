"""The report's compositional-explanation section (docs/compexp.md).

A ``task=compexp`` run directory holds formulas.csv, compexp.h5 and summary.json. For each such
run the report shows the mean IoU of the best formula up to each length (Mu & Andreas' figure),
a table of the units that gain most over their single label, and for each of them a strip of
its top images with the unit's thresholded map outlined (yellow) and the formula's mask filled
and outlined (magenta). ``attach_formulas`` puts each unit's formula on the unit pages of a
``task=netdissect`` run of the same network and layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from net2vec.analysis.dissection_report import DissectionRun, grid_of, read_unit_run
from net2vec.analysis.figures import plt
from net2vec.analysis.images import TRUTH, ImagesError, StoredImages, highlight, overlay, strip
from net2vec.analysis.report import Report, slug
from net2vec.analysis.table import Table
from net2vec.probes.formulas import evaluate, parse


@dataclass
class CompExpRun:
    """One task=compexp run directory."""

    path: Path
    summary: dict
    rows: list[dict]  # formulas.csv
    top_images: np.ndarray  # (K, k) dataset rows

    @property
    def layer(self) -> tuple[str, str]:
        config = self.summary.get("config", {})
        return str(config.get("network", "?")), str(config.get("layer", "?"))

    @property
    def label(self) -> str:
        return "/".join(self.layer) + "/compexp"

    @property
    def figures(self) -> dict:
        return self.summary.get("compexp", {})

    def by_gain(self, count: int) -> list[int]:
        """The `count` units whose formula gains most IoU over their single label."""
        gains = [float(row["gain"]) for row in self.rows]
        return sorted(range(len(gains)), key=lambda u: -gains[u])[:count]


def is_compexp_run(path: str | Path) -> bool:
    """Whether `path` is a task=compexp run directory."""
    path = Path(path)
    return (path / "formulas.csv").is_file() and (path / "compexp.h5").is_file()


def load_compexp(path: str | Path) -> CompExpRun:
    """Read a task=compexp run directory."""
    path = Path(path)
    return CompExpRun(path, *read_unit_run(path, "formulas.csv", "compexp.h5"))


def attach_formulas(dissections: list[DissectionRun], runs: list[CompExpRun]) -> None:
    """Each NetDissect run's units get the formula of the compexp run of the same layer (their
    unit pages then show it beside the single label)."""
    by_layer = {run.layer: run for run in runs}
    for dissection in dissections:
        config = dissection.summary.get("config", {})
        match = by_layer.get((str(config.get("network", "?")), str(config.get("layer", "?"))))
        if match is not None:
            dissection.extra["formulas"] = {
                int(row["unit"]): (row["formula"], float(row["iou"])) for row in match.rows
            }


def length_figure(runs: list[CompExpRun]) -> plt.Figure:
    """Mean IoU of each unit's best formula up to each length, one line per run."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for run in runs:
        by_length = run.figures.get("mean_iou_by_length", {})
        lengths = sorted(by_length, key=int)
        ax.plot([int(n) for n in lengths], [by_length[n] for n in lengths], "o-", label=run.label)
    ax.set_xlabel("maximum formula length")
    ax.set_ylabel("mean IoU of the best formula")
    ax.set_title("IoU by formula length (beam search)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def formula_strip(images: StoredImages, run: CompExpRun, unit: int, k: int, size: int = 96):
    """The unit's top-k images: its map outlined, the formula's mask filled and outlined."""
    row = run.rows[unit]
    names = [str(n) for n in images.concepts.names]
    tree = parse(row["formula"], names) if row["formula"] else None
    tiles = []
    for r in run.top_images[unit, :k]:
        picture = highlight(images.image(int(r), size), images.unit_mask(int(r), unit, size))
        if tree is not None:
            mask = evaluate(tree, lambda c, r=int(r): images.truth(r, names[c], size))
            picture = overlay(picture, mask, TRUTH, alpha=0.3)
        tiles.append(picture)
    title = (
        f"unit {unit}: {row['formula']} IoU {float(row['iou']):.3f} "
        f"(label {row['label']} {float(row['label_iou']):.3f})"
    )
    return strip(tiles, title)


def add_compexp_sections(
    report: Report, runs: list[CompExpRun], k: int = 8, count: int = 6
) -> None:
    """The IoU-by-length figure over every run, then per run the best-gain units: a table and
    their strips."""
    if not runs:
        return
    report.text(
        "each unit's best formula of labels (OR, AND, AND NOT) by beam search; "
        + "; ".join(
            f"{run.label}: mean IoU {run.figures.get('mean_iou', 0):.3f} vs single label "
            f"{run.figures.get('mean_label_iou', 0):.3f}, "
            f"{100 * run.figures.get('share_longer', 0):.0f}% of units explained by a longer formula"
            for run in runs
        ),
    )
    report.figure("compexp_iou_by_length", length_figure(runs))
    columns = ["unit", "formula", "iou", "length", "label", "label_iou", "gain"]
    for run in runs:
        chosen = run.by_gain(count)
        rows = [[run.rows[u][c] for c in columns] for u in chosen]
        report.table(f"compexp_gain_{slug(run.label)}", Table(columns, rows))
        try:
            images = StoredImages(run.summary.get("stores", {}), every_label=True)
            strips = [formula_strip(images, run, u, k) for u in chosen]
        except ImagesError as error:
            report.note(f"{run.label}: no unit images ({error})")
            continue
        report.image(
            f"compexp_units_{slug(run.label)}",
            grid_of(strips),
            "units with the largest gain over their single label: map outlined in yellow, "
            "the formula's mask in magenta",
        )


def compexp_runs(directories: list[Path]) -> list[CompExpRun]:
    """The task=compexp runs among the report's run directories."""
    return [load_compexp(path) for path in directories if is_compexp_run(path)]
