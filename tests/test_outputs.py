"""Run outputs: results.csv columns (README, docs/architecture.md), embeddings.h5 layout, summary figures; config checks."""

import csv
import json

import h5py
import numpy as np
import pytest
from omegaconf import OmegaConf

from net2vec.common.errors import ConfigError
from net2vec.probes.outcome import ProbeOutcome
from net2vec.probes.subsets import check_subsets
from net2vec.run.config import check_config
from net2vec.run.outputs import write_outputs


def make_outcome(task: str, rng: np.random.Generator) -> ProbeOutcome:
    names = np.array(["sky", "grass", "wheel", "red"])
    metric = "iou" if task == "seg" else "acc"
    single = {f"single_{metric}_val": rng.random(4)}
    if task == "seg":
        single = {"single_iou_train": rng.random(4), **single}
    weights = rng.normal(size=(4, 6)).astype(np.float32)
    subset = {
        "score_val": rng.random(4),
        "weights": weights,
        "bias": np.zeros(4, np.float32),
        "filters": np.argsort(-np.abs(weights), axis=1)[:, :2],
    }
    return ProbeOutcome(
        task=task,
        names=names,
        categories=np.array(["object", "object", "part", "color"]),
        label_numbers=np.array([3, 4, 300, 1]),
        n_train=np.array([10, 20, 5, 7]),
        n_val=np.array([3, 4, 2, 2]),
        single_filter=np.array([0, 5, 2, 1]),
        single_scores=single,
        score_val=rng.random(4),
        weights=weights,
        bias=np.zeros(4, np.float32),
        subsets={2: subset},
    )


@pytest.mark.parametrize("task", ["seg", "cls"])
def test_outputs_follow_the_contract(tmp_path, task):
    outcome = make_outcome(task, np.random.default_rng(0))
    summary = write_outputs(
        outcome,
        tmp_path,
        {"task": task},
        {"probe": 1.0},
        {"concept_store": "x"},
        {"network": "synthnet", "layer": "conv5"},
    )
    with open(tmp_path / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    metric = "iou" if task == "seg" else "acc"
    expected = ["concept", "category", "label_number", "n_train", "n_val", "single_filter"]
    expected += ["single_iou_train", "single_iou_val"] if task == "seg" else ["single_acc_val"]
    expected += [f"{metric}_val", f"{metric}_val_F2"]
    assert list(rows[0]) == expected
    assert [r["concept"] for r in rows] == list(outcome.names)
    assert np.allclose([float(r[f"{metric}_val"]) for r in rows], outcome.score_val, atol=1e-5)
    with h5py.File(tmp_path / "embeddings.h5") as h5:
        assert np.array_equal(h5["weights"][:], outcome.weights)
        assert [c.decode() for c in h5["concepts"][:]] == list(outcome.names)
        assert h5["subsets/F2/weights"].shape == (4, 6)
        assert h5.attrs["layer"] == "conv5"
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    better = outcome.score_val >= outcome.single_val
    assert on_disk["percent_all_ge_single"] == pytest.approx(100 * better.mean())
    objects = outcome.categories == "object"
    assert on_disk["mean_by_category"]["object"]["all"] == pytest.approx(
        outcome.score_val[objects].mean()
    )
    assert on_disk["mean_by_category"]["part"]["F2"] == pytest.approx(
        outcome.subsets[2]["score_val"][2]
    )


@pytest.mark.parametrize(
    "key,value,fragment",
    [
        ("task._target_", None, "task="),
        ("probe.quantile", 1.5, "probe.quantile"),
        ("probe.quantile", 0.0, "probe.quantile"),
        ("probe.subsets", [4, 0], "positive integer"),
    ],
)
def test_bad_config_values_fail_in_one_line(key, value, fragment):
    cfg = OmegaConf.create(
        {
            "task": {"_target_": "net2vec.probes.tasks.SegmentationTask", "name": "seg"},
            "probe": {"quantile": 0.005, "subsets": []},
        }
    )
    OmegaConf.update(cfg, key, value)
    if value is None:
        del cfg.task[key.split(".")[1]]
    with pytest.raises(ConfigError, match=fragment) as error:
        check_config(cfg)
    assert "\n" not in str(error.value)


def test_subsets_larger_than_the_layer_are_refused():
    assert check_subsets([8, 2, 8], 16) == [2, 8]
    with pytest.raises(ConfigError, match="K=16"):
        check_subsets([32], 16)
