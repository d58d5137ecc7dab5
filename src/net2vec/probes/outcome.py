"""What the probes of one run produce (:class:`ProbeOutcome`), before it is written to files.

``net2vec.run.outputs`` writes it as results.csv, embeddings.h5 and summary.json
(docs/architecture.md "Run files"); ``net2vec.statistics`` adds error bars to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from net2vec.common.cache import atomic_path
from net2vec.common.versions import package_versions

METRIC = {"seg": "iou", "cls": "acc"}


@dataclass
class ProbeOutcome:
    """Per-concept results of one run; arrays are indexed by concept (C) and filter (K)."""

    task: str
    names: np.ndarray
    categories: np.ndarray
    label_numbers: np.ndarray
    n_train: np.ndarray
    n_val: np.ndarray
    single_filter: np.ndarray
    single_scores: dict[str, np.ndarray]  # column name -> (C,)
    score_val: np.ndarray  # all filters, validation
    weights: np.ndarray  # (C, K)
    bias: np.ndarray  # (C,)
    subsets: dict[int, dict[str, np.ndarray]] = field(
        default_factory=dict
    )  # F -> score_val, weights, bias, filters
    filter_scores: dict[str, np.ndarray] = field(default_factory=dict)  # split -> (C, K)
    per_image: dict[str, np.ndarray] = field(default_factory=dict)  # val pairs (seg)
    variant: dict = field(default_factory=dict)  # probe variant: head, loss, decision (seg)
    probe_columns: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. logit_threshold
    # per-image validation terms for net2vec.statistics.scores (probes.evidence); not written
    evidence: dict = field(default_factory=dict)
    # filled by net2vec.statistics.scores: column -> (lo, hi); further columns; category -> series -> (lo, hi)
    intervals: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    category_intervals: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    statistics: dict = field(default_factory=dict)  # summary.json "statistics"

    @property
    def variant_name(self) -> str:
        """E.g. ``linear/paper/sigmoid`` (head/loss/decision); the paper's probe when empty."""
        v = self.variant
        if not v:
            return "linear"
        head = f"mlp{v.get('hidden', '')}" if v.get("head") == "mlp" else "linear"
        return f"{head}/{v.get('loss')}/{v.get('decision')}"

    @property
    def metric(self) -> str:
        return METRIC[self.task]

    @property
    def single_val(self) -> np.ndarray:
        return self.single_scores[f"single_{self.metric}_val"]


def write_task_summary(
    run_dir: Path, config: dict, task: str, section: dict, timings: dict, stores: dict
) -> dict:
    """summary.json of a task that writes itself (task=netdissect, compexp, tcav): the run's
    config, the task's own section (under the task's name), timings, versions and stores."""
    summary = {
        "config": config,
        "task": task,
        task: section,
        "timings_s": {k: round(float(v), 3) for k, v in timings.items()},
        "versions": package_versions(),
        "stores": stores,
    }
    with atomic_path(Path(run_dir) / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return summary
