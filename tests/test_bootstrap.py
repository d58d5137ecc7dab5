"""Bootstrap intervals, paired comparisons and shuffled-mask nulls against brute-force NumPy."""

import numpy as np
import pytest
import torch

from net2vec.statistics import bootstrap as bs
from net2vec.statistics import significance
from net2vec.statistics.accuracy import balanced_accuracy


def sparse_pairs(rng, num_images, num_concepts, density=0.3):
    """Random (image, concept) pairs with per-pair intersection <= union."""
    present = rng.random((num_images, num_concepts)) < density
    image, concept = np.nonzero(present)
    union = rng.integers(1, 60, len(image))
    inter = rng.binomial(union, 0.3)
    return image, concept, inter, union


def test_resample_weights_are_multinomial_counts_and_seeded():
    chunks = list(bs.resample_weights(50, 7, seed=3, chunk=3))
    weights = np.concatenate(chunks)
    assert weights.shape == (7, 50) and [len(c) for c in chunks] == [3, 3, 1]
    assert np.all(weights.sum(1) == 50) and weights.min() >= 0
    again = np.concatenate(list(bs.resample_weights(50, 7, seed=3, chunk=7)))
    assert np.array_equal(weights, again)  # chunking does not change the resamples
    other = np.concatenate(list(bs.resample_weights(50, 7, seed=4)))
    assert not np.array_equal(weights, other)


def test_bootstrap_set_iou_matches_brute_force_resampling():
    rng = np.random.default_rng(0)
    n, c, b = 40, 6, 25
    image, concept, inter, union = sparse_pairs(rng, n, c)
    matrices = {
        "i": bs.count_matrix(image, concept, inter, n, c),
        "u": bs.count_matrix(image, concept, union, n, c),
    }
    samples = bs.bootstrap(matrices, {"iou": bs.iou_of("i", "u")}, n, b, seed=5)["iou"]
    drawn = np.random.default_rng(5).integers(0, n, size=(b, n))  # the same draws, one chunk
    dense_i, dense_u = np.zeros((n, c)), np.zeros((n, c))
    dense_i[image, concept], dense_u[image, concept] = inter, union
    expected = np.zeros((b, c))
    for r in range(b):
        for k in range(c):
            total_u = sum(dense_u[i, k] for i in drawn[r])
            total_i = sum(dense_i[i, k] for i in drawn[r])
            expected[r, k] = total_i / total_u if total_u else 0.0
    assert np.allclose(samples, expected, atol=1e-6)


def test_balanced_accuracy_score_matches_the_metric_on_unit_weights():
    rng = np.random.default_rng(1)
    labels = rng.random((30, 5)) < 0.3
    labels[:, 4] = False  # a concept without positives: one rate only
    preds = rng.random((30, 5)) < 0.4
    sums = {
        "pos": labels.sum(0).astype(float),
        "neg": (~labels).sum(0).astype(float),
        "tp": (preds & labels).sum(0).astype(float),
        "tn": (~preds & ~labels).sum(0).astype(float),
    }
    ours = bs.balanced_accuracy_of("")(sums)
    reference = balanced_accuracy(torch.from_numpy(preds), torch.from_numpy(labels.astype(float)))
    assert np.allclose(ours, reference.numpy())


def test_intervals_cover_a_known_iou_at_about_the_nominal_rate():
    """Each of 400 concepts draws its own images; the true set IoU is E[I] / E[U] = 0.3."""
    rng = np.random.default_rng(2)
    n, c = 300, 400
    union = rng.poisson(40, size=(n, c)) + 1
    inter = rng.binomial(union, 0.3)
    image, concept = np.nonzero(np.ones((n, c), bool))
    matrices = {
        "i": bs.count_matrix(image, concept, inter[image, concept], n, c),
        "u": bs.count_matrix(image, concept, union[image, concept], n, c),
    }
    samples = bs.bootstrap(matrices, {"iou": bs.iou_of("i", "u")}, n, 1000, seed=0)["iou"]
    lo, hi = bs.interval(samples, 0.95)
    coverage = np.mean((lo <= 0.3) & (0.3 <= hi))
    assert 0.91 <= coverage <= 0.99, coverage


def test_paired_bootstrap_gives_one_half_for_identical_predictions():
    rng = np.random.default_rng(3)
    samples = rng.random((200, 8))
    assert np.array_equal(bs.p_greater(samples, samples.copy()), np.full(8, 0.5))


