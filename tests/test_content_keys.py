"""Content-addressed caches: an in-place edit of any input gives a new store (logged, naming what
changed) and new results; same-named datasets elsewhere get their own stores; a corrupt cached
artifact of any kind is rebuilt; temporary files of dead processes are removed."""

from __future__ import annotations

import csv
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import compose_config, store_config
from PIL import Image

from net2vec.common.cache import Artifact, atomic_path, cached_build, read_record
from net2vec.data.concept_store import prepare_concept_store
from net2vec.data.fingerprint import dataset_fingerprint
from net2vec.data.synthetic import generate_synthetic
from net2vec.features.synthnet import SynthNet, ensure_synthnet, load_synthnet
from net2vec.run.pipeline import prepare_activation_store, train


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return generate_synthetic(
        tmp_path_factory.mktemp("data") / "set", images=40, size=64, seed=5, progress=False
    )


@pytest.fixture
def dataset(source, tmp_path) -> Path:
    """A private copy (named `set`, like the source) that a test may edit."""
    return Path(shutil.copytree(source, tmp_path / "copy" / "set"))


def rows_of(path: Path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def messages(caplog) -> str:
    return "\n".join(record.getMessage() for record in caplog.records)


def first_mask(root: Path) -> Path:
    row = next(r for r in rows_of(root / "index.csv") if r["object"])
    return root / "images" / row["object"].split(";")[0]


def test_zeroing_a_mask_in_place_changes_the_rerun_results(dataset, tmp_path, caplog):
    common = ["network=planted", f"data.root={dataset}", "data.generate=false"]
    first = train(compose_config(tmp_path / "a", *common, cache=tmp_path / "cache"))
    for row in rows_of(dataset / "index.csv"):  # every object mask zeroed
        for name in filter(None, row["object"].split(";")):
            path = dataset / "images" / name
            Image.fromarray(np.zeros_like(np.asarray(Image.open(path)))).save(path)
    with caplog.at_level(logging.INFO, logger="net2vec.common.cache"):
        second = train(compose_config(tmp_path / "b", *common, cache=tmp_path / "cache"))
    assert second["stores"] != first["stores"]
    assert "concept store: building" in messages(caplog) and "changed since" in messages(caplog)
    assert "masks" in messages(caplog) and "concept store: reusing" not in messages(caplog)
    a = {r["concept"]: r for r in rows_of(tmp_path / "a" / "run" / "results.csv")}
    b = {r["concept"]: r for r in rows_of(tmp_path / "b" / "run" / "results.csv")}
    assert set(a) != set(b) or any(a[c]["iou_val"] != b[c]["iou_val"] for c in a)


def test_renaming_a_concept_in_label_csv_rebuilds_the_concept_store(dataset, tmp_path, caplog):
    first = prepare_concept_store(dataset, tmp_path / "cache", progress=False)
    old = str(first.names[0])
    text = (dataset / "label.csv").read_text()
    (dataset / "label.csv").write_text(text.replace(f",{old},", f",{old}-renamed,", 1))
    with caplog.at_level(logging.INFO, logger="net2vec.common.cache"):
        second = prepare_concept_store(dataset, tmp_path / "cache", progress=False)
    assert second.path != first.path and str(second.names[0]) == f"{old}-renamed"
    assert "changed since" in messages(caplog) and "label.csv" in messages(caplog)


def test_inverting_the_images_in_place_rebuilds_the_activation_store(dataset, tmp_path, caplog):
    cfg = store_config(tmp_path / "cache", weights=None, input_size=64)
    concepts = prepare_concept_store(dataset, tmp_path / "cache", progress=False)
    first = prepare_activation_store(cfg, concepts)
    before = first.activations(np.arange(4))
    for name in concepts.images:
        path = dataset / "images" / name
        Image.fromarray(255 - np.asarray(Image.open(path).convert("RGB"))).save(path)
    with caplog.at_level(logging.INFO, logger="net2vec.common.cache"):
        concepts = prepare_concept_store(dataset, tmp_path / "cache", progress=False)
        second = prepare_activation_store(cfg, concepts)
    assert second.path != first.path and "images" in messages(caplog)
    assert not np.array_equal(second.activations(np.arange(4)), before)


def test_an_edit_that_keeps_size_and_mtime_needs_verify_hash(dataset):
    before = {verify: dataset_fingerprint(dataset, verify) for verify in ("stat", "hash")}
    mask = first_mask(dataset)
    stat = mask.stat()
    data = bytearray(mask.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other content
    mask.write_bytes(bytes(data))
    os.utime(mask, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as `cp -p` or `rsync -t` would
    assert dataset_fingerprint(dataset, "stat") == before["stat"]  # the documented limit
    after = dataset_fingerprint(dataset, "hash")
    assert after["masks"] != before["hash"]["masks"] and after["images"] == before["hash"]["images"]


def test_two_same_named_datasets_in_other_folders_get_two_stores(source, tmp_path):
    one = Path(shutil.copytree(source, tmp_path / "a" / "set"))
    two = generate_synthetic(tmp_path / "b" / "set", images=40, size=64, seed=6, progress=False)
    stores = [
        prepare_concept_store(root, tmp_path / "cache", progress=False) for root in (one, two)
    ]
    assert stores[0].path != stores[1].path
    assert [s.attrs["dataset_root"] for s in stores] == [str(one.resolve()), str(two.resolve())]
    assert not np.array_equal(stores[0].presence, stores[1].presence)


def test_a_corrupt_cached_synthnet_is_retrained(dataset, tmp_path, caplog):
    path = ensure_synthnet(dataset, tmp_path / "cache", seed=0, epochs=1)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    with caplog.at_level(logging.INFO, logger="net2vec.common.cache"):
        again = ensure_synthnet(dataset, tmp_path / "cache", seed=0, epochs=1)
    assert (
        again == path and "unreadable" in messages(caplog) and "synthnet: built" in messages(caplog)
    )
    assert isinstance(load_synthnet(path), SynthNet) and path.stat().st_size == len(good)
    assert read_record(path)["inputs"]["epochs"] == 1


def test_a_record_with_another_key_is_rebuilt_and_names_the_difference(tmp_path, caplog):
    built = []

    def build(tmp: Path, value: float) -> None:
        built.append(value)
        import h5py

        with h5py.File(tmp, "w") as handle:
            handle["x"] = value

    def load(path: Path) -> float:
        import h5py

        with h5py.File(path, "r") as handle:
            return float(handle["x"][()])

    a = Artifact(tmp_path, "thing", ".h5", {"data": "1", "tau": 0.005})
    assert cached_build(a, lambda t: build(t, 1.0), load, "thing") == 1.0
    assert cached_build(a, lambda t: build(t, 9.0), load, "thing") == 1.0 and built == [1.0]
    b = Artifact(tmp_path, "thing", ".h5", {"data": "2", "tau": 0.005})
    with caplog.at_level(logging.INFO, logger="net2vec.common.cache"):
        assert cached_build(b, lambda t: build(t, 2.0), load, "thing") == 2.0
    assert f"changed since {a.path.name}: data" in messages(caplog)
    shutil.copy(a.path, b.path)  # a file whose record is not its name's
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="net2vec.common.cache"):
        assert cached_build(b, lambda t: build(t, 3.0), load, "thing") == 3.0
    assert "inputs differ: data" in messages(caplog)


def test_temporary_files_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    stale = [tmp_path / f"store.h5.tmp-{pid}", tmp_path / f"store.h5.tmp-{pid}.scratch"]
    live = tmp_path / f"other.h5.tmp-{os.getppid()}"
    for path in [*stale, live]:
        path.write_bytes(b"half")
    with atomic_path(tmp_path / "new.h5") as tmp:
        tmp.write_bytes(b"done")
    assert not any(p.exists() for p in stale) and live.exists()
    assert (tmp_path / "new.h5").read_bytes() == b"done"
