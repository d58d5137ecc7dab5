"""The TCAV section of evaluate.py's report, from task=tcav run directories (docs/tcav.md).

Per run: the concept × class heatmap of TCAV scores (cells that are not significant greyed),
the top significant concepts per class with their intervals against the random concepts' mean,
the ablation bars (class-probability drop when the concept's direction is projected out or
clamped, against random directions), and the significant cells as a table. The figures are
``probes.tcav_figures``'s, the same the run logged to W&B.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from net2vec.analysis.report import Report, slug
from net2vec.analysis.table import Table
from net2vec.probes import tcav_figures
from net2vec.probes.tcav_outcome import read_columns, summary_text


@dataclass
class TcavRun:
    """A task=tcav run directory: its summary and tcav.csv / ablation.csv as named columns."""

    path: Path
    summary: dict
    tcav: dict
    ablation: dict | None

    @property
    def label(self) -> str:
        config = self.summary["config"]
        return f"{config['network']}/{config['layer']}/tcav"


def is_tcav_run(path: str | Path) -> bool:
    """Whether `path` is a task=tcav run directory."""
    return (Path(path) / "tcav.csv").is_file() and (Path(path) / "summary.json").is_file()


def load_tcav(path: str | Path) -> TcavRun:
    """Read a task=tcav run directory."""
    path = Path(path)
    ablation = path / "ablation.csv"
    return TcavRun(
        path,
        json.loads((path / "summary.json").read_text()),
        read_columns(path / "tcav.csv"),
        read_columns(ablation) if ablation.is_file() else None,
    )


def significant_table(run: TcavRun) -> Table:
    """The significant (concept, class) cells, by class then score."""
    tcav = run.tcav
    rows = np.flatnonzero(tcav["significant"] == 1)
    rows = rows[np.lexsort((-tcav["score"][rows], tcav["class"][rows]))]
    columns = ["class", "concept", "category", "score", "score_lo", "score_hi", "random_mean", "q"]
    return Table(columns, [[tcav[c][i] for c in columns] for i in rows])


def add_tcav_sections(report: Report, runs: list[TcavRun]) -> None:
    """One report subsection per task=tcav run (module docstring)."""
    if runs:
        report.text(
            "Does the network's decision depend on a concept vector? Scores are the share of a "
            "class's images whose class logit increases along the concept's vector; tested "
            "against random concepts (t-test, Benjamini-Hochberg across concept x class)."
        )
    for run in runs:
        report.subsection(f"TCAV: {run.label}")
        report.note(summary_text(run.summary))
        report.table(f"tcav_significant_{slug(run.label)}", significant_table(run))
        for name, fig in tcav_figures.all_figures(run.tcav, run.ablation):
            report.figure(f"{name}_{slug(run.label)}", fig)


def tcav_runs(directories: list[Path]) -> list[TcavRun]:
    """The task=tcav runs among the report's run directories."""
    return [load_tcav(path) for path in directories if is_tcav_run(path)]
