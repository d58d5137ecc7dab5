"""Converters on users' own inputs: categories kept, one output per input, every output inside
--out, bad options and malformed COCO JSON refused with one line."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from one_line import main_error
from PIL import Image
from test_convert import SIZE, coco_fixture, expected, run_coco, write_images

from net2vec.data.broden import BrodenDataset
from net2vec.data.convert import main as convert


def labelled_fixture(tmp_path, count=6):
    """Grayscale label maps with an object (1), a part (2) and a material (3) on every image, a
    label list with a category column, and image-level labels of both image-level categories."""
    truth = {}
    (tmp_path / "masks").mkdir(parents=True)
    for name in write_images(tmp_path / "images", count):
        plane = np.zeros((SIZE, SIZE), np.uint8)
        plane[:20], plane[30:40, 10:50], plane[50:] = 1, 2, 3
        Image.fromarray(plane).save(tmp_path / "masks" / name.replace(".jpg", ".png"))
        truth[name] = plane
    (tmp_path / "labels.csv").write_text(
        "number,name,category\n1,car,object\n2,wheel,part\n3,metal,material\n"
    )
    (tmp_path / "image_labels.csv").write_text(
        "image,label,category\nimg_000.jpg,street,scene\nimg_001.jpg,striped,texture\n"
    )
    return truth


def run_labelled(tmp_path, out, *extra):
    return convert(["masks", "--images", str(tmp_path / "images"), "--masks",
                    str(tmp_path / "masks"), "--labels", str(tmp_path / "labels.csv"),
                    "--out", str(out), "--size", str(SIZE), *extra])  # fmt: skip


def test_mask_labels_go_to_their_own_category_column(tmp_path):
    truth = labelled_fixture(tmp_path)
    out = tmp_path / "out"
    run_labelled(tmp_path, out, "--image-labels", str(tmp_path / "image_labels.csv"))
    dataset = BrodenDataset(out)
    names = {n: label.name for n, label in dataset.labels.items()}
    for i in range(len(dataset)):
        planes = dataset.column_planes(i)
        columns = {column: {names[n] for n in np.unique(p) if n} for column, p in planes}
        assert columns == {"object": {"car"}, "part": {"wheel"}, "material": {"metal"}}
        union = {names[n]: m for n, m in dataset.masks(i).items()}
        plane = truth[dataset.image_name(i)]
        for number, name in ((1, "car"), (2, "wheel"), (3, "metal")):
            np.testing.assert_array_equal(union[name], expected(plane == number))
    rows = {dataset.image_name(i): dataset.rows[i] for i in range(len(dataset))}
    number = {label.name: n for n, label in dataset.labels.items()}
    assert rows["img_000.jpg"]["scene"] == str(number["street"])
    assert rows["img_001.jpg"]["texture"] == str(number["striped"])
    assert rows["img_001.jpg"]["scene"] == ""
    categories = {label.name: label.category for label in dataset.labels.values()}
    assert categories == {
        "car": "object",
        "wheel": "part",
        "metal": "material",
        "street": "scene",
        "striped": "texture",
    }


def test_inputs_that_differ_in_suffix_get_their_own_outputs(tmp_path):
    path, truth = coco_fixture(tmp_path, count=3)
    data = json.loads(path.read_text())
    for image, suffix in zip(data["images"], (".png", ".jpg", ".jpeg")):  # im04.png/.jpg/.jpeg
        old = tmp_path / "images" / image["file_name"]
        image["file_name"] = f"im04{suffix}"
        Image.open(old).save(tmp_path / "images" / image["file_name"], format="PNG")
        truth[image["file_name"]] = truth.pop(old.name)
    path.write_text(json.dumps(data))
    out = tmp_path / "out"
    run_coco(tmp_path, path, out, "--size", str(SIZE), "--val-fraction", "0.34")
    dataset = BrodenDataset(out)
    images = [dataset.image_name(i) for i in range(3)]
    masks = [dataset.rows[i]["object"] for i in range(3)]
    assert len(set(images)) == 3 and len(set(masks)) == 3, (images, masks)
    source = {"im04.png": "im04.png", "im04.jpg": "im04.jpg", "im04_jpeg.jpg": "im04.jpeg"}
    for i, image in enumerate(images):
        names = {n: label.name for n, label in dataset.labels.items()}
        got = {names[n]: m for n, m in dataset.masks(i).items()}
        np.testing.assert_array_equal(got["cat"], expected(truth[source[image]]["cat"]))


@pytest.mark.parametrize(
    "name, fragment",
    [("../../escape/x.png", "without '..'"), ("ABSOLUTE", "without '..'")],
)
def test_output_paths_stay_inside_out(tmp_path, capsys, name, fragment):
    path, _ = coco_fixture(tmp_path / "set", count=3)
    source = tmp_path / "set" / "images" / "img_000.jpg"
    before = source.read_bytes()
    data = json.loads(path.read_text())
    data["images"][0]["file_name"] = str(source) if name == "ABSOLUTE" else name
    (tmp_path / "escape").mkdir()
    Image.open(source).save(tmp_path / "escape" / "x.png")
    path.write_text(json.dumps(data))
    out = tmp_path / "deep" / "er" / "out"
    line = main_error(
        convert,
        ["coco", "--images", str(tmp_path / "set" / "images"), "--annotations", str(path),
         "--out", str(out)],
        capsys,
    )  # fmt: skip
    assert fragment in line
    assert source.read_bytes() == before and not out.exists()
    assert sorted(p.name for p in (tmp_path / "escape").iterdir()) == ["x.png"]


@pytest.mark.parametrize(
    "options, fragment",
    [
        (["--mask-size", "-4"], "--mask-size=-4"),
        (["--mask-size", "0"], "--mask-size=0"),
        (["--mask-size", "500"], "--mask-size=500"),
        (["--size", "4"], "--size=4"),
        (["--val-fraction", "1.5"], "--val-fraction=1.5"),
    ],
)
def test_bad_options_are_one_line(tmp_path, capsys, options, fragment):
    labelled_fixture(tmp_path, count=2)
    argv = ["masks", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"),
            "--labels", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "out"), *options]  # fmt: skip
    assert fragment in main_error(convert, argv, capsys)
    assert not (tmp_path / "out").exists()


def test_out_an_existing_file_is_one_line(tmp_path, capsys):
    labelled_fixture(tmp_path, count=2)
    (tmp_path / "file").write_text("keep")
    argv = ["masks", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"),
            "--labels", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "file")]  # fmt: skip
    assert "not a folder" in main_error(convert, argv, capsys)
    assert (tmp_path / "file").read_text() == "keep"


def test_an_image_level_label_of_another_category_is_one_line(tmp_path, capsys):
    labelled_fixture(tmp_path, count=2)
    (tmp_path / "image_labels.csv").write_text("image,label,category\nimg_000.jpg,rust,material\n")
    argv = ["masks", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"),
            "--labels", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "out"),
            "--image-labels", str(tmp_path / "image_labels.csv")]  # fmt: skip
    assert "line 2: category 'material'" in main_error(convert, argv, capsys)


def broken(data):
    data["images"][0].pop("file_name")
    return data


def string_segmentation(data):
    data["annotations"][0]["segmentation"] = "abc"
    return data


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda data: 7, "a JSON int"),
        (broken, "lacks an 'id' or a 'file_name'"),
        (string_segmentation, "annotation 0 has a segmentation"),
        (lambda data: {**data, "images": {"a": 1}}, "'images': no list"),
    ],
    ids=["number", "no-file_name", "string-segmentation", "images-not-a-list"],
)
def test_malformed_coco_json_is_one_line(tmp_path, capsys, edit, fragment):
    path, _ = coco_fixture(tmp_path, count=3)
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    argv = ["coco", "--images", str(tmp_path / "images"), "--annotations", str(path),
            "--out", str(tmp_path / "out")]  # fmt: skip
    line = main_error(convert, argv, capsys)
    assert fragment in line and str(path) in line


def test_label_csv_lists_each_category_of_a_converted_set(tmp_path):
    labelled_fixture(tmp_path, count=3)
    out = tmp_path / "out"
    run_labelled(tmp_path, out)
    with open(out / "category.csv") as handle:
        assert {row["name"] for row in csv.DictReader(handle)} == {"object", "part", "material"}
