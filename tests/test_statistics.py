"""Statistics of a run: the evidence reproduces every score; every estimate lies inside its
interval; p-values agree with observed vs null; ties and small samples are never significant;
q-values are Benjamini–Hochberg of the p's; all for seg and cls."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from conftest import compose_config
from scipy import stats as scipy_stats
from test_significance import brute_force_bh
from test_uncertainty import evidence_outcome

from net2vec.common.errors import ConfigError
from net2vec.probes.tasks import ClassificationTask, SegmentationTask
from net2vec.run.config import check_config
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


@pytest.fixture
def probes(monkeypatch):
    """The all-filter probe of each run (its own torchmetrics validation score)."""
    seen = []
    for task in (SegmentationTask, ClassificationTask):

        def outcome(self, concepts, single, probe, *args, original=task.outcome):
            keep = np.flatnonzero(concepts.pixel_level) if self.metric == "iou" else None
            seen.append((probe, keep))
            return original(self, concepts, single, probe, *args)

        monkeypatch.setattr(task, "outcome", outcome)
    return seen


def read_columns(path) -> dict[str, np.ndarray]:
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    return {
        key: np.array([float(r[key]) if r[key] != "" else np.nan for r in rows])
        for key in rows[0]
        if key not in ("concept", "category")
    }


def assert_inside(estimate, lo, hi, name):
    defined = np.isfinite(lo)
    assert np.all(
        (lo[defined] <= estimate[defined] + 1e-12) & (estimate[defined] <= hi[defined] + 1e-12)
    ), name


@pytest.mark.parametrize("task", ["seg", "cls"])
def test_a_run_writes_intervals_p_values_and_nulls(tmp_path, shared_cache, captured, probes, task):
    cfg = compose_config(
        tmp_path,
        "network=planted",
        f"task={task}",
        "probe.subsets=[2]",
        "stats.resamples=200",
        "stats.null_draws=19",
        "stats.min_images=3",
        f"paths.data_dir={shared_cache}/data",
        cache=shared_cache / "cache",
    )
    summary = train(cfg)
    (outcome,), ((probe, keep),) = captured, probes
    metric = outcome.metric
    recomputed = evidence_scores(outcome)
    for name, values in scores_of(outcome).items():  # float64 from the evidence, the one path
        assert values.dtype == np.float64 and np.allclose(recomputed[name], values, atol=1e-6)
    own = (probe.val_iou if task == "seg" else probe.val_acc)[0]  # the probe's float32 metric
    assert np.allclose(outcome.score_val, own if keep is None else own[keep], atol=1e-5)
    column = read_columns(tmp_path / "run" / "results.csv")
    for name in scores_of(outcome):
        assert_inside(column[name], column[f"{name}_lo"], column[f"{name}_hi"], name)
    assert_inside(column["diff_val"], column["diff_val_lo"], column["diff_val_hi"], "diff")
    assert np.allclose(
        column["diff_val"], column[f"{metric}_val"] - column[f"single_{metric}_val"], atol=2e-6
    )
    tested = column["n_val"] >= 3
    for name in ("p_all_gt_single", "p_single_gt_all", "p_null", "single_p_null"):
        assert np.all(np.isnan(column[name][~tested])), name  # left out: empty cell
        assert np.all(np.isfinite(column[name][tested])), name
        q = column[name.replace("p_", "q_", 1)]
        assert np.allclose(q[tested], brute_force_bh(column[name])[tested], atol=1e-6), name
    stats = json.loads((tmp_path / "run" / "summary.json").read_text())["statistics"]
    assert stats["concepts_below_min_images"] == int((~tested).sum())
    better = (column["q_all_gt_single"] <= 0.05 + 1e-7) & (column["diff_val_lo"] > 0)
    assert stats["concepts_all_gt_single_significant"] == int(better.sum())
    assert stats["concepts_above_null_significant"] == int(np.sum(column["q_null"] <= 0.05 + 1e-7))
    lo, hi = stats["percent_all_ge_single_lo"], stats["percent_all_ge_single_hi"]
    assert lo <= summary["percent_all_ge_single"] <= hi
    for category, row in summary["mean_by_category"].items():
        assert row["all_lo"] <= row["all"] <= row["all_hi"], category
    text = format_summary_table(summary)
    assert "significantly better" in text and f"{int((~tested).sum())} left out" in text


def test_null_p_agrees_with_observed_against_its_draws():
    outcome = evidence_outcome(np.random.default_rng(4), images=80)
    stats = Statistics(resamples=0, null_draws=9, min_images=1)
    stats.annotate(outcome)
    for k, (prefix, name) in enumerate((("single_", "single_iou_val"), ("", "iou_val"))):
        null = stats.null_scores(outcome, name, np.random.default_rng([0, 1, k]))
        observed = outcome.single_val if prefix else outcome.score_val
        brute = [(1 + np.sum(null[:, c] >= observed[c])) / 10 for c in range(len(observed))]
        assert np.allclose(outcome.columns[f"{prefix}p_null"], brute)


def covering_outcome(concepts: int = 200, images: int = 40) -> object:
    """Predictions that cover every image: each shuffled draw reproduces the observed set IoU."""
    outcome = evidence_outcome(np.random.default_rng(5), images=images)
    rng = np.random.default_rng(6)
    image, concept = np.nonzero(rng.random((images, concepts)) < 0.6)
    masks = rng.random((len(image), 64)) < rng.uniform(0.05, 0.9, (len(image), 1))
    full = np.ones_like(masks)
    counts = ((full & masks).sum(1), (full | masks).sum(1))
    score = np.bincount(concept, counts[0], concepts) / np.bincount(concept, counts[1], concepts)
    outcome.names = np.array([f"c{i}" for i in range(concepts)])
    outcome.categories = np.array(["object"] * concepts)
    outcome.n_val = np.bincount(concept, minlength=concepts)
    outcome.single_scores = {"single_iou_val": score}
    outcome.score_val, outcome.subsets = score, {}
    outcome.evidence = {
        "image": image,
        "concept": concept,
        "counts": {"single_iou_val": counts, "iou_val": counts},
        "bits": {n: np.packbits(full, axis=1) for n in ("single_iou_val", "iou_val")},
        "mask_bits": np.packbits(masks, axis=1),
    }
    return outcome


def test_ties_are_never_significant():
    outcome = covering_outcome()
    Statistics(resamples=200, null_draws=5).annotate(outcome)
    columns, info = outcome.columns, outcome.statistics
    tested = outcome.n_val >= 10
    assert tested.sum() > 100
    for name in ("p_null", "single_p_null", "p_all_gt_single", "p_single_gt_all"):
        assert np.all(columns[name][tested] == 1.0), name  # every draw equals the observation
    assert np.all(columns["diff_val"] == 0) and np.all(columns["diff_val_lo"] == 0)
    assert info["concepts_above_null_significant"] == 0
    assert info["concepts_all_gt_single_significant"] == 0
    assert info["concepts_single_gt_all_significant"] == 0
    assert info["percent_all_ge_single_lo"] <= 100.0 == info["percent_all_ge_single"]


def test_one_val_image_gets_an_interval_but_no_test():
    outcome = evidence_outcome(np.random.default_rng(7), images=60)
    outcome.n_val = np.array([1, 9, 10, 30, 30, 30])
    Statistics(resamples=200, null_draws=19).annotate(outcome)
    for name in ("p_all_gt_single", "q_all_gt_single", "p_null", "q_null", "single_q_null"):
        assert (
            np.isnan(outcome.columns[name][:2]).all()
            and np.isfinite(outcome.columns[name][2:]).all()
        )
    assert outcome.statistics["concepts_below_min_images"] == 2
    assert outcome.statistics["concepts_tested"] == 4
    lo, hi = outcome.intervals["iou_val"]
    assert (
        np.isfinite(lo).all()
        and np.all(lo <= outcome.score_val)
        and np.all(outcome.score_val <= hi)
    )


def test_paired_p_is_the_paired_t_test_for_a_mean():
    """Unit unions: set IoU is a mean over images and the jackknife t is Student's paired t."""
    rng = np.random.default_rng(8)
    n, c = 25, 30
    image, concept = np.nonzero(np.ones((n, c), bool))
    hit = {"single_iou_val": rng.random(n * c) < 0.5, "iou_val": rng.random(n * c) < 0.6}
    outcome = evidence_outcome(np.random.default_rng(9))
    outcome.names, outcome.categories = np.arange(c).astype(str), np.array(["object"] * c)
    outcome.n_val, outcome.subsets = np.full(c, n), {}
    outcome.evidence = {
        "image": image,
        "concept": concept,
        "counts": {k: (v.astype(int), np.ones(n * c, int)) for k, v in hit.items()},
        "bits": {},
        "mask_bits": np.zeros((n * c, 1), np.uint8),
    }
    Statistics(resamples=100, null_draws=0).annotate(outcome)
    a, b = (hit[k].reshape(n, c).astype(float) for k in ("iou_val", "single_iou_val"))
    differs = a.mean(0) != b.mean(0)
    reference = scipy_stats.ttest_rel(a, b, alternative="greater").pvalue
    p = outcome.columns["p_all_gt_single"]
    assert differs.sum() > 20 and np.allclose(p[differs], reference[differs], rtol=1e-9)
    assert np.all(p[~differs] == 1.0)  # a tie is no evidence either way
    assert np.allclose(outcome.columns["q_all_gt_single"], brute_force_bh(p), rtol=1e-12)


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


@pytest.mark.parametrize(
    "override", ["stats.level=1.5", "stats.fdr=0", "stats.min_images=0", "stats.resamples=-1"]
)
def test_bad_stats_values_fail_in_one_line(tmp_path, override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        check_config(compose_config(tmp_path, override))
