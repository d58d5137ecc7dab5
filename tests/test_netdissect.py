"""NetDissect's tally against a brute-force NumPy recount written from the rule (docs/method.md §7).

The brute force loops over images and units: upsample (bilinear, half-pixel centres, edges
clamped), threshold, and for every label of the image (a pixel-level mask, or the whole image for
a scene/texture label) add the intersection and the label's area; the unit's active pixels enter
category g's union when one of them lies on a label of g (or the image has an image-level label of
g) for ``category_hit``, or when the image carries any label of g for ``any_label``.
"""

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import compose_config
from PIL import Image

from net2vec.data.concept_store import prepare_concept_store
from net2vec.data.datamodules import SegmentationDataModule
from net2vec.data.synthetic import generate_synthetic
from net2vec.probes.netdissect import (
    DissectionLabels,
    dissect_layer,
    dissection_labels,
    image_chunks,
    labelled_rows,
    netdissect,
)
from net2vec.probes.single_filter import CHUNK_BYTES
from net2vec.probes.unit_null import top_labels_from_chunks, unit_null
from net2vec.run.pipeline import train
from net2vec.statistics import bootstrap as bs
from net2vec.statistics import significance


def bilinear_numpy(z: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(K, h, w) -> (K, sh, sw): half-pixel centres, source coordinates clamped to the edges."""

    def axis(n_out, n_in):
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        low = np.floor(src).astype(int)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, src - low

    r0, r1, wr = axis(size[0], z.shape[1])
    c0, c1, wc = axis(size[1], z.shape[2])
    rows = z[:, r0] * (1 - wr)[None, :, None] + z[:, r1] * wr[None, :, None]
    return rows[:, :, c0] * (1 - wc)[None, None, :] + rows[:, :, c1] * wc[None, None, :]


def brute_tally(images, acts, thresholds, category, num_concepts, size, union):
    """images: per image (dict concept -> bool mask, set of image-level concepts)."""
    num_filters, num_categories = acts.shape[1], max(category) + 1
    inter = np.zeros((num_filters, num_concepts))
    area = np.zeros(num_concepts)
    units = np.zeros((num_filters, num_categories))
    for i, (masks, whole) in enumerate(images):
        active = bilinear_numpy(acts[i].astype(np.float64), size) > thresholds[:, None, None]
        regions = dict(masks) | {c: np.ones(size, bool) for c in whole}
        for c, region in regions.items():
            area[c] += region.sum()
            for k in range(num_filters):
                inter[k, c] += (active[k] & region).sum()
        for k in range(num_filters):
            for g in range(num_categories):
                carried = [c for c in regions if category[c] == g]
                if union == "any_label":
                    counts = bool(carried)
                else:
                    counts = any(c in whole or (active[k] & masks[c]).any() for c in carried)
                units[k, g] += active[k].sum() * counts
    denominator = units[:, category] + area[None] - inter
    return np.where(denominator > 0, inter / np.maximum(denominator, 1e-12), 0.0)


def random_images(rng, num_images, num_concepts, size, whole_concepts):
    images = []
    for _ in range(num_images):
        masks = {}
        for c in range(num_concepts):
            if c not in whole_concepts and rng.random() < 0.45:
                masks[c] = rng.random(size) < rng.uniform(0.05, 0.6)
        whole = {c for c in whole_concepts if rng.random() < 0.4}
        images.append((masks, whole))
    return images


def batches_of(images, acts, batch_size):
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        pairs = [(i, c, m) for i, (masks, _) in enumerate(chunk) for c, m in sorted(masks.items())]
        yield {
            "activations": torch.from_numpy(acts[start : start + batch_size]).float(),
            "pair_image": torch.tensor([p[0] for p in pairs], dtype=torch.long),
            "pair_concept": torch.tensor([p[1] for p in pairs], dtype=torch.long),
            "masks": torch.from_numpy(np.stack([p[2] for p in pairs])).float(),
            "image_index": torch.arange(start, start + len(chunk)),
        }


@pytest.mark.parametrize("union", ["category_hit", "any_label"])
def test_tally_equals_brute_force_with_image_level_labels(union):
    rng = np.random.default_rng(7)
    size, num_concepts, num_images = (11, 13), 7, 17
    # concepts 5 and 6 are image-level (a scene and a texture); 0 and 1 share a category
    category = np.array([0, 0, 1, 2, 1, 3, 4])
    images = random_images(rng, num_images, num_concepts, size, whole_concepts={5, 6})
    acts = np.maximum(rng.normal(size=(num_images, 6, 4, 5)), 0).astype(np.float32)
    thresholds = np.quantile(acts.transpose(1, 0, 2, 3).reshape(6, -1), 0.85, axis=1)
    wholes = [sorted(w) for _, w in images]
    labels = DissectionLabels(
        category,
        ["a", "b", "c", "scene", "texture"],
        np.concatenate([[0], np.cumsum([len(w) for w in wholes])]),
        np.array([c for w in wholes for c in w], dtype=np.int64),
    )
    result = netdissect(
        batches_of(images, acts, 5),
        thresholds,
        labels,
        size,
        union=union,
        chunk_bytes=2 * 6 * 11 * 13 * 4,  # two images per chunk
    )
    expected = brute_tally(
        images, acts, thresholds.astype(np.float32), category, num_concepts, size, union
    )
    np.testing.assert_allclose(result.iou, expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(result.top_concept, expected.argmax(1))
    np.testing.assert_array_equal(result.detector, expected.max(1) > 0.04)
    assert expected[:, 5:].max() > 0  # the image-level labels take part


def test_union_rules_differ_and_category_hit_is_never_larger():
    rng = np.random.default_rng(3)
    size = (9, 9)
    category = np.array([0, 0, 1, 2])
    images = random_images(rng, 12, 4, size, whole_concepts={3})
    acts = np.maximum(rng.normal(size=(12, 5, 3, 3)), 0).astype(np.float32)
    thresholds = np.quantile(acts.transpose(1, 0, 2, 3).reshape(5, -1), 0.9, axis=1)
    wholes = [sorted(w) for _, w in images]
    labels = DissectionLabels(
        category,
        ["a", "b", "scene"],
        np.concatenate([[0], np.cumsum([len(w) for w in wholes])]),
        np.array([c for w in wholes for c in w], dtype=np.int64),
    )
    hit = netdissect(batches_of(images, acts, 4), thresholds, labels, size).iou
    any_label = netdissect(batches_of(images, acts, 4), thresholds, labels, size, "any_label").iou
    assert (hit >= any_label - 1e-12).all() and (hit > any_label + 1e-6).any()
    with pytest.raises(ValueError, match="union='nope'"):
        netdissect(batches_of(images, acts, 4), thresholds, labels, size, "nope")


# ---------------------------------------------------------------- end to end on a BRODEN-format set


class RandomActivations:
    """An activation source of random non-negative maps (what the tally reads of a store)."""

    def __init__(self, num_images, num_filters=6, map_size=(4, 4), seed=0):
        rng = np.random.default_rng(seed)
        self.maps = np.maximum(rng.normal(size=(num_images, num_filters, *map_size)), 0)
        self.maps = self.maps.astype(np.float32)
        self.num_images, self.num_filters, self.map_size = num_images, num_filters, map_size
        flat = self.maps.transpose(1, 0, 2, 3).reshape(num_filters, -1)
        self.thresholds = np.quantile(flat, 0.9, axis=1).astype(np.float32)

    def activations(self, idx):
        return self.maps[np.asarray(idx)]

    def thresholded(self, idx):
        return self.activations(idx) > self.thresholds[None, :, None, None]


def read_csv(path: Path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


COLUMNS = ("color", "object", "part", "material", "scene", "texture")


def dataset_from_files(root: Path):
    """Per image ({label number: mask}, {image-level label numbers}) straight from the PNGs, and
    each label's primary category: the column where it covers the most pixels over the dataset
    (an image-level label covers sh x sw; ties: the later column)."""
    images, coverage = [], {}
    for row in read_csv(root / "index.csv"):
        masks = {}
        for column in COLUMNS[:4]:
            in_column = {}
            for name in filter(None, row[column].split(";")):
                rgb = np.asarray(Image.open(root / "images" / name)).astype(np.int64)
                plane = rgb[..., 0] + 256 * rgb[..., 1]
                for number in map(int, np.unique(plane)):
                    if number:
                        in_column[number] = in_column.get(number, False) | (plane == number)
            for number, mask in in_column.items():
                masks[number] = masks.get(number, False) | mask
                by = coverage.setdefault(number, dict.fromkeys(COLUMNS, 0))
                by[column] += int(mask.sum())
        whole = set()
        for column in COLUMNS[4:]:
            for number in map(int, filter(None, row[column].split(";"))):
                whole.add(number)
                by = coverage.setdefault(number, dict.fromkeys(COLUMNS, 0))
                by[column] += int(row["sh"]) * int(row["sw"])
        images.append((masks, whole))
    primary = {n: max(reversed(COLUMNS), key=by.get) for n, by in coverage.items()}
    return images, primary


@pytest.fixture(scope="module")
def broden_set(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nd") / "synth"
    return generate_synthetic(root, images=40, size=64, seed=5, progress=False)


def test_store_labels_and_tally_equal_the_files(broden_set, tmp_path):
    store = prepare_concept_store(broden_set, tmp_path / "cache", progress=False)
    every = store.with_every_label()
    images, primary = dataset_from_files(broden_set)
    assert all(int(r["sh"]) == every.mask_size[0] for r in read_csv(broden_set / "index.csv"))
    # both splits: the every-label view holds labels the probes' view drops
    assert set(store.label_numbers) < set(every.label_numbers)
    # primary category by coverage, and at least one label listed in two categories
    numbers = [int(n) for n in every.label_numbers]
    assert list(every.coverage_categories) == [primary[n] for n in numbers]
    two = [i for i, cats in enumerate(every.all_categories) if ";" in cats]
    assert two and any(every.coverage_categories[i] != every.categories[i] for i in two)
    # the tally through the store, the DataModule and dissect_layer
    source = RandomActivations(every.num_images)
    labels = dissection_labels(every)
    datamodule = SegmentationDataModule(every, source, batch_size=7, in_memory=False)
    result = dissect_layer(datamodule, labels, source.thresholds)
    position = {n: c for c, n in enumerate(numbers)}
    recoded = [
        ({position[n]: m for n, m in masks.items()}, {position[n] for n in whole})
        for masks, whole in images
    ]
    category = np.array([labels.category_names.index(primary[n]) for n in numbers])
    expected = brute_tally(
        recoded, source.maps, source.thresholds, category, len(numbers), every.mask_size,
        "category_hit",
    )  # fmt: skip
    np.testing.assert_allclose(result.iou, expected, rtol=1e-9, atol=1e-12)
    scene_like = np.isin(every.coverage_categories, ["scene", "texture"])
    assert scene_like.any() and expected[:, scene_like].max() > 0
    assert len(labelled_rows(every)) == sum(bool(m) or bool(w) for m, w in images)


# ---------------------------------------------------------------- task=netdissect through train(cfg)


@pytest.mark.parametrize("require", [False, True])
def test_netdissect_task_writes_units_and_counts(tmp_path, shared_cache, require):
    cfg = compose_config(
        tmp_path,
        "network=planted",
        "task=netdissect",
        f"task.require_significant={require}",
        "stats.null_draws=19",
        "task.fdr=0.2",
        f"paths.data_dir={shared_cache}/data",
        cache=shared_cache / "cache",
    )
    summary = train(cfg)
    run = tmp_path / "run"
    rows = read_csv(run / "units.csv")
    with h5py.File(run / "dissection.h5") as h5:
        iou, names = h5["iou"][()], h5["concepts"].asstr()[()]
        categories = h5["categories"].asstr()[()]
        top_images = h5["top_images"][()]
    assert len(rows) == iou.shape[0] == 64 and top_images.shape == (64, 16)
    for unit, row in enumerate(rows):
        order = np.argsort(-iou[unit], kind="stable")
        assert row["concept"] == names[order[0]] and row["category"] == categories[order[0]]
        assert float(row["iou"]) == pytest.approx(iou[unit, order[0]], rel=1e-5)
        assert row["concept_2"] == names[order[1]] and row["concept_3"] == names[order[2]]
        beats = float(row["q_null"]) <= 0.2  # BH across the units
        assert (row["significant"] == "True") == beats
        assert float(row["p_null"]) >= 1 / 20 - 1e-9
        assert (row["detector"] == "True") == (
            iou[unit, order[0]] > 0.04 and (beats or not require)
        )
    nd = json.loads((run / "summary.json").read_text())["netdissect"]
    assert nd == summary["netdissect"] and nd["union"] == "category_hit"
    detectors = [r for r in rows if r["detector"] == "True"]
    assert nd["detectors"] == len(detectors) > 0
    assert nd["unique_concepts"] == len({r["concept"] for r in detectors})
    for name, counts in nd["by_category"].items():
        chosen = [r for r in detectors if r["category"] == name]
        assert counts == {
            "detectors": len(chosen),
            "unique_concepts": len({r["concept"] for r in chosen}),
        }
    # both rules: detectors beating the null are a subset of the IoU detectors
    plain = [r for r in rows if float(r["iou"]) > 0.04]
    both = [r for r in plain if r["significant"] == "True"]
    assert nd["null"] == {
        "draws": 19,
        "seed": 0,
        "fdr": 0.2,
        "require_significant": require,
        "detectors_iou": len(plain),
        "detectors_beating_null": len(both),
        "unique_concepts_iou": len({r["concept"] for r in plain}),
        "unique_concepts_beating_null": len({r["concept"] for r in both}),
    }
    assert 0 < len(both) <= len(plain) and nd["detectors"] == len(both if require else plain)


# ---------------------------------------------------------------- the shuffled-mask null of each unit


def null_of(images, acts, thresholds, labels, size, union, draws=19, chunk_bytes=CHUNK_BYTES):
    result = netdissect(batches_of(images, acts, 5), thresholds, labels, size, union=union)

    def chunks():
        return image_chunks(batches_of(images, acts, 5), labels, acts.shape[1], chunk_bytes)

    evidence = top_labels_from_chunks(chunks(), result.top_concept, labels)
    null = unit_null(
        chunks(), result, evidence, thresholds, size, False, draws, 3, chunk_bytes=chunk_bytes
    )
    return result, null


def labels_of(images, category, names):
    wholes = [sorted(w) for _, w in images]
    return DissectionLabels(
        np.asarray(category),
        names,
        np.concatenate([[0], np.cumsum([len(w) for w in wholes])]),
        np.array([c for w in wholes for c in w], dtype=np.int64),
    )


@pytest.mark.parametrize("whole", [{2}, set()])  # the top labels: a scene / pixel-level masks
def test_units_independent_of_their_labels_do_not_beat_the_null(whole):
    rng = np.random.default_rng(11)
    size, num_images = (9, 9), 120
    images = random_images(rng, num_images, 3, size, whole_concepts=whole)
    labels = labels_of(images, [0, 1, 2], ["a", "b", "scene"])
    acts = rng.normal(size=(num_images, 24, 3, 3)).astype(np.float32)  # independent of the masks
    thresholds = np.quantile(acts.transpose(1, 0, 2, 3).reshape(24, -1), 0.7, axis=1)
    result, null = null_of(images, acts, thresholds, labels, size, "any_label")
    assert (result.top_concept == 2).all() == bool(whole)
    assert 0.3 < null.p_null.mean() < 0.75, null.p_null
    assert not null.significant.any()  # BH across the 24 units: no false discovery here
    np.testing.assert_array_equal(null.significant, null.q_null <= 0.05)
    assert (null.null_iou > 0).all() and np.abs(null.null_iou - result.top_iou).max() < 0.1


@pytest.mark.parametrize("union", ["category_hit", "any_label"])
def test_units_equal_to_their_labels_get_the_smallest_p_null(union):
    rng = np.random.default_rng(5)
    size, num_images = (8, 8), 40
    images = random_images(rng, num_images, 3, size, whole_concepts={2})
    labels = labels_of(images, [0, 1, 2], ["a", "b", "scene"])
    acts = np.zeros((num_images, 2, *size), np.float32)
    for i, (masks, whole) in enumerate(images):
        acts[i, 0] = masks.get(0, np.zeros(size, bool))  # unit 0 is concept 0's mask
        acts[i, 1] = 2 in whole  # unit 1 fires on the whole image where the scene is
    result, null = null_of(images, acts, np.full(2, 0.5), labels, size, union)
    np.testing.assert_array_equal(result.top_concept, [0, 2])
    np.testing.assert_allclose(result.top_iou, 1.0)
    np.testing.assert_allclose(null.p_null, 1 / 20)
    assert null.significant.all() and (null.null_iou < 0.7).all()


def brute_null(images, acts, thresholds, result, labels, size, draws, seed):
    """(D+1, K) Σ|A_k ∩ L'| of each unit's top label, image by image, unit by unit, with the
    permutations drawn as the module draws them (one per label and draw, then the carriers)."""
    top = result.top_concept
    pairs = [(i, c, m) for i, (masks, _) in enumerate(images) for c, m in sorted(masks.items())]
    pairs = [p for p in pairs if p[1] in top]
    label = np.array([p[1] for p in pairs], dtype=np.int64)
    whole = np.unique(top[np.isin(top, labels.whole_concept)])
    carries = np.array([[c in w for c in whole] for _, w in images], bool).reshape(-1, len(whole))
    rng = np.random.default_rng(seed)
    partners = [np.arange(len(pairs))]
    partners += [bs.within_concept_permutation(label, rng) for _ in range(draws)]
    carried = [carries] + [bs.permuted_labels(carries, rng) for _ in range(draws)]
    active = [bilinear_numpy(a.astype(np.float64), size) > thresholds[:, None, None] for a in acts]
    sums = np.zeros((draws + 1, len(top)))
    for d in range(draws + 1):
        for k, c in enumerate(top):
            for j, (i, cj, _) in enumerate(pairs):
                if cj == c:
                    sums[d, k] += (active[i][k] & pairs[partners[d][j]][2]).sum()
            if c in whole:
                column = list(whole).index(c)
                sums[d, k] += sum(
                    active[i][k].sum() * carried[d][i, column] for i in range(len(images))
                )
    return sums


@pytest.mark.parametrize("chunk_bytes", [CHUNK_BYTES, 3 * 24 * 81 * 4])  # one chunk / 3 images
def test_unit_null_equals_brute_force(chunk_bytes):
    rng = np.random.default_rng(2)
    size, num_images, draws = (9, 9), 30, 7
    images = random_images(rng, num_images, 4, size, whole_concepts={3})
    labels = labels_of(images, [0, 1, 2, 3], ["a", "b", "c", "scene"])
    acts = rng.normal(size=(num_images, 24, 3, 3)).astype(np.float32)
    for i, (masks, whole) in enumerate(images):  # some units follow a label, so tops differ
        acts[i, :6] += 2.0 * masks.get(0, np.zeros(size, bool))[::3, ::3]
        acts[i, 6:9] += 2.0 * (3 in whole)
    thresholds = np.quantile(acts.transpose(1, 0, 2, 3).reshape(24, -1), 0.7, axis=1)
    thresholds = thresholds.astype(np.float32)
    result, null = null_of(images, acts, thresholds, labels, size, "any_label", draws, chunk_bytes)
    assert {0, 3} <= set(result.top_concept.tolist())  # a pixel-level and an image-level top
    sums = brute_null(images, acts, thresholds, result, labels, size, draws, seed=3)
    np.testing.assert_allclose(sums[0], result.top_intersection)
    union = result.top_denominator[None] - sums
    iou = np.where(union > 0, sums / np.maximum(union, 1e-300), 0.0)
    np.testing.assert_allclose(iou[0], result.top_iou, rtol=1e-12)
    np.testing.assert_allclose(null.null_iou, iou[1:].mean(0), rtol=1e-12)
    p = (1 + (iou[1:] >= iou[0][None]).sum(0)) / (1 + draws)
    np.testing.assert_allclose(null.p_null, p)
    np.testing.assert_allclose(null.q_null, significance.benjamini_hochberg(p))
