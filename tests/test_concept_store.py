"""Concept store against a brute-force recount straight from index.csv, label.csv and the PNGs."""

import csv
import shutil
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

import net2vec.data.concept_store.build as concept_store
from net2vec.data.broden import DatasetError
from net2vec.data.concept_store import ConceptStore, prepare_concept_store
from net2vec.data.synthetic import generate_synthetic


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return generate_synthetic(
        tmp_path_factory.mktemp("data") / "synth", images=40, size=64, seed=11, progress=False
    )


@pytest.fixture
def dataset(source, tmp_path) -> Path:
    """A private copy that a test may edit."""
    return Path(shutil.copytree(source, tmp_path / "synth"))


def read_rows(path: Path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def write_rows(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def brute_force(root: Path) -> dict:
    """Per image: {label: mask} from the PNGs (R + 256 G, union over planes) and image-level labels."""
    rows = read_rows(root / "index.csv")
    images = []
    for row in rows:
        masks = {}
        for column in ("color", "object", "part", "material"):
            for name in filter(None, row[column].split(";")):
                rgb = np.asarray(Image.open(root / "images" / name)).astype(np.int64)
                plane = rgb[..., 0] + 256 * rgb[..., 1]
                for number in np.unique(plane):
                    if number:
                        masks[int(number)] = masks.get(int(number), False) | (plane == number)
        level = {
            int(n) for column in ("scene", "texture") for n in filter(None, row[column].split(";"))
        }
        images.append((row["split"], masks, level))
    labels = {int(r["number"]): r for r in read_rows(root / "label.csv")}
    return {"images": images, "labels": labels}


def test_store_equals_brute_force_recount(dataset, tmp_path):
    store = prepare_concept_store(dataset, tmp_path / "cache", progress=False)
    truth = brute_force(dataset)
    images, labels = truth["images"], truth["labels"]
    split = np.array([s == "val" for s, _, _ in images], np.uint8)
    present = {n: np.array([n in m or n in lv for _, m, lv in images]) for n in labels}
    kept = sorted(n for n, p in present.items() if p[split == 0].any() and p[split == 1].any())
    assert list(store.label_numbers) == kept
    assert store.attrs["n_excluded"] == len(labels) - len(kept) > 0
    assert list(store.names) == [labels[n]["name"] for n in kept]
    assert list(store.categories) == [labels[n]["category"].split("(")[0] for n in kept]
    np.testing.assert_array_equal(store.split, split)
    presence = np.stack([present[n] for n in kept], 1)
    np.testing.assert_array_equal(store.presence, presence)
    np.testing.assert_array_equal(store.n_train, presence[split == 0].sum(0))
    np.testing.assert_array_equal(store.n_val, presence[split == 1].sum(0))
    assert (
        store.mask_size == (32, 32) and store.num_images == 40 and store.num_concepts == len(kept)
    )
    pairs = [
        (i, c, m)
        for i, (_, masks, _) in enumerate(images)
        for c, n in enumerate(kept)
        if n in masks
        for m in [masks[n]]
    ]
    assert [(i, c) for i, c, _ in pairs] == list(zip(store.pair_image, store.pair_concept))
    np.testing.assert_array_equal(store.pair_area, [m.sum() for _, _, m in pairs])
    np.testing.assert_array_equal(
        store.masks(np.arange(len(pairs))), np.stack([m for _, _, m in pairs])
    )
    for i in range(40):
        lo, hi = store.pair_offsets[i], store.pair_offsets[i + 1]
        assert set(store.pair_image[lo:hi]) <= {i} and hi - lo == sum(p[0] == i for p in pairs)
    pixel = {c for _, c, _ in pairs}
    assert list(store.pixel_level) == [c in pixel for c in range(len(kept))]
    alpha = []
    for c in range(len(kept)):
        fractions = [m.mean() for i, cc, m in pairs if cc == c and split[i] == 0]
        alpha.append(1 - np.mean(fractions) if fractions else np.nan)
    np.testing.assert_allclose(store.alpha(), alpha, rtol=1e-12)
    assert store.pixel_level.any() and (~store.pixel_level).any()
    assert store.label_numbers.max() > 255


def test_masks_any_order_and_worker_pool(dataset, tmp_path):
    store = prepare_concept_store(dataset, tmp_path / "cache", progress=False)
    every = store.masks(np.arange(len(store.pair_image)))
    pick = np.random.default_rng(0).integers(0, len(every), 50)
    np.testing.assert_array_equal(store.masks(pick), every[pick])
    assert store.masks(np.array([], int)).shape == (0, 32, 32)
    other = concept_store.build_concept_store(
        dataset, tmp_path / "pool.h5", workers=2, progress=False
    )
    pooled = ConceptStore(other)
    np.testing.assert_array_equal(pooled.presence, store.presence)
    np.testing.assert_array_equal(pooled.masks(np.arange(len(every))), every)


def test_reused_then_rebuilt_when_index_changes(dataset, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = prepare_concept_store(dataset, cache, progress=False)
    with h5py.File(first.path, "r") as handle:
        assert handle.attrs["net2vec_complete"] and handle.attrs["dataset_root"] == str(
            dataset.resolve()
        )
    calls = []
    real_build = concept_store.build_concept_store
    monkeypatch.setattr(
        concept_store, "build_concept_store", lambda *a, **k: calls.append(a) or real_build(*a, **k)
    )
    again = prepare_concept_store(dataset, cache, progress=False)
    assert again.path == first.path and calls == []
    rows = read_rows(dataset / "index.csv")
    rows[0]["split"] = "val" if rows[0]["split"] == "train" else "train"
    write_rows(dataset / "index.csv", rows)
    edited = prepare_concept_store(dataset, cache, progress=False)
    assert len(calls) == 1 and edited.path != first.path
    assert edited.split[0] != first.split[0]
    assert edited.attrs["key"] in edited.path.name


def test_built_once_under_concurrent_calls(dataset, tmp_path, monkeypatch):
    calls = []
    real_build = concept_store.build_concept_store
    monkeypatch.setattr(
        concept_store, "build_concept_store", lambda *a, **k: calls.append(a) or real_build(*a, **k)
    )
    results = []
    threads = [
        threading.Thread(
            target=lambda: results.append(
                prepare_concept_store(dataset, tmp_path / "c", progress=False)
            )
        )
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len({r.path for r in results}) == 1 and len(results) == 3


def test_other_mask_size_is_resized_nearest(dataset, tmp_path, caplog):
    rows = read_rows(dataset / "index.csv")
    row = rows[4]
    reference = brute_force(dataset)["images"][4][1]
    for column in ("color", "object", "part", "material"):
        for name in filter(None, row[column].split(";")):
            path = dataset / "images" / name
            big = (
                np.asarray(Image.open(path)).repeat(2, 0).repeat(2, 1)
            )  # 64 x 64: nearest back to 32 x 32
            Image.fromarray(big).save(path)
    row["sh"] = row["sw"] = "64"
    write_rows(dataset / "index.csv", rows)
    with caplog.at_level("INFO"):
        store = prepare_concept_store(dataset, tmp_path / "cache", progress=False)
    assert store.attrs["n_resized"] == 1 and "resized nearest-neighbour" in caplog.text
    lo, hi = store.pair_offsets[4], store.pair_offsets[5]
    numbers = store.label_numbers[store.pair_concept[lo:hi]]
    for number, mask in zip(numbers, store.masks(np.arange(lo, hi))):
        np.testing.assert_array_equal(mask, reference[int(number)])


def break_dataset(root: Path, breakage: str) -> None:
    rows = read_rows(root / "index.csv")
    if breakage == "no_index":
        (root / "index.csv").unlink()
    elif breakage == "no_column":
        for row in rows:
            del row["object"]
        write_rows(root / "index.csv", rows)
    elif breakage == "no_image":
        (root / "images" / rows[7]["image"]).unlink()
    elif breakage == "bad_image":
        (root / "images" / rows[7]["image"]).write_bytes(b"\x89PNG garbage")
    elif breakage == "no_mask":
        (root / "images" / rows[7]["color"]).unlink()
    elif breakage == "mask_size":
        Image.fromarray(np.zeros((31, 32, 3), np.uint8)).save(root / "images" / rows[7]["color"])
    elif breakage == "binary_index":
        (root / "index.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe binary")
    elif breakage == "dup_header":
        lines = (root / "index.csv").read_text().splitlines(keepends=True)
        (root / "index.csv").write_text("".join(lines[:5] + lines[:1] + lines[5:]))
    elif breakage == "no_val":
        write_rows(root / "index.csv", [{**row, "split": "train"} for row in rows])
    elif breakage == "category_missing":
        text = (root / "label.csv").read_text()
        (root / "label.csv").write_text(text.replace("object(", "objekt(", 1))
    elif breakage == "unknown_label":
        labels = read_rows(root / "label.csv")
        write_rows(
            root / "label.csv", [r for r in labels if r["name"] != "wood" and r["name"] != "blue"]
        )


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("no_index", "index.csv: file not found"),
        ("no_column", "missing column 'object'"),
        ("no_image", "row 9: cannot read image"),
        ("bad_image", "row 9: cannot read image"),
        ("no_mask", "row 9: cannot read color mask"),
        ("mask_size", "row 9: color mask"),
        ("unknown_label", "absent from"),
        ("binary_index", "index.csv: not UTF-8 text"),
        ("dup_header", "index.csv line 6: repeats the header line"),
        ("no_val", "no row has split=val"),
        ("category_missing", "label.csv line \\d+: category 'objekt' is not in"),
    ],
)
def test_bad_input_leaves_no_store(dataset, tmp_path, breakage, message):
    break_dataset(dataset, breakage)
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError, match=message) as error:
        prepare_concept_store(dataset, cache, progress=False)
    assert "\n" not in str(error.value)
    leftovers = [p.name for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    assert leftovers == []


def test_a_bom_and_crlf_line_ends_are_accepted(dataset, tmp_path):
    plain = prepare_concept_store(dataset, tmp_path / "a", progress=False)
    for name in ("index.csv", "label.csv", "category.csv"):
        path = dataset / name
        text = path.read_text().replace("\r\n", "\n").replace("\n", "\r\n")
        path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    edited = prepare_concept_store(dataset, tmp_path / "b", progress=False)
    assert list(edited.names) == list(plain.names) and list(edited.images) == list(plain.images)
    np.testing.assert_array_equal(edited.presence, plain.presence)
