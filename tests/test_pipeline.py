"""train(cfg) end to end on tiny data: the three run files, config composition, bad values."""

from __future__ import annotations

import csv
import json
import logging

import h5py
import numpy as np
import pytest
from conftest import CONF, compose_config
from hydra import compose, initialize_config_dir

from net2vec.common.errors import ConfigError
from net2vec.probes.fitting import Fitter
from net2vec.run.pipeline import train

NETWORKS = ["alexnet", "vgg16", "googlenet", "resnet18", "resnet50", "synthnet", "planted"]


def read_results(run_dir):
    with open(run_dir / "results.csv") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("network", NETWORKS)
def test_every_layer_alias_of_every_network_composes(network):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        base = compose(
            "config",
            overrides=[f"network={network}", "paths.root_dir=/tmp", "paths.output_dir=/tmp/r"],
        )
        assert base.data.name == ("synthetic" if network in ("synthnet", "planted") else "broden")
        if base.data.name == "broden":
            assert base.data.release == f"broden1_{base.network.input_size}"
        for alias in base.network.layers:
            cfg = compose(
                "config",
                overrides=[
                    f"network={network}",
                    f"layer={alias}",
                    "paths.root_dir=/tmp",
                    "paths.output_dir=/tmp/r",
                    "data=synthetic",
                    "task=cls",
                ],
            )
            assert (
                cfg.layer == alias
                and cfg.network.channels[alias] > 0
                and cfg.data.name == "synthetic"
            )


def test_planted_seg_run_writes_the_three_files(tmp_path, shared_cache):
    cfg = compose_config(
        tmp_path,
        "network=planted",
        "probe.subsets=[1,4]",
        f"paths.data_dir={shared_cache}/data",
        cache=shared_cache / "cache",
    )
    summary = train(cfg)
    run = tmp_path / "run"
    rows = read_results(run)
    scores = [c for c in rows[0] if c.startswith("iou_val") and not c.endswith(("_lo", "_hi"))]
    assert scores == ["iou_val", "iou_val_F1", "iou_val_F4"]
    assert {row["category"] for row in rows} <= {"color", "object", "part", "material"}
    with h5py.File(run / "embeddings.h5") as h5:
        weights = h5["weights"][:]
        assert weights.shape == (len(rows), 64) and np.isfinite(weights).all()
        kept = h5["subsets/F4/weights"][:]
        assert ((kept != 0).sum(1) <= 4).all()
        assert h5.attrs["network"] == "planted" and h5.attrs["task"] == "seg"
    on_disk = json.loads((run / "summary.json").read_text())
    assert on_disk["percent_all_ge_single"] == pytest.approx(summary["percent_all_ge_single"])
    single = np.array([float(r["single_iou_val"]) for r in rows])
    learned = np.array([float(r["iou_val"]) for r in rows])
    assert on_disk["percent_all_ge_single"] == pytest.approx(100 * np.mean(learned >= single))
    assert set(on_disk["timings_s"]) >= {
        "concept_store",
        "activation_store",
        "single_filter",
        "probe_all_filters",
    }
    assert on_disk["stores"]["activation_store"].endswith(".h5")


def test_a_rerun_reuses_the_cached_all_filter_probe(tmp_path, shared_cache, monkeypatch, caplog):
    common = ["network=planted", f"paths.data_dir={shared_cache}/data"]
    first = train(compose_config(tmp_path / "a", *common, cache=shared_cache / "cache"))
    fits = []
    real_fit = Fitter.fit
    monkeypatch.setattr(
        Fitter,
        "fit",
        lambda self, module, dm, name, **kw: (
            fits.append(name) or real_fit(self, module, dm, name, **kw)
        ),
    )
    with caplog.at_level(logging.INFO, logger="net2vec.common.cache"):
        second = train(
            compose_config(
                tmp_path / "b", *common, "probe.subsets=[2]", cache=shared_cache / "cache"
            )
        )
    assert "all_filters" not in fits and fits, f"the all-filter probe was trained again: {fits}"
    assert any("all-filter probe: reusing" in r.getMessage() for r in caplog.records)
    assert second["stores"] == first["stores"]
    a, b = read_results(tmp_path / "a" / "run"), read_results(tmp_path / "b" / "run")
    assert [r["iou_val"] for r in a] == [r["iou_val"] for r in b]


@pytest.mark.parametrize(
    "override,fragment",
    [
        ("probe.quantile=2", "probe.quantile"),
        ("probe.subsets=[0]", "positive integer"),
        ("probe.subsets=[1000]", "K=64"),
    ],
)
def test_bad_values_fail_with_one_line(tmp_path, shared_cache, override, fragment):
    cfg = compose_config(
        tmp_path,
        "network=planted",
        override,
        f"paths.data_dir={shared_cache}/data",
        cache=shared_cache / "cache",
    )
    with pytest.raises(ConfigError, match=fragment):
        train(cfg)
