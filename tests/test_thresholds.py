"""TopQuantile: streaming exact top-τ thresholds against a full sort (ties included)."""

import math

import numpy as np
import pytest
import torch

from net2vec.features.thresholds import TopQuantile, top_count


def sort_threshold(values: np.ndarray, quantile: float) -> np.ndarray:
    """(K,) the (m+1)-th largest value per filter, m = ceil(τ n), by sorting everything."""
    K = values.shape[1]
    flat = np.moveaxis(values, 1, 0).reshape(K, -1)
    m = math.ceil(round(quantile * flat.shape[1], 9))
    return -np.sort(-flat, axis=1)[:, m]


@pytest.mark.parametrize(
    "quantile,ties", [(0.005, False), (0.05, True), (0.2, True), (0.005, True)]
)
def test_streaming_equals_sort(quantile, ties):
    rng = np.random.default_rng(0)
    shape = (97, 5, 6, 7)
    values = (
        rng.integers(0, 6, shape).astype(np.float32)
        if ties
        else rng.gamma(1.0, size=shape).astype(np.float32)
    )
    values[:, 2] = 0.0  # a dead filter: all ties
    top = TopQuantile(5, 97 * 42, quantile)
    for lo, hi in [(0, 1), (1, 30), (30, 31), (31, 97)]:  # uneven batches
        top.update(torch.from_numpy(values[lo:hi]))
    np.testing.assert_array_equal(top.compute().numpy(), sort_threshold(values, quantile))
    flat = np.moveaxis(values, 1, 0).reshape(5, -1)
    if not ties:  # without ties exactly m values exceed T (the dead filter aside)
        exceed = (flat > top.compute().numpy()[:, None]).sum(1)
        assert np.all(np.delete(exceed, 2) == top.m) and exceed[2] == 0


def test_top_count_is_exact_in_decimal():
    assert top_count(200, 0.005) == 1 and top_count(201, 0.005) == 2 and top_count(1000, 0.005) == 5


def test_errors():
    with pytest.raises(ValueError):
        TopQuantile(2, 10, 0.0)
    with pytest.raises(ValueError, match="exceeds"):
        TopQuantile(2, 2, 0.9)
    top = TopQuantile(2, 10, 0.1)
    top.update(torch.zeros(1, 2, 2, 2))
    with pytest.raises(ValueError, match="expected 10"):
        top.compute()
    with pytest.raises(ValueError, match="filters"):
        top.update(torch.zeros(1, 3, 1, 1))
