"""BalancedAccuracy / balanced_accuracy against brute-force NumPy counting and scikit-learn."""

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from net2vec.statistics import BalancedAccuracy, balanced_accuracy


def brute_force(pred: np.ndarray, labels: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per concept, loop over entries and count; the module's convention for missing classes."""
    out = []
    for c in range(pred.shape[1]):
        tp = fp = tn = fn = 0
        for i in range(pred.shape[0]):
            if not valid[i, c]:
                continue
            p, t = bool(pred[i, c]), bool(labels[i, c])
            tp += p and t
            fp += p and not t
            tn += (not p) and (not t)
            fn += (not p) and t
        rates = ([tp / (tp + fn)] if tp + fn else []) + ([tn / (tn + fp)] if tn + fp else [])
        out.append(float(np.mean(rates)) if rates else 0.0)
    return np.array(out)


@pytest.fixture(scope="module")
def sample():
    rng = np.random.default_rng(0)
    n, c = 97, 6
    logits = rng.normal(size=(n, c)).astype(np.float32)
    labels = rng.random((n, c)) < np.array(
        [0.1, 0.3, 0.5, 0.7, 0.0, 1.0]
    )  # last two: one class only
    valid = rng.random((n, c)) < 0.8
    valid[:, 2] = False  # nothing valid
    valid[:, 3] = True
    return logits, labels, valid


@pytest.mark.parametrize("masked", [False, True])
def test_metric_batch_by_batch_equals_brute_force(sample, masked):
    logits, labels, valid = sample
    valid = valid if masked else np.ones_like(valid)
    metric = BalancedAccuracy(logits.shape[1])
    for start in range(0, len(logits), 13):
        part = slice(start, start + 13)
        metric.update(
            torch.from_numpy(logits[part]),
            torch.from_numpy(labels[part]).float(),
            torch.from_numpy(valid[part]) if masked else None,
        )
    expected = brute_force(logits > 0, labels, valid)
    result = metric.compute()
    assert result.dtype == torch.float64 and result.shape == (6,)
    np.testing.assert_allclose(result.numpy(), expected, rtol=0, atol=1e-12)
    functional = balanced_accuracy(
        torch.from_numpy(logits),
        torch.from_numpy(labels).float(),
        torch.from_numpy(valid) if masked else None,
    )
    np.testing.assert_allclose(functional.numpy(), expected, rtol=0, atol=1e-12)
    if masked:
        assert expected[2] == 0.0  # no valid entries


def test_agrees_with_sklearn_and_input_kinds(sample):
    logits, labels, _ = sample
    result = balanced_accuracy(torch.from_numpy(logits), torch.from_numpy(labels))
    for c in range(4):
        sklearn = balanced_accuracy_score(labels[:, c], logits[:, c] > 0)
        assert result[c].item() == pytest.approx(sklearn, abs=1e-12)
    probs = torch.sigmoid(torch.from_numpy(logits))
    by_prob = BalancedAccuracy(6, logits=False)
    by_prob.update(probs, torch.from_numpy(labels))
    by_bool = balanced_accuracy(torch.from_numpy(logits > 0), torch.from_numpy(labels))
    torch.testing.assert_close(by_prob.compute(), result)
    torch.testing.assert_close(by_bool, result)
    # only positives (or only negatives): the one rate there is
    assert result[4].item() == pytest.approx(np.mean(logits[:, 4] <= 0))
    assert result[5].item() == pytest.approx(np.mean(logits[:, 5] > 0))


def test_perfect_inverted_and_reset():
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    metric = BalancedAccuracy(2)
    metric.update(labels * 2 - 1, labels)
    torch.testing.assert_close(metric.compute(), torch.ones(2, dtype=torch.float64))
    metric.reset()
    metric.update(1 - labels * 2, labels)
    torch.testing.assert_close(metric.compute(), torch.zeros(2, dtype=torch.float64))


def test_bad_shapes_raise():
    metric = BalancedAccuracy(3)
    with pytest.raises(ValueError, match=r"expected \(n, 3\)"):
        metric.update(torch.zeros(4, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="must both be"):
        balanced_accuracy(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="valid mask"):
        balanced_accuracy(torch.zeros(4, 3), torch.zeros(4, 3), torch.ones(4, 2))
