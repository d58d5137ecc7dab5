"""Synthetic probe set: BRODEN format, exact round trip through the reader, catalogue properties."""

import csv
import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from net2vec.data.broden import BrodenDataset
from net2vec.data.synthetic import (
    COLORS,
    OBJECTS,
    build_catalogue,
    generate_synthetic,
    ground_truth,
    main,
)
from net2vec.run.pipeline import ensure_dataset

CONF = Path(__file__).resolve().parents[1] / "conf" / "data"


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return generate_synthetic(
        tmp_path_factory.mktemp("data") / "synth", images=40, size=64, seed=3, progress=False
    )


def truth_masks(maps: dict) -> dict[int, np.ndarray]:
    """Brute force: per label number, the OR over every drawn plane."""
    masks = {}
    for plane in maps.values():
        for number in set(np.unique(plane).tolist()) - {0}:
            masks[number] = masks.get(number, np.zeros(plane.shape, bool)) | (plane == number)
    return masks


def test_round_trip_reader_returns_what_was_drawn(synth):
    dataset = BrodenDataset(synth)
    assert len(dataset) == 40
    for i in range(len(dataset)):
        truth = ground_truth(synth, i)
        assert dataset.split(i) == truth.split
        assert dataset.mask_size(i) == (32, 32)
        expected = truth_masks(truth.maps)
        got = dataset.masks(i)
        assert sorted(got) == sorted(expected)
        for number, mask in expected.items():
            np.testing.assert_array_equal(got[number], mask)
        assert dataset.image_labels(i) == sorted(
            n for n in (truth.scene, truth.texture) if n is not None
        )
        assert np.asarray(dataset.load_image(i)).shape == (64, 64, 3)


def test_format_categories_planes_and_numbers(synth):
    dataset = BrodenDataset(synth)
    with open(synth / "index.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [
        "image",
        "split",
        "ih",
        "iw",
        "sh",
        "sw",
        "color",
        "object",
        "part",
        "material",
        "scene",
        "texture",
    ]
    assert any(len(row["part"].split(";")) == 2 for row in rows), "no image with two part planes"
    assert {"train", "val"} == {row["split"] for row in rows}
    assert set(dataset.category_names) == {
        "color",
        "object",
        "part",
        "material",
        "scene",
        "texture",
    }
    seen = set()
    for i in range(len(dataset)):
        seen |= set(dataset.masks(i))
    assert max(seen) > 255, "no pixel-level label above 255 in the masks"
    door = next(label for label in dataset.labels.values() if label.name == "door")
    assert door.categories == ("object", "part") and door.category == "object"
    codes = dataset.category_codes("color")
    assert sorted(dataset.labels[n].name for n in codes.values()) == sorted(COLORS)


def test_catalogue_size_sharing_and_scaling():
    catalogue = build_catalogue()
    assert len(catalogue.numbers) >= 80
    assert len(set(catalogue.numbers.values())) == len(catalogue.numbers)
    wheel_owners = {
        name for name, spec in OBJECTS.items() if any(part[0] == "wheel" for part in spec[5])
    }
    assert {"car", "bus", "truck", "bicycle"} <= wheel_owners
    big = build_catalogue(concepts=1197, seed=0)
    assert len(big.numbers) == 1197
    counts = {
        c: sum(cats[0] == c for cats in big.categories.values())
        for c in ("scene", "object", "part", "texture")
    }
    assert counts["scene"] > 400 and counts["object"] > 400 and counts["part"] > 150


def test_scaled_set_writes_every_concept(tmp_path):
    root = generate_synthetic(
        tmp_path / "big", images=12, size=32, seed=1, concepts=300, progress=False
    )
    with open(root / "label.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 300
    assert len(BrodenDataset(root).masks(0)) > 0


def test_deterministic_and_cli(tmp_path, synth):
    assert (
        main(["--out", str(tmp_path / "again"), "--images", "40", "--size", "64", "--seed", "3"])
        == 0
    )
    assert (tmp_path / "again" / "index.csv").read_bytes() == (synth / "index.csv").read_bytes()
    assert (tmp_path / "again" / "label.csv").read_bytes() == (synth / "label.csv").read_bytes()
    for name in ("synth_000007.png", "synth_000007_object.png"):
        a = np.asarray(Image.open(tmp_path / "again" / "images" / name))
        np.testing.assert_array_equal(a, np.asarray(Image.open(synth / "images" / name)))
    # same root, other parameters: refused, not silently reused
    assert (
        main(["--out", str(tmp_path / "again"), "--images", "41", "--size", "64", "--seed", "3"])
        == 1
    )


def test_colour_labels_match_rendered_pixels(synth):
    """Each colour region's mean pixel is nearest to its labelled colour (visually distinguishable)."""
    dataset = BrodenDataset(synth)
    palette = {dataset.labels[n].name: n for n in dataset.category_codes("color").values()}
    names, values = list(COLORS), np.array(list(COLORS.values()), float)
    hits = total = 0
    for i in range(len(dataset)):
        image = np.asarray(dataset.load_image(i), float)
        colour = ground_truth(synth, i).maps["color"]
        full = np.repeat(np.repeat(colour, 2, 0), 2, 1)
        for name in names:
            region = full == palette[name]
            if region.sum() >= 16:
                mean = image[region].mean(0)
                hits += names[int(np.argmin(((values - mean) ** 2).sum(1)))] == name
                total += 1
    assert total > 50 and hits / total > 0.95


def test_ensure_dataset_and_config(tmp_path):
    cfg = OmegaConf.create(
        {"paths": {"data_dir": str(tmp_path)}, "data": OmegaConf.load(CONF / "synthetic.yaml")}
    )
    assert cfg.data.root == f"{tmp_path}/synthetic-v2-2000-128-0" and cfg.data.generate is True
    cfg.data.images, cfg.data.size = 6, 32
    root = ensure_dataset(cfg.data)
    assert root == tmp_path / "synthetic-v2-6-32-0" and (root / "index.csv").is_file()
    assert ensure_dataset(cfg.data) == root  # reused


@pytest.mark.slow
def test_default_set_is_fast_long_tailed_and_rich(tmp_path):
    start = time.perf_counter()
    root = generate_synthetic(tmp_path / "default", progress=False)
    assert time.perf_counter() - start < 40
    dataset = BrodenDataset(root)
    train = {n: 0 for n in dataset.labels}
    for i in range(len(dataset)):
        if dataset.split(i) == "train":
            for number in set(dataset.masks(i)) | set(dataset.image_labels(i)):
                train[number] += 1
    present = [n for n, count in train.items() if count > 0]
    assert len(present) >= 80
    assert any(0 < count < 20 for count in train.values()), "no rare concept"
    assert 0.6 < sum(dataset.split(i) == "train" for i in range(len(dataset))) / len(dataset) < 0.8
