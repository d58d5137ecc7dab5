"""`evaluate(cfg)`: load runs, compute every analysis of the paper's §4-5, write the report.

``analyse(runs, out_dir, ...)`` does the work without Hydra (handy in a notebook);
``evaluate(cfg)`` reads conf/evaluate.yaml's keys, finds the output directory and logs to W&B
when ``logger=wandb``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from net2vec.analysis import sections as part
from net2vec.analysis.dissection_report import is_dissection_run, load_dissection
from net2vec.analysis.experiment_pages import is_experiments_run
from net2vec.analysis.report import Report
from net2vec.analysis.runs import Run, load_runs
from net2vec.analysis.sections import Inputs
from net2vec.analysis.summary import headline_lines, summary_html
from net2vec.analysis.wandb_report import log_to_wandb
from net2vec.common.wandb_media import is_wandb
from net2vec.run.identity import flat_config

log = logging.getLogger(__name__)


class NoRunsError(ValueError):
    """evaluate was given no run directories."""


# The report's sections in the paper's order: (anchor, title, builder). A builder fills its
# section from the Inputs; one that adds nothing leaves its section out. A new kind of run adds
# one line here (its builder picks its run directories from ``inputs.directories``).
SECTIONS = [
    ("table1", "Table 1 and Fig. 2: single filter vs all filters", part.table1_section),
    ("fig3", "Fig. 3: score against the number of filters F", part.fig3_section),
    ("fig4-5", "Figs. 4-5: filters chosen as best single filter", part.fig4_5_section),
    ("fig7", "Fig. 7: per-image IoU distribution", part.fig7_section),
    ("fig8", "Fig. 8: learned concepts, one val image per IoU decile", part.fig8_section),
    ("fig9", "§5.2, Fig. 9: learned weights vs single-filter scores", part.fig9_section),
    ("embeddings", "§5.3: concept embeddings (Tables 2-3, Fig. 10)", part.embeddings_section),
    ("netdissect", "Network Dissection", part.netdissect_section),
    ("compexp", "Compositional explanations", part.compexp_section),
    (
        "tcav",
        "TCAV and concept ablation: does the decision depend on a concept?",
        part.tcav_section,
    ),
    ("experiments", "Experiments: alignment, robustness, ablation", part.experiments_section),
    ("variants", "Probe variants: head, loss, decision", part.variants_section),
    ("statistics", "Statistics: significance, nulls and seeds", part.statistics_section),
]


def analyse(
    runs: list[Run],
    out_dir: str | Path,
    arithmetic=(),
    neighbours: int = 5,
    kmeans: int = 8,
    tsne: bool = True,
    seed: int = 0,
    experiments: list[str | Path] = (),
    dissections: list[str | Path] = (),
    unit_images: int = 8,
    fig8_concepts: int = 4,
    directories: list[str | Path] = (),
) -> Report:
    """Every table and figure for ``runs`` (and the ``experiments`` run directories of
    experiments.py, and the ``dissections``: task=netdissect run directories; ``directories``:
    other run directories, for sections of other kinds of run) into ``out_dir``, with
    index.html; returns the Report."""
    if not runs and not experiments and not dissections and not directories:
        raise NoRunsError("no runs to evaluate: pass runs=[RUN_DIR,...] or sweep=MULTIRUN_DIR")
    report = Report(Path(out_dir))
    inputs = Inputs(
        runs,
        [load_dissection(path) for path in dissections],
        [Path(e) for e in experiments],
        [r.path for r in runs] + [Path(p) for p in (*dissections, *experiments, *directories)],
        list(arithmetic),
        neighbours,
        kmeans,
        tsne,
        seed,
        unit_images,
        fig8_concepts,
    )
    for anchor, title, build in SECTIONS:
        report.section(title, anchor=anchor)
        build(report, inputs)
    report.summary = summary_html(report, runs, inputs.dissected)
    report.headline = headline_lines(runs, inputs.dissected)
    report.write_html(
        runs=[f"{r.label}: {r.path}" for r in runs]
        + [f"{d.label}: {d.path}" for d in inputs.dissected]
        + [f"experiments: {e}" for e in experiments]
    )
    log.info("report: %s", report.out_dir / "index.html")
    return report


def is_other_run(path: str | Path) -> bool:
    """A run directory of another kind than probe, NetDissect or experiments runs (its
    summary.json without results.csv or units.csv), left to the sections that know it."""
    path = Path(path)
    return (
        (path / "summary.json").is_file()
        and not (path / "results.csv").is_file()
        and not is_dissection_run(path)
    )


def output_dir_of(cfg: DictConfig) -> Path:
    """``output_dir`` when set, else Hydra's runtime output directory."""
    if cfg.get("output_dir"):
        return Path(cfg.output_dir)
    from hydra.core.hydra_config import HydraConfig

    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        raise NoRunsError("output_dir is unset and no Hydra run is active") from None


def evaluate(cfg: DictConfig) -> Report:
    """The `python evaluate.py` entry point: runs/sweep in, report (index.html) out."""
    given = [str(path) for path in cfg.get("runs") or []]
    experiments = [p for p in given if is_experiments_run(p)] + [
        str(p) for p in cfg.get("experiments") or []
    ]
    dissections = [p for p in given if is_dissection_run(p)]
    if cfg.get("sweep") and Path(cfg.sweep).is_dir():
        dissections += sorted(str(p.parent) for p in Path(cfg.sweep).rglob("units.csv"))
    known = [p for p in given if is_experiments_run(p) or is_dissection_run(p)]
    directories = [p for p in given if p not in known and is_other_run(p)]
    probe_runs = [p for p in given if p not in known and p not in directories]
    sweep = Path(cfg.sweep) if cfg.get("sweep") else None
    if sweep is not None and sweep.is_dir():
        directories += sorted(
            str(p.parent) for p in sweep.rglob("summary.json") if is_other_run(p.parent)
        )
    sweep_has_probes = sweep is not None and (not sweep.is_dir() or any(sweep.rglob("results.csv")))
    runs = load_runs(probe_runs, cfg.get("sweep") if sweep_has_probes else None)
    out_dir = output_dir_of(cfg)
    report = analyse(
        runs,
        out_dir,
        list(cfg.get("arithmetic") or []),
        int(cfg.get("neighbours", 5)),
        int(cfg.get("kmeans", 8)),
        bool(cfg.get("tsne", True)),
        int(cfg.get("seed", 0)),
        experiments=experiments,
        dissections=dissections,
        unit_images=int(cfg.get("unit_images", 8)),
        fig8_concepts=int(cfg.get("fig8_concepts", 4)),
        directories=directories,
    )
    if cfg.get("logger") and is_wandb(cfg.logger):  # the report as a run in the runs' group
        log_to_wandb(
            cfg.logger,
            flat_config(cfg),
            cfg.get("sweep"),
            report,
            runs,
            dissections,
            int(cfg.get("unit_images", 8)),
        )
    print(
        f"report: {out_dir / 'index.html'} ({len(report.figures)} figures, {len(report.tables)} tables)"
    )
    for line in report.headline:
        print(f"  {line}")
    return report
