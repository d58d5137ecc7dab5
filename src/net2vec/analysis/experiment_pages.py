"""The report's pages for `experiments.py` runs: their tables and figures, one section per run.

An experiments run directory holds ``experiments.json`` (the summary) beside the CSV tables and
PNG figures of each experiment (axis alignment, robustness, ablation, per-layer summaries).
"""

from __future__ import annotations

import json
from pathlib import Path

from net2vec.analysis.report import Report
from net2vec.analysis.table import Table

EXPERIMENTS = ("alignment", "robustness", "ablation", "summaries")


def is_experiments_run(path: str | Path) -> bool:
    """Whether `path` is an experiments.py run directory (and not a probe run)."""
    path = Path(path)
    return (path / "experiments.json").is_file() and not (path / "results.csv").is_file()


def add_experiment_pages(report: Report, run_dirs: list[str | Path]) -> None:
    """One section per experiments run: every CSV as a table, every PNG as a figure."""
    for run_dir in map(Path, run_dirs):
        if not (run_dir / "experiments.json").is_file():
            raise FileNotFoundError(
                f"{run_dir}: no experiments.json (not an experiments.py run directory)"
            )
        summary = json.loads((run_dir / "experiments.json").read_text())
        title = f"Experiments: {summary.get('network', '?')} {summary.get('layer', '')}".strip()
        done = [name for name in EXPERIMENTS if name in summary]
        report.subsection(title, f"{run_dir} — {', '.join(done) or 'no experiment'}")
        prefix = f"{summary.get('network', 'net')}-{run_dir.name}"
        for csv_path in sorted(run_dir.glob("*.csv")):
            report.table(f"{prefix} {csv_path.stem}", Table.from_csv(csv_path))
        for png_path in sorted(run_dir.glob("*.png")):
            report.figure_file(f"{prefix} {png_path.stem}", png_path)
