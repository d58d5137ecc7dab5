"""evaluate.py's uncertainty analyses: significance, nulls, seeds, random-init baseline, error bars."""

import csv

import numpy as np
import pytest

from net2vec import analysis
from net2vec.analysis import uncertainty
from net2vec.analysis.figures import difference_figure, error_bars
from net2vec.probes.outcome import ProbeOutcome
from net2vec.run.outputs import write_outputs
from net2vec.statistics.scores import Statistics

NAMES = ["sky", "grass", "wheel", "red", "wood", "car"]
CATEGORIES = ["object", "material", "part", "color", "material", "object"]


def evidence_outcome(rng: np.random.Generator, images: int = 60) -> ProbeOutcome:
    """A seg outcome whose scores are the set IoUs of random per-pair evidence (F = 2 included)."""
    c = len(NAMES)
    image, concept = np.nonzero(rng.random((images, c)) < 0.5)
    masks = rng.random((len(image), 64)) < 0.3
    quality = {"single_iou_val": 0.3, "iou_val": 0.6, "iou_val_F2": 0.5}
    counts, bits, scores = {}, {}, {}
    for name, q in quality.items():
        pred = np.where(rng.random(masks.shape) < q, masks, rng.random(masks.shape) < 0.3)
        inter, union = (pred & masks).sum(1), (pred | masks).sum(1)
        counts[name] = (inter, union)
        bits[name] = np.packbits(pred, axis=1)
        scores[name] = np.bincount(concept, inter, c) / np.bincount(concept, union, c)
    return ProbeOutcome(
        task="seg",
        names=np.array(NAMES),
        categories=np.array(CATEGORIES),
        label_numbers=np.arange(c),
        n_train=np.full(c, 10),
        n_val=np.bincount(concept, minlength=c),
        single_filter=np.zeros(c, int),
        single_scores={"single_iou_val": scores["single_iou_val"]},
        score_val=scores["iou_val"],
        weights=rng.normal(size=(c, 4)).astype(np.float32),
        bias=np.zeros(c, np.float32),
        subsets={
            2: {
                "score_val": scores["iou_val_F2"],
                "weights": np.zeros((c, 4), np.float32),
                "bias": np.zeros(c, np.float32),
                "filters": np.zeros((c, 2), int),
            }
        },
        evidence={
            "image": image,
            "concept": concept,
            "counts": counts,
            "bits": {k: bits[k] for k in ("single_iou_val", "iou_val")},
            "mask_bits": np.packbits(masks, axis=1),
        },
    )


@pytest.fixture(scope="module")
def seed_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("seeds")
    for seed, baseline in ((0, None), (1, None), (2, None), (0, "random_init")):
        outcome = evidence_outcome(np.random.default_rng([seed, baseline is None]))
        Statistics(resamples=300, null_draws=19).annotate(outcome)
        config = {"network": "synthnet", "layer": "conv5", "task": "seg", "seed": seed}
        config["baseline"] = baseline
        run_dir = root / f"{seed}-{baseline}"
        write_outputs(outcome, run_dir, config, {}, {}, {"network": "synthnet"})
    return analysis.load_runs(sweep=root)


def test_runs_are_told_apart_by_seed_and_baseline(seed_runs):
    labels = sorted(r.label for r in seed_runs)
    assert labels == [
        "synthnet (random init)/conv5/seg",
        "synthnet/conv5/seg",
        "synthnet/conv5/seg/seed1",
        "synthnet/conv5/seg/seed2",
    ]
    table1 = analysis.table1(seed_runs)
    assert set(table1["network"]) == {"synthnet", "synthnet (random init)"}


def test_significance_and_table1_match_the_columns(seed_runs):
    table = uncertainty.significance_table(seed_runs)
    table1 = analysis.table1(seed_runs)
    for run, record in zip(seed_runs, table.records()):
        r, stats = run.results, run.summary["statistics"]
        better = (r["q_all_gt_single"] <= 0.05 + 1e-7) & (r["diff_val_lo"] > 0)
        assert record["all_gt_single_significant"] == int(better.sum())
        assert record["all_gt_single_significant"] == stats["concepts_all_gt_single_significant"]
        assert record["single_gt_all_significant"] == stats["concepts_single_gt_all_significant"]
        assert record["percent_lo"] <= record["percent_all_ge_single"] <= record["percent_hi"]
        assert record["above_null_significant"] == int(np.sum(r["q_null"] <= 0.05 + 1e-7))
        assert record["above_null_significant"] == stats["concepts_above_null_significant"]
        assert record["tested"] + record["below_min_images"] == len(run.concepts)
    first = next(r for r in seed_runs if r.label == "synthnet/conv5/seg")
    row = table1.where(network="synthnet").records()[0]
    r = first.results
    better = (r["q_all_gt_single"] <= 0.05 + 1e-7) & (r["diff_val_lo"] > 0)
    tested = np.isfinite(r["p_all_gt_single"])
    assert better.sum() > 0  # all filters (0.6 quality) beat the single filter (0.3)
    assert row["seg_percent_significant"] == pytest.approx(100 * better.sum() / tested.sum())
    assert row["seg_percent_lo"] == first.summary["statistics"]["percent_all_ge_single_lo"]


