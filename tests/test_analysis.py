"""evaluate.py's analyses on fabricated runs with planted structure, checked against brute force.

Runs are written by net2vec.run.outputs.write_outputs from synthetic arrays: grass + blue-c - green-c
is planted to equal sky; wheel, tyre and car share filters 3 and 7 (their best single filter is 3);
filter_scores/val follow max(w, 0) for half of the concepts.
"""

import csv
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy import stats

from net2vec import analysis
from net2vec.probes.outcome import ProbeOutcome
from net2vec.run.outputs import write_outputs

ROOT = Path(__file__).resolve().parents[1]
K = 16
PIXEL = {
    "grass": "material",
    "blue-c": "color",
    "green-c": "color",
    "sky": "object",
    "wheel": "part",
    "tyre": "part",
    "car": "object",
    **{f"obj{i}": "object" for i in range(8)},
    **{f"mat{i}": "material" for i in range(5)},
}
SCENES = {"street-s": "scene", "beach-s": "scene", "kitchen-s": "scene"}
SUBSETS = (1, 2, 4)


def planted_weights(names: list[str], rng: np.random.Generator) -> np.ndarray:
    """Random vectors plus the planted arithmetic (sky) and shared-filter (wheel, tyre, car) concepts."""
    weights = rng.normal(size=(len(names), K))
    index = {n: i for i, n in enumerate(names)}
    unit = weights / np.linalg.norm(weights, axis=1, keepdims=True)
    weights[index["sky"]] = 2.5 * (
        unit[index["grass"]] + unit[index["blue-c"]] - unit[index["green-c"]]
    )
    for name in ("wheel", "tyre", "car"):
        weights[index[name]] = 0.05 * rng.normal(size=K)
        weights[index[name], [3, 7]] = rng.uniform(2.0, 3.0, size=2)
    return weights


def make_concept_store(path: Path, names: list[str], rng: np.random.Generator) -> None:
    """A concept store with only what object_sizes reads (split, pairs, mask_size)."""
    n_images, pairs = 12, []
    for image in range(n_images):
        for c in rng.choice(len(names), size=3, replace=False):
            pairs.append((image, c, int(rng.integers(1, 64))))
    image, concept, area = (np.array(col) for col in zip(*pairs))
    with h5py.File(path, "w") as h5:
        h5.create_dataset("concepts/name", data=names, dtype=h5py.string_dtype())
        h5["split"] = (np.arange(n_images) % 3 == 2).astype(np.uint8)
        h5["pairs/image"], h5["pairs/concept"], h5["pairs/area"] = image, concept, area
        h5.attrs["mask_size"] = (8, 8)


