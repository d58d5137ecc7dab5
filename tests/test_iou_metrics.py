"""SetIoU / PerImageIoU / set_iou against brute-force NumPy counts and torchmetrics."""

import numpy as np
import pytest
import torch
from torchmetrics.classification import MultilabelJaccardIndex

from net2vec.statistics import PerImageIoU, SetIoU, per_image_iou, set_iou


def random_pairs(seed=0, pairs=57, concepts=6, size=(9, 11)):
    rng = np.random.default_rng(seed)
    pred = rng.random((pairs, *size)) < rng.random((pairs, 1, 1))
    target = rng.random((pairs, *size)) < rng.random((pairs, 1, 1)) * 0.5
    concept = rng.integers(0, concepts - 1, pairs)  # the last concept never occurs
    image = rng.integers(0, 20, pairs)
    return pred, target, concept, image


def brute_set_iou(pred, target, concept, num_concepts):
    out = np.zeros(num_concepts)
    for c in range(num_concepts):
        sel = concept == c
        inter = np.logical_and(pred[sel], target[sel]).sum()
        union = np.logical_or(pred[sel], target[sel]).sum()
        out[c] = inter / union if union else 0.0
    return out


def test_set_iou_batchwise_equals_brute_force():
    pred, target, concept, _ = random_pairs()
    metric = SetIoU(6)
    for start in range(0, len(pred), 10):
        sl = slice(start, start + 10)
        metric.update(
            torch.from_numpy(pred[sl]), torch.from_numpy(target[sl]), torch.from_numpy(concept[sl])
        )
    expected = brute_set_iou(pred, target, concept, 6)
    np.testing.assert_allclose(metric.compute().numpy(), expected, rtol=1e-12)
    assert expected[-1] == 0 and int(metric.union[-1]) == 0  # unseen concept: 0 by convention
    functional = set_iou(
        torch.from_numpy(pred), torch.from_numpy(target), torch.from_numpy(concept), 6
    )
    np.testing.assert_allclose(functional.numpy(), expected, rtol=1e-12)


def test_set_iou_matches_torchmetrics_multilabel_jaccard():
    pred, target, concept, _ = random_pairs(seed=1, concepts=5)
    # one "sample" per pair, a label plane per concept, zeros for concepts the pair is not
    full_pred = np.zeros((len(pred), 5, *pred.shape[1:]), dtype=np.int64)
    full_target = np.zeros_like(full_pred)
    full_pred[np.arange(len(pred)), concept] = pred
    full_target[np.arange(len(pred)), concept] = target
    jaccard = MultilabelJaccardIndex(num_labels=5, average="none", zero_division=0)
    expected = jaccard(torch.from_numpy(full_pred), torch.from_numpy(full_target)).double()
    got = set_iou(torch.from_numpy(pred), torch.from_numpy(target), torch.from_numpy(concept), 5)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-6)


def test_per_image_iou_collects_pairs():
    pred, target, concept, image = random_pairs(seed=2)
    metric = PerImageIoU()
    for start in range(0, len(pred), 16):
        sl = slice(start, start + 16)
        metric.update(
            torch.from_numpy(pred[sl]),
            torch.from_numpy(target[sl]),
            torch.from_numpy(concept[sl]),
            torch.from_numpy(image[sl]),
        )
    out = metric.compute()
    inter = np.logical_and(pred, target).sum((1, 2))
    union = np.logical_or(pred, target).sum((1, 2))
    np.testing.assert_allclose(out["iou"].numpy(), inter / union, rtol=1e-12)
    np.testing.assert_array_equal(out["image"].numpy(), image)
    np.testing.assert_array_equal(out["concept"].numpy(), concept)
    empty = per_image_iou(
        torch.zeros(1, 3, 3, dtype=torch.bool), torch.zeros(1, 3, 3, dtype=torch.bool)
    )
    assert float(empty[0]) == 0.0


def test_set_iou_rejects_bad_concept_index():
    metric = SetIoU(3)
    with pytest.raises(ValueError, match="out of range"):
        metric.update(
            torch.ones(1, 2, 2, dtype=torch.bool),
            torch.ones(1, 2, 2, dtype=torch.bool),
            torch.tensor([3]),
        )
