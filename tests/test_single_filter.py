"""Bilinear matrices, the single-filter probe and NetDissect against brute-force loops."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from reference import PairData, blob_masks

from net2vec.probes.netdissect import DissectionLabels, netdissect
from net2vec.probes.single_filter import single_filter_seg
from net2vec.probes.upsample import bilinear_matrix, upsample


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize(
    "in_hw,out_hw", [((5, 7), (13, 17)), ((1, 3), (4, 9)), ((6, 6), (6, 6)), ((7, 4), (113, 113))]
)
def test_bilinear_matrix_equals_interpolate(align_corners, in_hw, out_hw):
    z = torch.randn(3, *in_hw, dtype=torch.float64)
    u_h = bilinear_matrix(out_hw[0], in_hw[0], align_corners, dtype=torch.float64)
    u_w = bilinear_matrix(out_hw[1], in_hw[1], align_corners, dtype=torch.float64)
    expected = F.interpolate(z[:, None], size=out_hw, mode="bilinear", align_corners=align_corners)[
        :, 0
    ]
    torch.testing.assert_close(u_h @ z @ u_w.T, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(upsample(z, out_hw, align_corners), expected, rtol=1e-12, atol=1e-12)


def random_pair_data(
    seed=0, num_images=14, num_concepts=4, num_filters=5, map_size=(5, 6), mask_size=(13, 17)
):
    rng = np.random.default_rng(seed)
    present = rng.random((num_images, num_concepts)) < 0.5
    present[:, 0] |= ~present.any(1)
    pair_image, pair_concept = np.nonzero(present)
    masks = torch.from_numpy(blob_masks(rng, len(pair_image), mask_size)).float()
    maps = torch.from_numpy(rng.random((num_images, num_filters, *map_size)) < 0.3).float()
    split = np.array([0, 1] * (num_images // 2), dtype=np.uint8)
    return PairData(maps, split, pair_image, pair_concept, masks, num_concepts)


def exact_binary(binary_map, size, align_corners):
    """M_k in float64 with values that are 0.5 up to rounding counted as ties (off)."""
    up = F.interpolate(
        binary_map.double()[None, None], size=size, mode="bilinear", align_corners=align_corners
    )
    return up[0, 0].numpy() > 0.5 + 1e-9


def brute_single_filter(data: PairData, align_corners: bool):
    num_filters = data.maps.shape[1]
    inter = np.zeros((2, data.num_concepts, num_filters))
    union = np.zeros_like(inter)
    for p, (i, c) in enumerate(zip(data.pair_image, data.pair_concept)):
        target = data.masks[p].numpy() > 0.5
        for k in range(num_filters):
            up = exact_binary(data.maps[i, k], data.mask_size, align_corners)
            inter[data.split[i], c, k] += np.logical_and(up, target).sum()
            union[data.split[i], c, k] += np.logical_or(up, target).sum()
    return inter, union


@pytest.mark.parametrize("align_corners", [True, False])
def test_single_filter_equals_brute_force(align_corners):
    data = random_pair_data()
    rows = np.arange(len(data.split))
    batches = data.batches(rows, batch_size=4)
    result = single_filter_seg(
        batches,
        data.num_concepts,
        data.maps.shape[1],
        data.mask_size,
        data.split,
        align_corners=align_corners,
        chunk_bytes=2 * 5 * 13 * 17 * 4,
    )
    inter, union = brute_single_filter(data, align_corners)
    np.testing.assert_array_equal(result.intersection, inter)
    np.testing.assert_array_equal(result.union, union)
    iou_train = np.where(union[0] > 0, inter[0] / np.maximum(union[0], 1), 0)
    np.testing.assert_allclose(result.iou_train, iou_train)
    np.testing.assert_array_equal(result.best, iou_train.argmax(1))
    np.testing.assert_allclose(result.best_iou_val, result.iou_val[np.arange(4), result.best])
    # per-image IoU of k* on every validation pair
    val_pairs = np.flatnonzero(data.split[data.pair_image] == 1)
    np.testing.assert_array_equal(result.per_image["image"], data.pair_image[val_pairs])
    for q, p in enumerate(val_pairs):
        i, c = data.pair_image[p], data.pair_concept[p]
        up = exact_binary(data.maps[i, result.best[c]], data.mask_size, align_corners)
        target = data.masks[p].numpy() > 0.5
        expected = np.logical_and(up, target).sum() / np.logical_or(up, target).sum()
        assert result.per_image["iou"][q] == pytest.approx(expected)


def test_single_filter_rejects_one_shot_iterator():
    data = random_pair_data()
    with pytest.raises(ValueError, match="re-iterable"):
        single_filter_seg(iter(data.batches(np.arange(14), 4)), 4, 5, data.mask_size, data.split)


def brute_netdissect(data: PairData, acts, thresholds, category):
    num_filters, num_concepts = acts.shape[1], data.num_concepts
    inter = np.zeros((num_filters, num_concepts))
    units_cat = np.zeros((num_filters, category.max() + 1))
    label = np.zeros(num_concepts)
    for i in range(acts.shape[0]):
        up = F.interpolate(
            acts[i][None], size=data.mask_size, mode="bilinear", align_corners=False
        )[0].numpy()
        active = up > thresholds[:, None, None]
        pairs = np.flatnonzero(data.pair_image == i)
        for g in set(category[data.pair_concept[pairs]]):
            units_cat[:, g] += active.sum((1, 2))
        for p in pairs:
            c = data.pair_concept[p]
            target = data.masks[p].numpy() > 0.5
            label[c] += target.sum()
            inter[:, c] += np.logical_and(active, target).sum((1, 2))
    union = units_cat[:, category] + label[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0)


def test_netdissect_equals_brute_force():
    data = random_pair_data(seed=3, num_concepts=5)
    rng = np.random.default_rng(4)
    acts = torch.relu(torch.from_numpy(rng.normal(size=data.maps.shape)).float())
    thresholds = np.quantile(
        acts.numpy().transpose(1, 0, 2, 3).reshape(acts.shape[1], -1), 0.8, axis=1
    )
    category = np.array([0, 0, 1, 2, 1])
    data.maps = acts
    labels = DissectionLabels(
        category, ["a", "b", "c"], np.zeros(15, np.int64), np.zeros(0, np.int64)
    )
    result = netdissect(
        data.batches(np.arange(14), 5, key="activations"),
        thresholds,
        labels,
        data.mask_size,
        union="any_label",
        chunk_bytes=3 * 5 * 13 * 17 * 4,
    )
    expected = brute_netdissect(data, acts, thresholds.astype(np.float32), category)
    np.testing.assert_allclose(result.iou, expected, rtol=1e-10)
    np.testing.assert_array_equal(result.top_concept, expected.argmax(1))
    np.testing.assert_array_equal(result.detector, expected.max(1) > 0.04)
    assert sum(result.unique_detectors(category).values()) == len(
        np.unique(result.top_concept[result.detector])
    )