def test_paired_bootstrap_is_calibrated_for_exchangeable_predictors():
    """Two predictors of the same quality, each noisy on its own: P(a > b) ≈ ½ on average."""
    rng = np.random.default_rng(4)
    n, c = 200, 300
    union = rng.poisson(30, size=(n, c)) + 1
    inter_a, inter_b = rng.binomial(union, 0.4), rng.binomial(union, 0.4)
    image, concept = np.nonzero(np.ones((n, c), bool))
    matrices = {
        name: bs.count_matrix(image, concept, values[image, concept], n, c)
        for name, values in (("a", inter_a), ("b", inter_b), ("u", union))
    }
    scores = {"a": bs.iou_of("a", "u"), "b": bs.iou_of("b", "u")}
    samples = bs.bootstrap(matrices, scores, n, 500, seed=1)
    p = bs.p_greater(samples["a"], samples["b"])
    assert abs(p.mean() - 0.5) < 0.05
    assert np.mean(p >= 0.975) < 0.08  # about 2.5 % reach "significant" by chance
    better = bs.p_greater(samples["a"] * 0 + 1, samples["b"])  # a strictly better everywhere
    assert np.all(better == 1.0)


def test_within_concept_permutation_keeps_each_pair_in_its_concept():
    rng = np.random.default_rng(5)
    concept = rng.integers(0, 7, 200)
    partner = bs.within_concept_permutation(concept, rng)
    assert np.array_equal(np.sort(partner), np.arange(200))
    assert np.array_equal(concept[partner], concept)


def blobs(rng, pairs, side=16):
    """Random rectangles (pairs, side, side) bool."""
    masks = np.zeros((pairs, side, side), bool)
    for p in range(pairs):
        y, x = rng.integers(0, side - 4, 2)
        h, w = rng.integers(2, 8, 2)
        masks[p, y : y + h, x : x + w] = True
    return masks


def test_shuffled_null_matches_brute_force_on_unpacked_masks():
    rng = np.random.default_rng(6)
    pred, mask = blobs(rng, 60), blobs(rng, 60)
    concept = rng.integers(0, 4, 60)
    packed = [np.packbits(m.reshape(60, -1), axis=1) for m in (pred, mask)]
    null = bs.shuffled_null_iou(*packed, concept, 4, draws=3, seed=9)
    draw_rng = np.random.default_rng(9)
    for d in range(3):
        partner = bs.within_concept_permutation(concept, draw_rng)
        shuffled = mask[partner]
        for k in range(4):
            mine = concept == k
            inter = (pred[mine] & shuffled[mine]).sum()
            union = (pred[mine] | shuffled[mine]).sum()
            assert null[d, k] == pytest.approx(inter / union)


def test_masks_independent_of_the_prediction_get_a_large_p_null():
    rng = np.random.default_rng(7)
    pairs, concepts = 600, 60
    concept = np.repeat(np.arange(concepts), pairs // concepts)
    pred, independent = blobs(rng, pairs), blobs(rng, pairs)
    packed = [np.packbits(m.reshape(pairs, -1), axis=1) for m in (pred, independent, pred)]

    def observed_and_p(mask_bits):
        inter = np.bitwise_count(packed[0] & mask_bits).sum(1)
        union = np.bitwise_count(packed[0] | mask_bits).sum(1)
        observed = np.bincount(concept, inter) / np.bincount(concept, union)
        null = bs.shuffled_null_iou(packed[0], mask_bits, concept, concepts, draws=5, seed=0)
        return observed, significance.empirical_p(observed, null)

    _, p_independent = observed_and_p(packed[1])
    assert 0.35 < p_independent.mean() < 0.75  # uniform on {1/6, …, 1} under the null
    observed, p_aligned = observed_and_p(packed[2])  # masks equal to the prediction
    assert np.allclose(observed, 1.0) and np.allclose(p_aligned, 1 / 6)


def test_resamples_without_the_concept_are_left_out():
    """A concept on one image only: resamples that miss it do not count (no spurious 0 IoU)."""
    n = 30
    image, concept = np.array([0, 3, 5, 7]), np.array([0, 1, 1, 1])
    inter, union = np.array([4, 1, 2, 3]), np.array([10, 5, 6, 7])
    matrices = {
        "i": bs.count_matrix(image, concept, inter, n, 2),
        "u": bs.count_matrix(image, concept, union, n, 2),
    }
    scores = {"iou": bs.iou_of("i", "u", absent=np.nan), "zero": bs.iou_of("i", "u")}
    samples = bs.bootstrap(matrices, scores, n, 400, seed=0)
    missing = np.isnan(samples["iou"][:, 0])
    assert 0.2 < missing.mean() < 0.55  # (1 - 1/30)^30 ≈ 0.36
    assert np.all(samples["zero"][missing, 0] == 0)
    lo, hi = bs.interval(samples["iou"])
    assert lo[0] == pytest.approx(0.4) and hi[0] == pytest.approx(0.4)
    p = bs.p_greater(samples["iou"], samples["iou"] * 0.5)
    assert p[0] == 1.0 and np.isnan(bs.p_greater(np.full((3, 1), np.nan), np.ones((3, 1))))[0]
