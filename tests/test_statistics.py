"""Statistics of a run: the evidence reproduces every score; intervals, p values and nulls land in
results.csv and summary.json for seg and cls."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from conftest import compose_config

from net2vec.run.outputs import format_summary_table
from net2vec.run.pipeline import train
from net2vec.statistics.accuracy import balanced_accuracy
from net2vec.statistics.scores import Statistics


@pytest.fixture
def captured(monkeypatch):
    """The ProbeOutcome each run hands to Statistics.annotate."""
    seen = []
    original = Statistics.annotate

    def annotate(self, outcome):
        seen.append(outcome)
        return original(self, outcome)

    monkeypatch.setattr(Statistics, "annotate", annotate)
    return seen


def scores_of(outcome):
    metric = outcome.metric
    scores = {f"single_{metric}_val": outcome.single_val, f"{metric}_val": outcome.score_val}
    scores.update({f"{metric}_val_F{f}": p["score_val"] for f, p in outcome.subsets.items()})
    return scores


def evidence_scores(outcome) -> dict[str, np.ndarray]:
    """Every score recomputed from the per-image evidence with plain NumPy."""
    evidence, c = outcome.evidence, len(outcome.names)
    if outcome.task == "seg":
        out = {}
        for name, (inter, union) in evidence["counts"].items():
            i = np.bincount(evidence["concept"], inter, minlength=c)
            u = np.bincount(evidence["concept"], union, minlength=c)
            out[name] = np.where(u > 0, i / np.maximum(u, 1), 0)
        return out
    labels = torch.from_numpy(evidence["labels"].astype(np.float32))
    return {
        name: balanced_accuracy(torch.from_numpy(pred), labels).numpy()
        for name, pred in evidence["preds"].items()
    }


@pytest.mark.parametrize("task", ["seg", "cls"])
def test_a_run_writes_intervals_p_values_and_nulls(tmp_path, shared_cache, captured, task):
    cfg = compose_config(
        tmp_path,
        "network=planted",
        f"task={task}",
        "probe.subsets=[2]",
        "stats.resamples=200",
        f"paths.data_dir={shared_cache}/data",
        cache=shared_cache / "cache",
    )
    summary = train(cfg)
    (outcome,) = captured
    recomputed = evidence_scores(outcome)
    for name, values in scores_of(outcome).items():
        assert np.allclose(recomputed[name], values, atol=1e-5), name
    metric = outcome.metric
    with open(tmp_path / "run" / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    header = list(rows[0])
    start = header.index(f"single_{metric}_val")
    expected = [f"single_{metric}_val", f"single_{metric}_val_lo", f"single_{metric}_val_hi"]
    for name in (f"{metric}_val", f"{metric}_val_F2"):
        expected += [name, f"{name}_lo", f"{name}_hi"]
    expected += ["p_all_gt_single", f"single_null_{metric}_val", "single_p_null"]
    expected += [f"null_{metric}_val", "p_null"]
    assert header[start:] == expected
    column = {k: np.array([float(r[k]) for r in rows]) for k in header[start:]}
    for name in scores_of(outcome):
        assert np.all(column[f"{name}_lo"] <= column[f"{name}_hi"])
    assert np.all((column["p_all_gt_single"] >= 0) & (column["p_all_gt_single"] <= 1))
    assert set(np.round(column["p_null"] * 6).astype(int)) <= set(range(1, 7))  # 5 draws
    stats = json.loads((tmp_path / "run" / "summary.json").read_text())["statistics"]
    assert stats["resamples"] == 200 and stats["null_draws"] == 5
    lo, hi = stats["percent_all_ge_single_lo"], stats["percent_all_ge_single_hi"]
    assert 0 <= lo <= hi <= 100
    assert (
        summary["mean_by_category"]["all"]["all_lo"] <= summary["mean_by_category"]["all"]["all_hi"]
    )
    assert "significantly different" in format_summary_table(summary)


def test_stats_can_be_switched_off(tmp_path, shared_cache):
    cfg = compose_config(
        tmp_path,
        "network=planted",
        "stats.resamples=0",
        "stats.null_draws=0",
        f"paths.data_dir={shared_cache}/data",
        cache=shared_cache / "cache",
    )
    train(cfg)
    with open(tmp_path / "run" / "results.csv") as handle:
        header = next(csv.reader(handle))
    assert header[-2:] == ["single_iou_val", "iou_val"]


def test_bad_stats_values_fail_in_one_line():
    with pytest.raises(ValueError, match="stats.level"):
        Statistics(level=1.5)