def make_outcome(task: str, layer: str, rng: np.random.Generator) -> ProbeOutcome:
    concepts = dict(PIXEL, **SCENES) if task == "cls" else dict(PIXEL)
    names = list(concepts)
    count = len(names)
    weights = planted_weights(names, rng)
    others = rng.permutation([k for k in range(K) if k != 3])
    single_filter = others[np.arange(count) % len(others)]  # any other filter is chosen <= 2 times
    for name in ("wheel", "tyre", "car"):
        single_filter[names.index(name)] = 3
    metric = "iou" if task == "seg" else "acc"
    single = rng.uniform(0.05, 0.5, count)
    score = single * rng.uniform(1.05, 3.0, count)
    score[::5] = single[::5] * 0.8  # failure cases: single filter >= all filters
    singles = {f"single_{metric}_val": single}
    filter_scores = rng.uniform(0, 0.3, size=(count, K))
    follow = np.arange(count) % 2 == 0
    filter_scores[follow] = 0.1 * np.maximum(weights[follow], 0) + 0.01 * rng.random(
        (follow.sum(), K)
    )
    outcome = ProbeOutcome(
        task=task,
        names=np.array(names),
        categories=np.array(list(concepts.values())),
        label_numbers=np.arange(1, count + 1),
        n_train=rng.integers(3, 3000, count),
        n_val=rng.integers(1, 50, count),
        single_filter=single_filter,
        single_scores=singles,
        score_val=score,
        weights=weights.astype(np.float32),
        bias=rng.normal(size=count).astype(np.float32),
        filter_scores={"val": filter_scores},
    )
    if task == "seg":
        outcome.single_scores = {"single_iou_train": single + 0.01, **singles}
        pairs = 200
        outcome.per_image = {
            "image": rng.integers(0, 50, pairs),
            "concept": rng.integers(0, count, pairs),
            "single_iou": np.where(rng.random(pairs) < 0.3, 0.0, rng.random(pairs)),
            "all_iou": np.where(rng.random(pairs) < 0.1, 0.0, rng.random(pairs)),
        }
        if layer == "conv5":
            for size in SUBSETS:
                top = np.argsort(-np.abs(weights), axis=1)[:, :size]
                outcome.subsets[size] = {
                    "score_val": rng.uniform(0, 0.6, count),
                    "weights": weights,
                    "bias": np.zeros(count),
                    "filters": top,
                }
    return outcome


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A multirun directory: synthnet conv4/seg, conv5/seg (with subsets), conv5/cls."""
    root = tmp_path_factory.mktemp("multirun")
    rng = np.random.default_rng(7)
    store = root / "concepts.h5"
    make_concept_store(store, list(PIXEL), rng)
    for num, (layer, task) in enumerate([("conv4", "seg"), ("conv5", "seg"), ("conv5", "cls")]):
        config = {"network": "synthnet", "layer": layer, "task": task, "data": "synthetic"}
        write_outputs(
            make_outcome(task, layer, rng),
            root / f"{num}-synthnet-{layer}-{task}",
            config,
            {"probe": 1.0},
            {"concept_store": str(store)},
            {"network": "synthnet", "layer": layer},
        )
    return root


@pytest.fixture(scope="module")
def runs(sweep):
    return analysis.load_runs(sweep=sweep)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_load_runs_reads_identity_and_columns(sweep, runs):
    assert [r.label for r in runs] == [
        "synthnet/conv4/seg",
        "synthnet/conv5/cls",
        "synthnet/conv5/seg",
    ]
    run = runs[2]
    rows = read_csv(run.path / "results.csv")
    assert list(run.concepts) == [r["concept"] for r in rows]
    assert np.allclose(run.all, [float(r["iou_val"]) for r in rows])
    assert run.subset_sizes == list(SUBSETS) and run.num_filters == K
    with h5py.File(run.path / "embeddings.h5") as h5:
        assert np.allclose(run.embeddings.weights, h5["weights"][()])
        assert np.allclose(run.embeddings.filter_scores["val"], h5["filter_scores/val"][()])
    with pytest.raises(analysis.RunError, match="no results.csv"):
        analysis.load_run(sweep)


def test_table1_and_category_scores_equal_recomputation(runs):
    table = analysis.table1(runs)
    assert table.columns[:4] == ["network", "layer", "seg_percent", "seg_n"]
    for record in table.records():
        for task in ("seg", "cls"):
            match = [r for r in runs if (r.layer, r.task) == (record["layer"], task)]
            if not match:
                assert record[f"{task}_percent"] is None
                continue
            rows = read_csv(match[0].path / "results.csv")
            metric = "iou" if task == "seg" else "acc"
            better = [float(r[f"{metric}_val"]) >= float(r[f"single_{metric}_val"]) for r in rows]
            assert record[f"{task}_percent"] == pytest.approx(100 * sum(better) / len(better))
    scores = analysis.category_scores(runs)
    rows = read_csv(runs[0].path / "results.csv")
    parts = [float(r["iou_val"]) for r in rows if r["category"] == "part"]
    record = scores.where(layer="conv4", task="seg", category="part").records()[0]
    assert record["all_mean"] == pytest.approx(np.mean(parts))
    assert record["all_se"] == pytest.approx(np.std(parts, ddof=1) / math.sqrt(len(parts)))


def test_subset_curves_and_failure_cases(runs):
    curves = analysis.subset_curves(runs)
    run = runs[2]
    assert sorted(set(curves["F"])) == [1, 2, 4, K]
    rows = read_csv(run.path / "results.csv")
    colours = [float(r["iou_val_F2"]) for r in rows if r["category"] == "color"]
    assert curves.where(category="color", F=2).records()[0]["mean"] == pytest.approx(
        np.mean(colours)
    )
    failures = analysis.failure_cases([run])
    expected = [r["concept"] for r in rows if float(r["single_iou_val"]) >= float(r["iou_val"])]
    assert failures["concept"] == expected and len(expected) > 0
    with h5py.File(run.summary["stores"]["concept_store"]) as h5:
        names = [n.decode() for n in h5["concepts/name"][()]]
        train = h5["split"][()] == 0
        pairs = list(zip(h5["pairs/image"][()], h5["pairs/concept"][()], h5["pairs/area"][()]))
    for record in failures.records():
        fractions = [a / 64 for i, c, a in pairs if names[c] == record["concept"] and train[i]]
        expected_size = np.mean(fractions) if fractions else float("nan")
        assert record["object_size"] == pytest.approx(expected_size, nan_ok=True)
    assert np.isfinite(failures["object_size"]).any()
    bins = analysis.failures_by_train_size([run])
    assert sum(bins["failures"]) == len(expected) and sum(bins["concepts"]) == len(rows)


def test_filter_usage_and_shared_filter(runs):
    run = runs[2]
    usage = analysis.filter_usage([run])
    chosen = [int(r["single_filter"]) for r in read_csv(run.path / "results.csv")]
    assert usage["concepts"] == [chosen.count(k) for k in range(K)]
    shared = analysis.shared_filters(run, top=1)
    assert set(shared["filter"]) == {3}
    assert sorted(shared["concept"]) == ["car", "tyre", "wheel"]


def test_per_image_stats(runs):
    table = analysis.per_image_stats(runs)
    assert len(table) == 4  # two seg runs x (single, all)
    with h5py.File(runs[0].path / "embeddings.h5") as h5:
        values = h5["per_image/all_iou"][()]
    nonzero = values[values > 0]
    record = table.where(layer="conv4", probe="all").records()[0]
    assert record["mu_nonzero"] == pytest.approx(nonzero.mean())
    assert record["sigma_nonzero"] == pytest.approx(nonzero.std())
    assert record["percent_zero"] == pytest.approx(100 * np.mean(values == 0))


def test_weight_correlations_match_t_test(runs):
    run = runs[2]
    table = analysis.weight_correlations([run])
    with h5py.File(run.path / "embeddings.h5") as h5:
        weights, scores = (
            h5["weights"][()].astype(np.float64),
            h5["filter_scores/val"][()].astype(np.float64),
        )
    significant = 0
    for i, record in enumerate(table.records()):
        x = np.maximum(weights[i], 0)
        r = np.corrcoef(x, scores[i])[0, 1]
        t = r * math.sqrt((K - 2) / (1 - r * r))
        p = 2 * stats.t.sf(abs(t), K - 2)
        assert record["r"] == pytest.approx(r, abs=1e-9) and record["p"] == pytest.approx(
            p, rel=1e-6, abs=1e-12
        )
        significant += p < 0.01
    summary = analysis.correlation_summary(table)
    assert summary.rows[0][5] == pytest.approx(100 * significant / len(table))
    assert significant >= len(table) // 2  # the planted half follows max(w, 0)
    shares = analysis.weight_shares(weights)
    assert np.allclose(shares.sum(axis=1), 1) and np.all(np.diff(shares, axis=1) <= 0)


def test_planted_neighbours_and_arithmetic(runs):
    run = runs[2]
    weights = run.embeddings.weights
    near = analysis.nearest_concepts(run.concepts, weights, k=2)
    for name in ("wheel", "tyre", "car"):
        assert {n for n, _ in near[name]} == {"wheel", "tyre", "car"} - {name}
    assert analysis.parse_expression("grass+blue-c-green-c", run.concepts) == [
        (1, "grass"),
        (1, "blue-c"),
        (-1, "green-c"),
    ]
    assert analysis.parse_expression("grass + blue-c - green-c", run.concepts)[2] == (-1, "green-c")
    top = analysis.vector_arithmetic(run.concepts, weights, "grass+blue-c-green-c", k=5)
    assert top[0][0] == "sky" and top[0][1] == pytest.approx(1.0, abs=1e-5)
    assert not {"grass", "blue-c", "green-c"} & {n for n, _ in top}
    with pytest.raises(analysis.ExpressionError, match="purple"):
        analysis.parse_expression("grass+purple", run.concepts)
    table2 = analysis.neighbour_table(runs, k=2)
    row = table2.where(layer="conv5", concept="wheel", rank=1).records()[0]
    assert row["seg_neighbour"] in ("tyre", "car") and row["cls_neighbour"] in ("tyre", "car")
    assert (
        table2.where(layer="conv5", concept="street-s", rank=1).records()[0]["seg_neighbour"] == ""
    )


def test_space_distances_brute_force(runs):
    total, per_concept, concepts = analysis.space_distances(runs)
    assert len(concepts) == len(PIXEL)
    unit = []
    for run in runs:
        index = list(run.concepts)
        w = np.array([run.embeddings.weights[index.index(c)] for c in concepts])
        unit.append(w / np.linalg.norm(w, axis=1, keepdims=True))
    for i in range(len(runs)):
        for j in range(len(runs)):
            di, dj = unit[i] @ unit[i].T, unit[j] @ unit[j].T
            brute = sum(
                (di[a, b] - dj[a, b]) ** 2
                for a in range(len(concepts))
                for b in range(len(concepts))
            )
            assert total[i, j] == pytest.approx(brute)
            assert per_concept[i, j, 0] == pytest.approx(((di[0] - dj[0]) ** 2).sum())
    pairs, by_category = analysis.distance_tables(runs)
    assert len(pairs) == 9 and set(by_category["category"]) == {
        "color",
        "material",
        "object",
        "part",
    }


def test_evaluate_over_sweep_writes_report(sweep, tmp_path):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "evaluate",
            overrides=[
                f"sweep='{sweep}'",
                f"output_dir='{tmp_path}'",
                "arithmetic=['grass+blue-c-green-c','grass+nothing']",
            ],
        )
    report = analysis.evaluate(cfg)
    html = (tmp_path / "index.html").read_text()
    pngs, csvs = sorted(tmp_path.glob("*.png")), sorted(tmp_path.glob("*.csv"))
    assert len(pngs) >= 12 and len(csvs) >= 15
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000, png.name
        assert f"src='{png.name}'" in html
    for table in csvs:
        assert len(read_csv(table)) >= 1, table.name
        assert f"href='{table.name}'" in html
    table1 = read_csv(tmp_path / "table1.csv")
    assert float(table1[1]["cls_percent"]) == pytest.approx(
        analysis.percent_all_ge_single(analysis.load_run(next(sweep.glob("*conv5-cls")))), abs=1e-4
    )
    table3 = read_csv(tmp_path / "table3_arithmetic.csv")
    assert {r["concept"] for r in table3 if r["rank"] == "1"} == {"sky"}
    assert "grass+nothing" in html  # the unknown concept is noted, not fatal
    assert set(report.figures) >= {
        "fig2_seg",
        "fig2_cls",
        "fig3_subsets",
        "fig7_per_image",
        "fig10_seg",
    }


def test_results_only_run_is_analysed_without_embeddings(sweep, tmp_path):
    run_dir = tmp_path / "bare-run"
    run_dir.mkdir()
    (run_dir / "results.csv").write_bytes(
        (next(sweep.glob("*conv4-seg")) / "results.csv").read_bytes()
    )
    run = analysis.load_run(run_dir)
    assert (run.network, run.layer, run.task, run.embeddings) == ("?", "bare-run", "seg", None)
    report = analysis.analyse([run], tmp_path / "report", arithmetic=["grass+sky"], tsne=False)
    assert {"table1", "fig2_seg", "fig5_filter_usage"} <= set(report.figures)
    assert "no run has embeddings.h5" in (tmp_path / "report" / "index.html").read_text()
    with pytest.raises(analysis.NoRunsError):
        analysis.analyse([], tmp_path / "empty")
    (run_dir / "results.csv").write_text(
        "concept,category,single_iou_val,iou_val\nsky,object,0.2,high\n"
    )
    with pytest.raises(analysis.RunError, match="row 2 column 'iou_val'"):
        analysis.load_run(run_dir)
