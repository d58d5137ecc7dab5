"""Converters to BRODEN format: COCO instance/panoptic JSON and ADE20K-style label maps, on
small fixtures drawn here; every mask is checked against the fixture's own numpy masks."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import CONF
from hydra import compose, initialize_config_dir
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from net2vec.data.broden import BrodenDataset
from net2vec.data.concept_store import prepare_concept_store
from net2vec.data.convert import main as convert
from net2vec.data.converter_inputs import stack_planes, val_names
from net2vec.run.pipeline import train

SIZE, MASK = 64, 32  # fixture images are SIZE x SIZE; converted masks MASK x MASK
CATEGORIES = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}, {"id": 9, "name": "sky"}]


def box(y0, y1, x0, x1):
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def expected(mask):
    """What the converter's nearest-neighbour resize keeps: the pixel at each 2x2 block's centre."""
    return mask[1::2, 1::2].astype(bool)


def write_images(folder, count, suffix=".jpg", prefix=""):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = [f"{prefix}img_{i:03d}{suffix}" for i in range(count)]
    for name in names:
        Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), np.uint8)).save(folder / name)
    return names


def rle(mask):
    encoded = mask_utils.encode(np.asfortranarray(mask))
    return {"size": encoded["size"], "counts": encoded["counts"].decode()}


def coco_fixture(tmp_path, count=12, prefix=""):
    """Instance JSON: image i has a cat (RLE), a dog (polygon) overlapping it, and every third
    image a crowd of sky (RLE, iscrowd). Returns the JSON path and the true masks per image."""
    names = write_images(tmp_path / "images", count, prefix=prefix)
    images, anns, truth = [], [], {}
    for i, name in enumerate(names):
        images.append({"id": 100 + i, "file_name": name, "height": SIZE, "width": SIZE})
        cat = box(4 + i, 30 + i, 6, 40)
        anns.append(
            {
                "id": len(anns),
                "image_id": 100 + i,
                "category_id": 3,
                "iscrowd": 0,
                "segmentation": rle(cat),
            }
        )
        polygon = [20.0, 20.0, 60.0, 20.0, 60.0, 50.0, 20.0, 50.0]
        anns.append(
            {
                "id": len(anns),
                "image_id": 100 + i,
                "category_id": 7,
                "iscrowd": 0,
                "segmentation": [polygon],
            }
        )
        truth[name] = {"cat": cat, "dog": None}
        if i % 3 == 0:
            sky = box(0, 10, 0, SIZE)
            anns.append(
                {
                    "id": len(anns),
                    "image_id": 100 + i,
                    "category_id": 9,
                    "iscrowd": 1,
                    "segmentation": rle(sky),
                }
            )
            truth[name]["sky"] = sky
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": CATEGORIES}))
    coco = COCO(str(path))  # pycocotools' own rasterisation of the polygons: the reference
    for i, name in enumerate(names):
        dog = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=100 + i)) if a["category_id"] == 7]
        truth[name]["dog"] = coco.annToMask(dog[0])
    return path, truth


def masks_by_name(root):
    dataset = BrodenDataset(root)
    names = {number: label.name for number, label in dataset.labels.items()}
    return dataset, {
        dataset.image_name(i): {names[n]: m for n, m in dataset.masks(i).items()}
        for i in range(len(dataset))
    }


def run_coco(tmp_path, annotations, out, *extra: str) -> int:
    """`convert coco` on the fixture images under `tmp_path`."""
    images = str(tmp_path / "images")
    return convert(["coco", "--images", images, "--annotations", str(annotations),
                    "--out", str(out), *extra])  # fmt: skip


def test_coco_instances_convert_with_exact_masks_and_overlaps(tmp_path):
    path, truth = coco_fixture(tmp_path)
    out = tmp_path / "out"
    assert run_coco(tmp_path, path, out, "--size", str(SIZE), "--val-fraction", "0.25") == 0
    dataset, masks = masks_by_name(out)
    assert len(dataset) == 12 and {dataset.split(i) for i in range(12)} == {"train", "val"}
    assert sum(dataset.split(i) == "val" for i in range(12)) == 3
    assert dataset.mask_size(0) == (MASK, MASK)
    assert [label.name for label in dataset.labels.values()] == ["cat", "dog", "sky"]
    assert all(label.category == "object" for label in dataset.labels.values())
    overlap = 0
    for name, labels in truth.items():
        got = masks[name]
        assert set(got) == set(labels)
        for label, mask in labels.items():
            np.testing.assert_array_equal(got[label], expected(mask), err_msg=f"{name} {label}")
        overlap += (got["cat"] & got["dog"]).sum()
    assert overlap > 0  # overlapping instances keep both labels (two planes)
    with Image.open(out / "images" / dataset.image_name(0)) as image:
        assert image.size == (SIZE, SIZE)


def test_given_splits_and_image_level_labels(tmp_path):
    train, _ = coco_fixture(tmp_path / "a", count=4)
    val, _ = coco_fixture(tmp_path / "b", count=3, prefix="val_")
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "image,label,category\nimg_000.jpg,kitchen;street,\n"
        "val_img_001.jpg,striped,texture\nval_img_001.jpg,cat,scene\n"
    )
    out = tmp_path / "out"
    convert(
        [
            "coco",
            "--annotations",
            f"train={train}",
            "--images",
            str(tmp_path / "a/images"),
            "--annotations",
            f"val={val}",
            "--images",
            str(tmp_path / "b/images"),
            "--out",
            str(out),
            "--image-labels",
            str(labels),
            "--size",
            str(SIZE),
        ]
    )
    dataset = BrodenDataset(out)
    splits = {dataset.image_name(i): dataset.split(i) for i in range(len(dataset))}
    assert splits == {
        **{f"img_{i:03d}.jpg": "train" for i in range(4)},
        **{f"val_img_{i:03d}.jpg": "val" for i in range(3)},
    }
    number = {label.name: n for n, label in dataset.labels.items()}
    categories = {label.name: label.categories for label in dataset.labels.values()}
    assert categories["kitchen"] == ("scene",) and categories["striped"] == ("texture",)
    assert categories["cat"] == ("object", "scene")  # a mask label also given per image
    assert dataset.image_labels(0) == sorted([number["kitchen"], number["street"]])
    row = next(i for i in range(len(dataset)) if dataset.image_name(i) == "val_img_001.jpg")
    assert dataset.image_labels(row) == sorted([number["striped"], number["cat"]])
    assert dataset.rows[row]["texture"] == str(number["striped"])


def test_bad_inputs_end_with_one_line(tmp_path, capsys):
    path, _ = coco_fixture(tmp_path, count=3)
    images = str(tmp_path / "images")

    def error(*args):
        with pytest.raises(SystemExit) as raised:
            convert(["coco", "--images", images, *args])
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("error: ")]
        assert raised.value.code == 2 and len(lines) == 1 and "Traceback" not in err
        return lines[0]

    assert "no val images" in error("--annotations", f"train={path}", "--out", str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()
    (tmp_path / "images" / "img_001.jpg").unlink()
    assert "img_001.jpg" in error("--annotations", str(path), "--out", str(tmp_path / "o"))
    (tmp_path / "bad.json").write_text("{not json")
    assert "bad.json" in error("--annotations", str(tmp_path / "bad.json"), "--out", "x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("")
    assert "not empty" in error("--annotations", str(path), "--out", str(tmp_path / "full"))


def test_split_by_image_is_deterministic_and_order_free():
    names = [f"x{i}.jpg" for i in range(50)]
    val = val_names(names, 0.2)
    assert len(val) == 10 and val == val_names(list(reversed(names)), 0.2)
    assert val_names(names[:1], 0.2) == set()  # one image: it trains
    assert len(val_names(names[:3], 0.2)) == 1  # at least one val image when any is asked for


def test_stack_planes_keeps_each_label_union_exact():
    rng = np.random.default_rng(1)
    masks = [(n, rng.random((9, 7)) < 0.5) for n in (5, 2, 5, 9)]
    planes = stack_planes(masks, (9, 7))
    for number in (5, 2, 9):
        union = np.logical_or.reduce([m for n, m in masks if n == number])
        got = np.logical_or.reduce([plane == number for plane in planes])
        np.testing.assert_array_equal(got, union)


def test_coco_panoptic_converts_segments_to_categories(tmp_path):
    names = write_images(tmp_path / "images", 6)
    (tmp_path / "panoptic").mkdir()
    images, anns, truth = [], [], {}
    for i, name in enumerate(names):
        ids = np.zeros((SIZE, SIZE), np.int64)
        cat, sky = box(20, 50, 5 + i, 30 + i).astype(bool), box(0, 12, 0, SIZE).astype(bool)
        ids[sky], ids[cat] = 70000 + i, 300 + i  # ids above 65535 use the blue channel
        rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
        Image.fromarray(rgb).save(tmp_path / "panoptic" / f"p{i}.png")
        images.append({"id": i, "file_name": name, "height": SIZE, "width": SIZE})
        segments = [{"id": 300 + i, "category_id": 3}, {"id": 70000 + i, "category_id": 9}]
        anns.append({"image_id": i, "file_name": f"p{i}.png", "segments_info": segments})
        truth[name] = {"cat": cat, "sky": sky}
    path = tmp_path / "panoptic.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": CATEGORIES}))
    out = tmp_path / "out"
    run_coco(tmp_path, path, out, "--size", str(SIZE))
    _, masks = masks_by_name(out)
    for name, labels in truth.items():
        assert set(masks[name]) == set(labels)
        for label, mask in labels.items():
            np.testing.assert_array_equal(masks[name][label], expected(mask))


def ade_fixture(tmp_path, count=10):
    """ADE20K-style: nested image folders, grayscale label PNGs, an objectInfo150-like list."""
    truth = {}
    for i in range(count):
        sub = "a" if i % 2 else "b/c"
        (tmp_path / "masks" / sub).mkdir(parents=True, exist_ok=True)
        names = write_images(tmp_path / "images" / sub, 1, prefix=f"ade{i}_")
        plane = np.zeros((SIZE, SIZE), np.uint8)
        plane[:20], plane[30:, 10 + i : 40 + i] = 1, 3
        Image.fromarray(plane).save(tmp_path / "masks" / sub / f"ade{i}_img_000.png")
        truth[f"{sub}/{names[0]}"] = {"wall": plane == 1, "person": plane == 3}
    labels = tmp_path / "objectInfo150.csv"
    labels.write_text(
        "Idx,Ratio,Train,Val,Name\n1,0.1,1,1,wall\n2,0.1,1,1,building;edifice\n"
        "3,0.05,1,1,person;individual\n"
    )
    return labels, truth


def run_masks(tmp_path, labels, out, *extra: str) -> int:
    """`convert ade` on the ADE-style fixture under `tmp_path`."""
    images, masks = str(tmp_path / "images"), str(tmp_path / "masks")
    return convert(["ade", "--images", images, "--masks", masks, "--labels", str(labels),
                    "--out", str(out), *extra])  # fmt: skip


def test_ade_style_label_maps_convert(tmp_path):
    labels, truth = ade_fixture(tmp_path)
    out = tmp_path / "out"
    run_masks(tmp_path, labels, out, "--size", str(SIZE))
    dataset, masks = masks_by_name(out)
    assert {n: label.name for n, label in dataset.labels.items()} == {
        1: "wall",
        2: "building",
        3: "person",
    }
    assert set(masks) == set(truth) and sum(dataset.split(i) == "val" for i in range(10)) == 2
    for name, labels_ in truth.items():
        for label, mask in labels_.items():
            np.testing.assert_array_equal(masks[name][label], expected(mask))
    with open(out / "label.csv") as handle:
        rows = {row["name"]: row for row in csv.DictReader(handle)}
    assert rows["person"]["frequency"] == "10" and rows["building"]["frequency"] == "0"


def test_label_map_value_outside_the_list_is_one_line(tmp_path, capsys):
    labels, _ = ade_fixture(tmp_path, count=3)
    labels.write_text("name\nwall\n")  # one name per line would be numbered 1..; 3 is unknown
    with pytest.raises(SystemExit):
        run_masks(tmp_path, labels, tmp_path / "o")
    assert "label 3 is not in the label list" in capsys.readouterr().err


def test_converted_coco_set_builds_a_concept_store(tmp_path):
    path, truth = coco_fixture(tmp_path, count=10)
    out = tmp_path / "out"
    run_coco(tmp_path, path, out, "--size", str(SIZE), "--val-fraction", "0.3")
    store = prepare_concept_store(out, tmp_path / "cache", progress=False)
    assert list(store.names) == ["cat", "dog", "sky"] and store.pixel_level.all()
    assert store.mask_size == (MASK, MASK) and (store.split == 1).sum() == 3
    for i, image in enumerate(store.images):
        pairs = np.arange(store.pair_offsets[i], store.pair_offsets[i + 1])
        got = dict(zip(store.names[store.pair_concept[pairs]], store.masks(pairs)))
        for label, mask in truth[image].items():
            np.testing.assert_array_equal(got[label], expected(mask))


@pytest.mark.slow
def test_train_runs_on_a_converted_coco_set(tmp_path):
    path, _ = coco_fixture(tmp_path, count=30)
    out = tmp_path / "coco_set"
    run_coco(tmp_path, path, out, "--size", "128")
    overrides = [
        f"paths.root_dir={tmp_path}",
        f"paths.cache_dir={tmp_path}/cache",
        f"paths.output_dir={tmp_path}/run",
        "network=synthnet",
        "network.weights=null",
        "data=broden",
        f"data.root={out}",
        "task=seg",
        "task.epochs=2",
        "logger=none",
        "probe.subsets=[2]",
        "trainer.enable_progress_bar=false",
    ]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    summary = train(cfg)
    with open(tmp_path / "run" / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["concept"] for row in rows} == {"cat", "dog", "sky"}
    assert summary["config"]["data_root"] == str(out)
