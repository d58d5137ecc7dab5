"""BRODEN reader: header-named columns, R + 256*G decoding, multi-plane union, one-line errors."""

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from net2vec.data.broden import BrodenDataset, DatasetError, parse_categories
from net2vec.data.synthetic import generate_synthetic

HEADER = [
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


def save_mask(path: Path, plane: np.ndarray) -> None:
    rgb = np.zeros(plane.shape + (3,), np.uint8)
    rgb[..., 0], rgb[..., 1] = plane % 256, plane // 256
    Image.fromarray(rgb).save(path)


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture
def tiny(tmp_path) -> Path:
    """Two hand-made images: labels 3, 300 and 700 (> 255), overlapping part planes, scene/texture cells."""
    root = tmp_path / "tiny"
    (root / "images" / "sub").mkdir(parents=True)
    for name in ("a", "b"):
        Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(
            root / "images" / "sub" / f"{name}.jpg"
        )
    color = np.zeros((4, 4), np.int64)
    color[:2] = 3
    part1 = np.zeros((4, 4), np.int64)
    part1[:, :2] = 300
    part2 = np.zeros((4, 4), np.int64)
    part2[1:3, 1:3] = 700
    part2[3, 3] = 300  # the same label on two planes: union
    save_mask(root / "images" / "sub" / "a_color.png", color)
    save_mask(root / "images" / "sub" / "a_part1.png", part1)
    save_mask(root / "images" / "sub" / "a_part2.png", part2)
    write_csv(
        root / "index.csv",
        HEADER,
        [
            [
                "sub/a.jpg",
                "train",
                8,
                8,
                4,
                4,
                "sub/a_color.png",
                "",
                "sub/a_part1.png;sub/a_part2.png",
                "",
                "5",
                "6;7",
            ],
            ["sub/b.jpg", "val", 8, 8, 4, 4, "", "", "", "", "", "6"],
        ],
    )
    write_csv(
        root / "label.csv",
        ["number", "name", "category", "frequency", "coverage", "syns"],
        [
            [3, "red", "color(1)", 1, 0.5, ""],
            [5, "street", "scene(1)", 1, 1, ""],
            [6, "striped", "texture(2)", 2, 2, ""],
            [7, "dotted", "texture(1)", 1, 1, ""],
            [300, "wheel", "object(12);part(30)", 1, 0.5, ""],
            [700, "hub", "part(1)", 1, 0.2, ""],
        ],
    )
    return root


def test_decodes_labels_above_255_and_merges_planes(tiny):
    dataset = BrodenDataset(tiny)
    masks = dataset.masks(0)
    assert sorted(masks) == [3, 300, 700]
    expected_300 = np.zeros((4, 4), bool)
    expected_300[:, :2] = True
    expected_300[3, 3] = True
    np.testing.assert_array_equal(masks[300], expected_300)
    np.testing.assert_array_equal(masks[700], np.pad(np.ones((2, 2), bool), 1))
    assert masks[300][1, 1] and masks[700][1, 1]  # one pixel, two labels
    assert dataset.image_labels(0) == [5, 6, 7] and dataset.image_labels(1) == [6]
    assert dataset.masks(1) == {}
    assert (
        dataset.labels[300].categories == ("object", "part")
        and dataset.labels[300].category == "object"
    )
    assert dataset.image_path(0) == tiny / "images" / "sub" / "a.jpg"


def test_parse_categories():
    assert parse_categories("object(4743)") == ("object",)
    assert parse_categories("object(12);part(30)") == ("object", "part")


def test_shuffled_column_order_reads_the_same(tmp_path):
    root = generate_synthetic(tmp_path / "s", images=12, size=32, seed=5, progress=False)
    before = BrodenDataset(root)
    reference = [
        (before.split(i), before.image_labels(i), before.masks(i)) for i in range(len(before))
    ]
    with open(root / "index.csv") as handle:
        rows = list(csv.DictReader(handle))
    order = list(np.random.default_rng(0).permutation(HEADER))
    assert order != HEADER
    write_csv(root / "index.csv", order, [[row[c] for c in order] for row in rows])
    after = BrodenDataset(root)
    for i, (split, labels, masks) in enumerate(reference):
        assert after.split(i) == split and after.image_labels(i) == labels
        assert sorted(after.masks(i)) == sorted(masks)
        for number in masks:
            np.testing.assert_array_equal(after.masks(i)[number], masks[number])


def edit_index(root: Path, row: int, **cells) -> None:
    with open(root / "index.csv") as handle:
        rows = list(csv.DictReader(handle))
    rows[row].update(cells)
    write_csv(root / "index.csv", HEADER, [[r[c] for c in HEADER] for r in rows])


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("no_index", "index.csv: file not found"),
        ("no_column", "missing column 'sh'"),
        ("no_image", "row 3: cannot read image"),
        ("bad_image", "row 3: cannot read image"),
        ("no_mask", "row 2: cannot read part mask"),
        ("mask_size", "row 2: color mask"),
        ("unknown_label", "row 2: part mask"),
        ("unknown_scene", "row 2: scene/texture cell holds label 9"),
    ],
)
def test_bad_input_one_line_error(tiny, breakage, message):
    if breakage == "no_index":
        (tiny / "index.csv").unlink()
    elif breakage == "no_column":
        with open(tiny / "index.csv") as handle:
            rows = list(csv.DictReader(handle))
        header = [c for c in HEADER if c != "sh"]
        write_csv(tiny / "index.csv", header, [[r[c] for c in header] for r in rows])
    elif breakage == "no_image":
        (tiny / "images" / "sub" / "b.jpg").unlink()
    elif breakage == "bad_image":
        (tiny / "images" / "sub" / "b.jpg").write_bytes(b"not a jpeg")
    elif breakage == "no_mask":
        (tiny / "images" / "sub" / "a_part2.png").unlink()
    elif breakage == "mask_size":
        save_mask(tiny / "images" / "sub" / "a_color.png", np.full((5, 4), 3))
    elif breakage == "unknown_label":
        save_mask(tiny / "images" / "sub" / "a_part2.png", np.full((4, 4), 701))
    elif breakage == "unknown_scene":
        edit_index(tiny, 0, scene="9")
    with pytest.raises(DatasetError) as error:
        dataset = BrodenDataset(tiny)
        for i in range(len(dataset)):
            dataset.masks(i), dataset.image_labels(i), dataset.check_image(i)
    text = str(error.value)
    assert message in text and "\n" not in text
    assert isinstance(error.value, ValueError)
    if breakage in ("mask_size", "unknown_label"):
        assert (
            ("5x4" in text and "4x4" in text)
            if breakage == "mask_size"
            else ("701" in text and "label.csv" in text)
        )
