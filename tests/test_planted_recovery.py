"""The probes recover the planted network's known answers, run end to end through train(cfg).

Segmentation uses colour concepts only (``network.categories=[color]``): colours partition every
image, so no other concept's filter overlaps a concept's pixels and the α-weighted loss has a
unique answer (with nested concepts, e.g. a door on a bus, the paper's recall-favouring loss
rightly adds the bus filters to the door probe). No noise and τ = 0.3 make each planted filter's
thresholded map its concepts' masks exactly; lr 0.5 stands in for the many steps of BRODEN.
"""

from __future__ import annotations

import csv
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import compose_config

from net2vec.data.concept_store import ConceptStore
from net2vec.run.pipeline import train

EXACT = ["network=planted", "network.noise=0", "logger=none"]


def planted_run(tmp_path: Path, cache: Path, *overrides: str) -> dict:
    """train(cfg); returns per-concept arrays aligned with results.csv plus the planted matrix."""
    summary = train(
        compose_config(
            tmp_path, *EXACT, f"paths.data_dir={cache}/data", *overrides, cache=cache / "cache"
        )
    )
    run = tmp_path / "run"
    with open(run / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    store = ConceptStore(summary["stores"]["concept_store"])
    index = {int(n): i for i, n in enumerate(store.label_numbers)}
    concept = np.array([index[int(row["label_number"])] for row in rows])
    with h5py.File(summary["stores"]["activation_store"]) as handle:
        planted, kind = handle["planted/weights"][:], handle["planted/kind"][:].astype(str)
    with h5py.File(run / "embeddings.h5") as handle:
        weights = handle["weights"][:]
    columns = {
        name: np.array([float(row[name]) for row in rows])
        for name in rows[0]
        if name.endswith("_val") or "_val_F" in name or name in ("n_train", "n_val")
    }
    return {**columns, "planted": planted[concept], "kind": kind[concept], "weights": weights}


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("planted-recovery")


def test_segmentation_probes_recover_the_planted_code(tmp_path, cache):
    r = planted_run(
        tmp_path,
        cache,
        "network.map_size=32",
        "network.filters=128",
        "network.categories=[color]",
        "probe.quantile=0.3",
        "data.images=200",
        "task.epochs=30",
        "task.optimizer.lr=0.5",
        "probe.subsets=[1,2,3,4]",
    )
    kind, single, learned = r["kind"], r["single_iou_val"], r["iou_val"]
    assert {"single", "distributed"} <= set(kind)
    ones = kind == "single"
    np.testing.assert_allclose(learned[ones], single[ones], atol=0.05)  # single ≈ all filters
    assert single[ones].min() > 0.95 and np.all(r["iou_val_F1"][ones] >= single[ones] - 0.05)
    spread = kind == "distributed"
    assert learned[spread].min() >= 0.9  # the code is recovered
    assert single[spread].max() <= 1 / 3 + 0.15  # one stripe: its share
    curve = [r[f"iou_val_F{f}"][spread].mean() for f in (1, 2, 3, 4)]
    assert curve[0] < curve[1] < curve[2] <= curve[3] + 1e-6 and curve[3] >= 0.9, curve
    # Learned concept vectors point at the planted filters: their positive part correlates with the
    # planted row (the negative weights suppress co-occurring colours' filters, planted zeros).
    for w, p in zip(r["weights"][kind != "absent"], r["planted"][kind != "absent"]):
        assert np.corrcoef(np.maximum(w, 0), p)[0, 1] >= 0.9


def test_classification_probes_recover_planted_presence(tmp_path, cache):
    r = planted_run(
        tmp_path,
        cache,
        "task=cls",
        "network.categories=[scene,texture]",
        "data.images=600",
        "task.epochs=30",
    )
    present = (r["kind"] != "absent") & (r["n_train"] >= 10)
    assert present.sum() >= 8
    assert r["acc_val"][present].min() >= 0.9 and r["single_acc_val"][present].min() >= 0.95
    top = np.abs(r["weights"][present]).argmax(1)
    assert np.all(
        r["planted"][present][np.arange(present.sum()), top] > 0
    )  # top |w| filter is planted
    ones = present & np.isin(r["kind"], ["single", "shared"])
    assert ones.any() and np.all(r["weights"][ones].argmax(1) == r["planted"][ones].argmax(1))


@pytest.mark.slow
@pytest.mark.parametrize(
    "variant, lr",
    [
        (["probe.decision=calibrated"], 0.5),
        (["task.loss=soft_iou"], 0.5),
        (["probe.head=mlp"], 0.05),  # its products of weights diverge at lr 0.5
    ],
)
def test_probe_variants_recover_the_planted_code(tmp_path, cache, variant, lr):
    """The same planted check for each probe variant (no top-F: the mlp head has none)."""
    r = planted_run(
        tmp_path,
        cache,
        "network.map_size=32",
        "network.filters=128",
        "network.categories=[color]",
        "probe.quantile=0.3",
        "data.images=200",
        "task.epochs=30",
        f"task.optimizer.lr={lr}",
        *variant,
    )
    kind, single, learned = r["kind"], r["single_iou_val"], r["iou_val"]
    ones, spread = kind == "single", kind == "distributed"
    print(variant, learned[ones].min(), learned[spread].min())
    np.testing.assert_allclose(learned[ones], single[ones], atol=0.05)
    assert learned[spread].min() >= 0.9