def test_too_few_images_leave_a_concept_out_of_every_count(tmp_path):
    outcome = evidence_outcome(np.random.default_rng(3))
    outcome.n_val = np.array([2, 30, 30, 30, 30, 30])
    Statistics(resamples=200, null_draws=19).annotate(outcome)
    write_outputs(outcome, tmp_path, {"network": "n", "layer": "l", "task": "seg"}, {}, {}, {})
    (run,) = analysis.load_runs([tmp_path])
    assert np.isnan(run.results["q_all_gt_single"][0]) and np.isnan(run.results["q_null"][0])
    record = uncertainty.significance_table([run]).records()[0]
    assert record["tested"] == 5 and record["below_min_images"] == 1
    assert record["all_gt_single_significant"] <= 5 and record["above_null_significant"] <= 5
    differences = uncertainty.difference_table([run])
    assert len(differences) == 5 and "sky" not in differences["concept"]
    assert set(differences["significant"]) <= {"all", "single", ""}
    assert len(error_bars_figure_axes(run)) == 1


def error_bars_figure_axes(run):
    figure = difference_figure([run])
    return [ax for ax in figure.axes if ax.get_visible()]


def test_category_scores_and_curves_carry_the_bootstrap_bounds(seed_runs):
    run = seed_runs[0]
    table = analysis.category_scores([run])
    for record in table.records():
        stored = run.summary["mean_by_category"][record["category"]]
        assert record["all_lo"] == pytest.approx(stored["all_lo"])
        assert record["single_hi"] == pytest.approx(stored["single_hi"])
        assert record["all_lo"] <= record["all_hi"]
    curves = analysis.subset_curves([run])
    f2 = curves.where(F=2, category="all").records()[0]
    assert f2["lo"] == pytest.approx(run.summary["mean_by_category"]["all"]["F2_lo"])


def test_seed_summary_is_mean_and_sd_over_seeds(seed_runs):
    trained = [r for r in seed_runs if r.network == "synthnet"]
    per_concept = uncertainty.seed_concepts(seed_runs)
    assert set(per_concept["seeds"]) == {3} and len(per_concept) == len(NAMES)
    for record in per_concept.records():
        values = [r.all[list(r.concepts).index(record["concept"])] for r in trained]
        assert record["all_mean"] == pytest.approx(np.mean(values))
        assert record["all_sd"] == pytest.approx(np.std(values, ddof=1))
        lows = [r.results["iou_val_lo"][list(r.concepts).index(record["concept"])] for r in trained]
        assert record["all_boot_lo"] == pytest.approx(np.mean(lows))
    per_category = uncertainty.seed_categories(seed_runs)
    row = per_category.where(category="all").records()[0]
    means = [r.summary["mean_by_category"]["all"]["single"] for r in trained]
    assert row["single_mean"] == pytest.approx(np.mean(means))
    assert row["single_sd"] == pytest.approx(np.std(means, ddof=1))


def test_error_bars_use_the_interval_and_fall_back_to_se():
    mean = np.array([0.5, 0.4])
    bars = error_bars(mean, np.array([0.4, np.nan]), np.array([0.7, np.nan]), np.array([0.1, 0.05]))
    assert np.allclose(bars, [[0.1, 0.05], [0.2, 0.05]])


def test_report_has_the_uncertainty_section(seed_runs, tmp_path, capsys):
    report = analysis.analyse(seed_runs, tmp_path)
    assert {"null_baselines", "table1", "fig2_seg", "fig3_subsets"} <= set(report.figures)
    assert {"significance", "null_baselines", "seeds_by_concept"} <= set(report.tables)
    with open(tmp_path / "seeds_by_category.csv") as handle:
        assert "all_sd" in next(csv.reader(handle))
    lines = uncertainty.summary_lines(seed_runs)
    assert len(lines) == 4 and "significantly all > single" in lines[0] and "q <= 0.05" in lines[0]
