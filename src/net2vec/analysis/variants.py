"""Probe variants compared on the same run family (docs/method.md §3, variants).

Runs of one (network, layer, seg) that differ in the probe (``summary.json`` ``variant``:
head/loss/decision, e.g. ``linear/paper/sigmoid`` for the paper's probe) are compared per
category — share of concepts whose learned val set IoU ≥ the best single filter's, mean learned
and single-filter IoU — and against concept size (mean mask fraction on train images, from the
concept store), split into the ``part`` category and the rest (parts are drawn inside their
objects, but no per-concept containment is measured: the split is by category only).
"""

from __future__ import annotations

import numpy as np

from net2vec.analysis.runs import Run
from net2vec.analysis.scores import _category_masks, _valid, object_sizes
from net2vec.analysis.table import Table

SIZE_BINS = (0.0, 0.02, 0.08, 0.25, 1.01)  # mean mask fraction of the concept on its images


def variant_of(run: Run) -> str:
    """The probe variant of a run (runs written before variants existed: the paper's probe)."""
    return str(run.summary.get("variant") or "linear/paper/sigmoid")


def _row(run: Run, group: str, chosen: np.ndarray) -> list:
    single, learned = run.single[chosen], run.all[chosen]
    return [
        run.network,
        run.layer,
        variant_of(run),
        group,
        int(chosen.sum()),
        float(100.0 * np.mean(learned >= single)),
        float(single.mean()),
        float(learned.mean()),
    ]


COLUMNS = [
    "network",
    "layer",
    "variant",
    "group",
    "n",
    "percent_ge_single",
    "single_mean",
    "learned_mean",
]


def variant_categories(runs: list[Run]) -> Table:
    """Per segmentation run (variant) and category: share ≥ single, mean single and learned IoU."""
    rows = []
    for run in runs:
        if run.task != "seg":
            continue
        ok = _valid(run)
        for category, chosen in _category_masks(run):
            if (chosen & ok).any():
                rows.append(_row(run, category, chosen & ok))
    return Table(COLUMNS, rows)


def variant_sizes(runs: list[Run], bins=SIZE_BINS) -> Table:
    """Per segmentation run (variant), concept size bin and category (part or not): the same columns."""
    rows = []
    for run in runs:
        sizes = object_sizes(run) if run.task == "seg" else None
        if sizes is None:
            continue
        size = np.array([sizes.get(str(name), np.nan) for name in run.concepts])
        is_part = run.categories == "part"
        ok = _valid(run) & np.isfinite(size)
        for lo, hi in zip(bins[:-1], bins[1:]):
            for flag, label in ((True, "part"), (False, "not part")):
                chosen = ok & (size >= lo) & (size < hi) & (is_part == flag)
                if chosen.any():
                    rows.append(_row(run, f"size [{lo:g}, {hi:g}) {label}", chosen))
    return Table(COLUMNS, rows)
