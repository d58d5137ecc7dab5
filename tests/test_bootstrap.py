"""Bootstrap resamples, BCa intervals and shuffled-mask nulls against brute-force NumPy and SciPy."""

import numpy as np
import pytest
import torch
from scipy import stats

from net2vec.statistics import bootstrap as bs
from net2vec.statistics import intervals, significance
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


def test_jackknife_moments_match_a_brute_force_leave_one_out():
    """Sparse deltas (only the concept's images change θ) give the dense jackknife's moments."""
    rng = np.random.default_rng(3)
    n, c = 30, 5
    image, concept, inter, union = sparse_pairs(rng, n, c, density=0.5)
    total_i, total_u = np.bincount(concept, inter, c), np.bincount(concept, union, c)
    theta = total_i / total_u
    delta = (total_i[concept] - inter) / (total_u[concept] - union) - theta[concept]
    second, third = intervals.jackknife_moments(delta, concept, c, n)
    dense = np.zeros((n, c))
    for k in range(c):
        for i in range(n):
            keep = (image != i) & (concept == k)
            dense[i, k] = inter[keep].sum() / union[keep].sum() - theta[k]
    d = dense.mean(0) - dense
    assert np.allclose(second, (d**2).sum(0)) and np.allclose(third, (d**3).sum(0))
    assert np.allclose(intervals.dense_moments(dense)[0], second)


def test_bca_interval_agrees_with_scipy():
    """The ratio Σ i / Σ u on 40 images: our BCa (jackknife acceleration) against SciPy's."""
    rng = np.random.default_rng(11)
    n = 40
    union = rng.lognormal(3, 1, n).round() + 1
    inter = rng.binomial(union.astype(int), 0.3).astype(float)
    image, concept = np.arange(n), np.zeros(n, int)
    matrices = {
        "i": bs.count_matrix(image, concept, inter, n, 1),
        "u": bs.count_matrix(image, concept, union, n, 1),
    }
    samples = bs.bootstrap(matrices, {"r": bs.iou_of("i", "u")}, n, 20000, seed=1)["r"]
    estimate = np.array([inter.sum() / union.sum()])
    delta = (inter.sum() - inter) / (union.sum() - union) - estimate[0]
    accel = intervals.acceleration(*intervals.jackknife_moments(delta, concept, 1, n))
    lo, hi = intervals.bca_interval(samples, estimate, accel, 0.95)
    reference = stats.bootstrap(
        (inter, union),
        lambda i, u: i.sum() / u.sum(),
        paired=True,
        vectorized=False,
        n_resamples=20000,
        method="BCa",
        rng=np.random.default_rng(2),
    ).confidence_interval
    width = reference.high - reference.low
    assert abs(lo[0] - reference.low) < 0.05 * width and abs(hi[0] - reference.high) < 0.05 * width
    percentile = bs.interval(samples)
    assert not np.isclose(percentile[0][0], lo[0], rtol=1e-3)  # the correction does something


def test_bca_interval_contains_the_estimate_and_widens_for_small_samples():
    rng = np.random.default_rng(12)
    samples = rng.normal(1.0, 0.1, (1000, 3))
    estimate = np.array([1.0, 0.2, 5.0])  # inside; every resample above it; every one below
    lo, hi = intervals.bca_interval(samples, estimate, np.zeros(3))
    assert np.all((lo <= estimate) & (estimate <= hi))
    wide = intervals.bca_interval(samples, estimate, np.zeros(3), sizes=np.array([10, 10, 10]))
    assert wide[0][0] < lo[0] and wide[1][0] > hi[0]
    big = intervals.bca_interval(samples, estimate, np.zeros(3), sizes=np.array([10**6] * 3))
    assert np.allclose(big[0], lo, atol=1e-3)
    nan = intervals.bca_interval(np.full((5, 1), np.nan), np.array([0.3]), np.zeros(1))
    assert np.isnan(nan[0]).all() and np.isnan(nan[1]).all()


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
    assert lo[0] == pytest.approx(0.4) and hi[0] == pytest.approx(0.4)  # one image: no spread
    assert samples["iou"].dtype == np.float64
