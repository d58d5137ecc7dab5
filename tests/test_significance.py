"""p-values against nulls that ties cannot fool, and Benjamini–Hochberg against a brute force."""

import itertools

import numpy as np

from net2vec.statistics.significance import benjamini_hochberg, empirical_p, enough_images


def brute_force_bh(p: np.ndarray) -> np.ndarray:
    """q_i = min over the ranks r ≥ rank(i) of p_(r) · m / r, capped at 1 (finite entries only)."""
    q = np.full(p.shape, np.nan)
    finite = [i for i in range(len(p)) if np.isfinite(p[i])]
    m = len(finite)
    ranked = sorted(finite, key=lambda i: (p[i], i))
    for position, i in enumerate(ranked, 1):
        q[i] = min(1.0, min(p[j] * m / r for r, j in enumerate(ranked, 1) if r >= position))
    return q


def test_bh_equals_brute_force_with_ties_and_nans():
    rng = np.random.default_rng(3)
    for size, _trial in itertools.product((1, 2, 7, 40), range(5)):
        p = rng.choice([0.001, 0.01, 0.02, 0.04, 0.2, 0.5, 1.0, np.nan], size=size)
        np.testing.assert_allclose(benjamini_hochberg(p), brute_force_bh(p), rtol=1e-12)


def test_bh_q_is_at_least_p_and_monotone_in_p():
    p = np.random.default_rng(0).random(200)
    q = benjamini_hochberg(p)
    assert (q >= p - 1e-15).all()
    order = np.argsort(p)
    assert (np.diff(q[order]) >= -1e-15).all()


def test_a_null_equal_to_the_observation_is_not_below_it():
    observed = np.array([0.1740, 0.3, 0.3])
    # draws equal to the observation up to float64 rounding of the counts, and exactly equal
    null = np.stack([observed * (1 - 1e-12), observed] * 3)
    p = empirical_p(observed, null)
    assert (p == 1.0).all(), p


def test_p_agrees_with_observed_against_null():
    null = np.array([[0.1, 0.5], [0.2, 0.6], [0.3, 0.7]])
    p = empirical_p(np.array([0.9, 0.55]), null)
    assert p[0] == 1 / 4  # above every draw
    assert p[1] == 3 / 4  # two of three draws not below 0.55


def test_too_few_images_are_not_testable():
    assert enough_images(np.array([0, 9, 10, 50]), 10).tolist() == [False, False, True, True]
