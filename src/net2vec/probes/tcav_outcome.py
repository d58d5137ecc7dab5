"""The outcome of ``task=tcav``: tcav.csv, ablation.csv, tcav.h5, summary.json, logs, terminal.

``tcav.csv``: one row per (concept, class): ``concept, category, class, n_images, score,
score_lo, score_hi, random_mean, p, q, significant`` (statistics.tcav). ``ablation.csv``: one row
per (concept, class, variant ∈ {project, clamp}): ``prob_drop`` and ``acc_drop`` (mean drop of
the class's probability / accuracy on its images when the concept's mean vector is ablated),
``random_prob_drop``/``random_acc_drop`` (the same along random controls, mean) and ``p``
(``empirical_p``: the share of random directions whose probability drop is at least as large).
``tcav.h5``: the unit vectors (M, K), the repeat and random scores. W&B gets both tables and the
three figures of ``probes.tcav_figures``; analysis/tcav_report.py draws the same from the files.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from net2vec.common import wandb_media
from net2vec.common.cache import atomic_path
from net2vec.probes import tcav_figures
from net2vec.probes.outcome import write_task_summary
from net2vec.probes.tcav_pass import VARIANTS, TcavPass
from net2vec.statistics.significance import empirical_p
from net2vec.statistics.tcav import TcavTest

TCAV_COLUMNS = ["concept", "category", "class", "n_images", *TcavTest.COLUMNS]
ABLATION_COLUMNS = ["concept", "category", "class", "variant", "n_images", "prob_drop",
                    "acc_drop", "random_prob_drop", "random_acc_drop", "p"]  # fmt: skip


def ablation_results(tcav: TcavPass, concepts: int) -> dict:
    """Per variant: the concepts' (C, n) drops, the random directions' (D, n), and p (C, n)."""
    out = {}
    for variant in VARIANTS:
        drops = tcav.drops(variant)
        prob, acc = drops["prob_drop"], drops["correct_drop"]
        random = prob[concepts:]
        null = np.repeat(random[:, None], concepts, 1).reshape(len(random), -1)
        p = np.full_like(prob[:concepts], np.nan)
        if len(random):
            p = empirical_p(prob[:concepts].ravel(), null).reshape(p.shape)
        out[variant] = {
            "prob_drop": prob[:concepts],
            "acc_drop": acc[:concepts],
            "random_prob_drop": random,
            "random_acc_drop": acc[concepts:],
            "p": p,
        }
    return out


def _cell(value):
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else ""
    return value.item() if isinstance(value, np.generic) else value


@dataclass
class TcavOutcome:
    """Scores, test and ablation of every tested concept against every scored class."""

    names: np.ndarray  # (C,)
    categories: np.ndarray  # (C,)
    classes: np.ndarray  # (n,)
    n_images: np.ndarray  # (n,) images a class's score is taken over
    test: TcavTest
    repeat_scores: np.ndarray  # (C, R, n)
    random_scores: np.ndarray  # (N, n)
    vectors: np.ndarray  # (M, K) unit vectors (concept repeats, then random controls)
    ablation: dict | None
    settings: dict
    task: str = "tcav"

    def tcav_rows(self) -> list[list]:
        """tcav.csv rows (TCAV_COLUMNS), concept-major."""
        return [
            [self.names[c], self.categories[c], self.classes[k], self.n_images[k]]
            + [_cell(getattr(self.test, col)[c, k]) for col in TcavTest.COLUMNS]
            for c in range(len(self.names))
            for k in range(len(self.classes))
        ]

    def ablation_rows(self) -> list[list]:
        """ablation.csv rows (ABLATION_COLUMNS); none without ablation."""
        rows = []
        for variant, part in (self.ablation or {}).items():
            for c in range(len(self.names)):
                for k in range(len(self.classes)):
                    rows.append(
                        [self.names[c], self.categories[c], self.classes[k], variant]
                        + [int(self.n_images[k]), part["prob_drop"][c, k], part["acc_drop"][c, k]]
                        + [
                            part["random_prob_drop"][:, k].mean(),
                            part["random_acc_drop"][:, k].mean(),
                        ]
                        + [part["p"][c, k]]
                    )
        return [[_cell(v) for v in row] for row in rows]

    def significant(self) -> dict[str, list[dict]]:
        """Per class, its significant concepts by score (highest first)."""
        out = {}
        for k, name in enumerate(self.classes):
            hits = np.flatnonzero(self.test.significant[:, k])
            hits = hits[np.argsort(-self.test.score[hits, k], kind="stable")]
            out[str(name)] = [
                {
                    "concept": str(self.names[c]),
                    "score": round(float(self.test.score[c, k]), 4),
                    "interval": [
                        round(float(self.test.score_lo[c, k]), 4),
                        round(float(self.test.score_hi[c, k]), 4),
                    ],  # fmt: skip
                    "q": float(self.test.q[c, k]),
                }
                for c in hits
            ]
        return out

    def binary_share(self) -> float:
        """Share of the vectors' scores that are exactly 0 or 1 (every image of a class agrees):
        near 1 where the class logit is linear in the layer (e.g. the last layer before a
        pooled linear head), whose gradient, and so the sign of S, is the same for every image."""
        scores = np.concatenate([self.repeat_scores.reshape(-1), self.random_scores.reshape(-1)])
        scores = scores[np.isfinite(scores)]
        return round(float(np.isin(scores, (0.0, 1.0)).mean()), 4) if len(scores) else float("nan")

    def write(self, run_dir: Path, config: dict, timings: dict, stores: dict) -> dict:
        """tcav.csv, ablation.csv, tcav.h5 and summary.json (the task outcome protocol)."""
        run_dir = Path(run_dir)
        write_csv(run_dir / "tcav.csv", TCAV_COLUMNS, self.tcav_rows())
        if self.ablation is not None:
            write_csv(run_dir / "ablation.csv", ABLATION_COLUMNS, self.ablation_rows())
        with atomic_path(run_dir / "tcav.h5") as tmp, h5py.File(tmp, "w") as h5:
            h5["vectors"], h5["repeat_scores"] = self.vectors, self.repeat_scores
            h5["random_scores"] = self.random_scores
            h5.create_dataset("concepts", data=list(self.names), dtype=h5py.string_dtype())
            h5.create_dataset("classes", data=list(self.classes), dtype=h5py.string_dtype())
        tested = np.isfinite(self.test.p)
        section = {
            **self.settings,
            "concepts": len(self.names),
            "classes": len(self.classes),
            "tested_cells": int(tested.sum()),
            "significant_cells": int(self.test.significant.sum()),
            "significant": self.significant(),
            "binary_scores": self.binary_share(),
        }
        return write_task_summary(run_dir, config, self.task, section, timings, stores)

    def figures(self) -> list[tuple[str, object]]:
        """(name, figure) of the heatmap, the top concepts per class and the ablation bars."""
        return tcav_figures.all_figures(
            columns_of(TCAV_COLUMNS, self.tcav_rows()),
            columns_of(ABLATION_COLUMNS, self.ablation_rows()) if self.ablation else None,
        )

    def log(self, logger, summary: dict) -> None:
        """Counts as metrics; tcav.csv and ablation.csv as tables; with W&B the figures too."""
        if logger is None:
            return
        info = summary["tcav"]
        logger.log_metrics({f"tcav/{k}": info[k] for k in ("tested_cells", "significant_cells")})
        if hasattr(logger, "log_table"):
            logger.log_table(key="tcav", columns=TCAV_COLUMNS, data=self.tcav_rows())
            if self.ablation is not None:
                logger.log_table(
                    key="ablation", columns=ABLATION_COLUMNS, data=self.ablation_rows()
                )
        if wandb_media.is_wandb(logger):
            wandb_media.log_images(logger.experiment, self.figures(), prefix="tcav")

    def terminal(self, summary: dict) -> str:
        """What the run prints: the significant concepts of every class."""
        return summary_text(summary)


def summary_text(summary: dict, top: int = 5) -> str:
    """The run's closing lines: counts, then per class its top significant concepts."""
    info, config = summary["tcav"], summary["config"]
    lines = [
        f"tcav {config['network']} {config['layer']}: {info['significant_cells']} of "
        f"{info['tested_cells']} (concept, class) cells significant (two-sided t-test of "
        f"{info['repeats']} repeats vs {info['random_concepts']} random concepts, BH q < "
        f"{info['alpha']:g}; images: {info['images']})"
    ]
    if info.get("binary_scores", 0) > 0.9:
        lines.append(
            f"  note: {100 * info['binary_scores']:.0f} % of the scores are 0 or 1: the class "
            "logits are (nearly) linear in this layer, so S has one sign for all images and a "
            "score tests the sign of <class weights, vector> (docs/tcav.md); an earlier layer "
            "gives image-dependent scores"
        )
    for name, hits in info["significant"].items():
        shown = ", ".join(
            f"{h['concept']} {h['score']:.2f} [{h['interval'][0]:.2f}, {h['interval'][1]:.2f}]"
            for h in hits[:top]
        )
        lines.append(
            f"  {name}: {shown or 'none'}" + (f" (+{len(hits) - top})" if len(hits) > top else "")
        )
    return "\n".join(lines)


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def columns_of(header: list[str], rows: list[list]) -> dict[str, np.ndarray]:
    """Rows as named columns (numbers as float64, empty cells NaN)."""
    columns = {}
    for i, name in enumerate(header):
        values = [row[i] for row in rows]
        try:
            columns[name] = np.array([np.nan if v == "" else float(v) for v in values])
        except (TypeError, ValueError):
            columns[name] = np.array([str(v) for v in values])
    return columns


def read_columns(path: Path) -> dict[str, np.ndarray]:
    """A tcav.csv / ablation.csv file as named columns (see ``columns_of``)."""
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return columns_of(header, list(reader))
