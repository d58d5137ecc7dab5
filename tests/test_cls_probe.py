"""ClassificationProbe and ClassificationDataModule against the one-concept reference loop."""

import functools

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from cls_reference import (
    ClsData,
    initial_weights,
    reference_probe,
    synthetic_cls,
    train_concept_original,
    train_concept_weighted,
    val_balanced_accuracy,
)

from net2vec.data.classification_data import ClassificationDataModule, pooled_features
from net2vec.probes.classification import ClassificationProbe, negative_weights
from net2vec.probes.subsets import subset_masks, top_filters


class FakeConceptStore:
    """The documented ConceptStore API (what the classification data module reads)."""

    def __init__(self, data: ClsData):
        self.num_images, self.num_concepts = data.labels.shape
        self.split, self.presence = data.split, data.labels


class FakeActivationStore:
    """Pooled features, plus maps (n, K, 2, 2) whose spatial mean is the pooled value."""

    def __init__(self, data: ClsData, thresholds=None):
        self.features = data.features.numpy()
        self.num_images, self.num_filters = self.features.shape
        offsets = np.array([-0.3, 0.3, -0.1, 0.1], dtype=np.float32).reshape(1, 1, 2, 2)
        self.maps = np.maximum(self.features[:, :, None, None] + offsets, 0)
        self.thresholds = thresholds

    def pooled(self):
        return self.features

    def activations(self, idx):
        return self.maps[np.asarray(idx)]


def datamodule(data, **kwargs):
    return ClassificationDataModule(FakeConceptStore(data), FakeActivationStore(data), **kwargs)


def trainer(epochs):
    return pl.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
    )


def schedule(epochs_step=15, lr=0.1):
    return (
        functools.partial(torch.optim.SGD, lr=lr, momentum=0.9),
        functools.partial(torch.optim.lr_scheduler.StepLR, step_size=epochs_step, gamma=0.1),
    )


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: intra-op threads only contend (40 ms vs 1 ms a step on a shared 2-core box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    return synthetic_cls(
        num_images=120, num_concepts=4, num_filters=10, planted=2, noise=0.5, seed=2
    )


def test_loss_equals_literal_formula(data):
    subsets = [1, 3]
    mask = subset_masks(torch.randn(4, 10), subsets)
    n_pos, n_neg = data.train_counts()
    probe = ClassificationProbe(4, 10, n_pos, n_neg, mask=mask, subsets=subsets, seed=1)
    with torch.no_grad():
        probe.bias.add_(torch.randn_like(probe.bias))
    rows = np.arange(30)
    batch = {
        "features": data.features[rows],
        "labels": torch.from_numpy(data.labels[rows]).float(),
        "image_index": torch.from_numpy(rows),
    }
    value = probe.loss(batch)
    expected = 0.0
    for s in range(3):
        for c in range(4):
            w, b = probe.weight[s, c].detach() * mask[s, c], probe.bias[s, c].detach()
            for i in rows:
                t = float(data.labels[i, c])
                p = torch.sigmoid(data.features[i] @ w + b)
                weight = 1.0 if t else n_pos[c] / n_neg[c]
                expected -= weight * (t * torch.log(p) + (1 - t) * torch.log(1 - p))
    torch.testing.assert_close(value, (expected / 64).float(), rtol=1e-5, atol=1e-5)
    value.backward()
    assert torch.all(probe.weight.grad[mask == 0] == 0) and torch.any(probe.weight.grad != 0)
    assert probe.logits(batch["features"]).shape == (3, 30, 4)


def test_datamodule_batches_counts_and_resampling(data):
    dm = datamodule(data, batch_size=16, seed=3)
    train, val = np.flatnonzero(data.split == 0), np.flatnonzero(data.split == 1)
    np.testing.assert_array_equal(dm.n_pos, data.labels[train].sum(0))
    np.testing.assert_array_equal(dm.n_neg, (~data.labels[train]).sum(0))
    epochs = [list(dm.train_dataloader()) for _ in range(2)]
    assert len(dm.train_dataloader()) == len(epochs[0]) == -(-len(train) // 16)
    for batches in epochs:
        rows = torch.cat([b["image_index"] for b in batches]).numpy()
        assert sorted(rows) == list(train) and list(rows) != list(
            train
        )  # every train image, shuffled
        for b in batches:
            torch.testing.assert_close(b["features"], data.features[b["image_index"]])
            expected = torch.from_numpy(data.labels[b["image_index"].numpy()]).float()
            torch.testing.assert_close(b["labels"], expected)
            assert b["features"].dtype == b["labels"].dtype == torch.float32 and "include" not in b
    assert [b["image_index"].tolist() for b in epochs[0]] != [
        b["image_index"].tolist() for b in epochs[1]
    ]
    val_rows = torch.cat([b["image_index"] for b in dm.val_dataloader()]).numpy()
    np.testing.assert_array_equal(val_rows, val)
    # resampling: all positives + min(n_pos, n_neg) negatives per concept, redrawn per epoch, seeded
    dm = datamodule(data, batch_size=16, seed=3, balance="resample")
    draws = [dm.inclusion(e).numpy() for e in (0, 1)]
    labels = data.labels[train]
    for include in draws:
        assert np.all(include[labels])
        np.testing.assert_array_equal((include & ~labels).sum(0), np.minimum(dm.n_pos, dm.n_neg))
    assert np.any(draws[0] != draws[1])
    np.testing.assert_array_equal(
        datamodule(data, seed=3, balance="resample").inclusion(1).numpy(), draws[1]
    )
    for b in dm.train_dataloader():
        position = np.searchsorted(train, b["image_index"].numpy())
        np.testing.assert_array_equal(b["include"].numpy(), draws[0][position])


def test_thresholded_features(data):
    thresholds = np.linspace(0.2, 1.2, 10).astype(np.float32)
    store = FakeActivationStore(data, thresholds=thresholds)
    dm = ClassificationDataModule(FakeConceptStore(data), store, thresholded=True)
    dm.setup()
    expected = (store.maps > thresholds[None, :, None, None]).mean((2, 3))
    np.testing.assert_allclose(dm.features.numpy(), expected, atol=1e-7)
    raw = ClassificationDataModule(FakeConceptStore(data), store)
    raw.setup()
    np.testing.assert_allclose(raw.features.numpy(), store.features)
    np.testing.assert_allclose(
        pooled_features(store.maps).numpy(), store.maps.mean((2, 3)), atol=1e-6
    )


def test_full_batch_training_equals_reference(data):
    """Same init, one batch per epoch, the batched weighting: every head equals its own reference."""
    epochs, subsets = 6, [2, 5]
    init = initial_weights(4, 10, seed=7)
    masks = subset_masks(torch.randn(4, 10, generator=torch.Generator().manual_seed(0)), subsets)
    optimizer, scheduler = schedule(epochs_step=3)
    n_pos, n_neg = data.train_counts()
    probe = ClassificationProbe(
        4,
        10,
        n_pos,
        n_neg,
        mask=masks,
        subsets=subsets,
        initial_weights=init,
        optimizer=optimizer,
        scheduler=scheduler,
    )
    fit = trainer(epochs)
    fit.fit(probe, datamodule=datamodule(data, batch_size=len(data.split)))
    assert {"train/loss", "val/mean_acc", "val/mean_acc_F2", "val/mean_acc_F5"} <= set(
        fit.callback_metrics
    )
    assert fit.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.1 * 0.1**2)
    for s, size in enumerate([None] + subsets):
        for c in range(4):
            filters = None if size is None else np.flatnonzero(masks[s, c].numpy())
            w0 = init[c] if filters is None else init[c, filters]
            w, b = train_concept_weighted(data, c, w0, filters=filters, epochs=epochs, step_size=3)
            learned = probe.effective_weights()[s, c].detach()
            torch.testing.assert_close(
                learned if filters is None else learned[filters], w, rtol=1e-4, atol=1e-5
            )
            torch.testing.assert_close(probe.bias[s, c].detach(), b, rtol=1e-4, atol=1e-5)
            assert not torch.allclose(w, w0)
            acc = val_balanced_accuracy(data, c, w, b, filters)
            assert probe.val_acc[s, c] == pytest.approx(acc, abs=1e-6)


def test_resample_full_batch_equals_reference_with_same_draws(data):
    """balance='resample', one batch per epoch: the original loop fed the module's draws, Σ / 64."""
    epochs = 4
    init = initial_weights(4, 10, seed=9)
    dm = datamodule(data, batch_size=len(data.split), seed=5, balance="resample")
    optimizer, scheduler = schedule(epochs_step=2)
    probe = ClassificationProbe(
        4, 10, balance="resample", initial_weights=init, optimizer=optimizer, scheduler=scheduler
    )
    trainer(epochs).fit(probe, datamodule=dm)
    train = np.flatnonzero(data.split == 0)
    for c in range(4):

        def drawn(epoch, c=c):
            include = dm.inclusion(epoch).numpy()[:, c]
            return train[include & ~data.labels[train, c]]

        w, b = train_concept_original(
            data,
            c,
            init[c],
            epochs=epochs,
            step_size=2,
            batch_size=None,
            norm=64,
            negatives_for_epoch=drawn,
        )
        torch.testing.assert_close(probe.weight[0, c].detach(), w, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(probe.bias[0, c].detach(), b, rtol=1e-4, atol=1e-5)


def partial_data(data_seed: int) -> ClsData:
    """Features that partially predict the labels (optimal balanced accuracy ≈ 0.75)."""
    return synthetic_cls(
        num_images=700, num_concepts=10, num_filters=40, planted=3, noise=1.0, seed=data_seed
    )


@functools.cache
def original_accs(data_seed: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Val balanced accuracy of the original loop from init seed ``seed`` and from seed + 100."""
    data = partial_data(data_seed)
    _, _, ref_a = reference_probe(data, init=initial_weights(10, 40, seed), seed=seed)
    _, _, ref_b = reference_probe(data, init=initial_weights(10, 40, seed + 100), seed=seed + 100)
    return ref_a, ref_b


def compare_with_original(balance: str, data_seeds=(3, 4, 5, 6, 7, 8), seeds=(0, 1)):
    """Per concept |Δ val balanced accuracy|: batched vs the original loop (same init), two seeds
    of the original, and the signed batched − original; pooled over data sets and seeds."""
    batched, between, signed, accs = [], [], [], []
    for data_seed in data_seeds:
        data = partial_data(data_seed)
        n_pos, n_neg = data.train_counts()
        for seed in seeds:
            probe = ClassificationProbe(10, 40, n_pos, n_neg, balance=balance, seed=seed)
            trainer(30).fit(
                probe, datamodule=datamodule(data, batch_size=64, seed=seed, balance=balance)
            )
            ref_a, ref_b = original_accs(data_seed, seed)
            batched.append(np.abs(probe.val_acc[0] - ref_a))
            signed.append(probe.val_acc[0] - ref_a)
            between.append(np.abs(ref_a - ref_b))
            accs.append(probe.val_acc[0])
    return np.mean(batched), np.mean(between), np.mean(signed), np.mean(accs)


@pytest.mark.slow
@pytest.mark.parametrize("balance", ["weight", "resample"])
def test_minibatch_training_matches_original_statistically(balance):
    """Batch 64, 30 epochs, lr 0.1, StepLR 15: the batched probe differs from the original's
    resampling loop no more than two seeds of the original loop do (120 concepts pooled).

    Measured: original vs original 0.0142; weight 0.0128 (signed +0.004); resample 0.0140
    (signed +0.002). On single data sets either can exceed the seed-to-seed value by ~10 %.
    """
    batched, between, signed, acc = compare_with_original(balance)
    print(
        f"{balance}: batched vs original {batched:.4f}, original vs original {between:.4f}, "
        f"signed {signed:+.4f}, mean balanced acc {acc:.3f}"
    )
    assert batched <= between
    assert abs(signed) <= 0.01
    assert acc > 0.65  # it learned (chance 0.5)


def test_planted_filters_have_the_largest_weights():
    data = synthetic_cls(
        num_images=500, num_concepts=5, num_filters=30, planted=3, noise=0.2, seed=4
    )
    n_pos, n_neg = data.train_counts()
    probe = ClassificationProbe(5, 30, n_pos, n_neg, seed=0)
    trainer(30).fit(probe, datamodule=datamodule(data))
    weights = probe.effective_weights()[0].detach()
    np.testing.assert_array_equal(np.sort(top_filters(weights, 3), axis=1), data.planted)
    assert np.all(weights.numpy()[np.arange(5)[:, None], data.planted] > 0)
    assert probe.val_acc[0].min() > 0.85


def test_bad_arguments():
    with pytest.raises(ValueError, match="balance="):
        ClassificationProbe(2, 3, [1, 1], [1, 1], balance="oversample")
    with pytest.raises(ValueError, match="n_pos and n_neg"):
        ClassificationProbe(2, 3)
    with pytest.raises(ValueError, match="mask shape"):
        ClassificationProbe(2, 3, [1, 1], [1, 1], mask=torch.ones(2, 2, 3))
    torch.testing.assert_close(
        negative_weights([2, 3, 4], [4, 0, 1]), torch.tensor([0.5, 0.0, 4.0])
    )
    probe = ClassificationProbe(2, 3, balance="resample")
    with pytest.raises(ValueError, match="include"):
        probe.loss(
            {
                "features": torch.ones(1, 3),
                "labels": torch.ones(1, 2),
                "image_index": torch.zeros(1),
            }
        )
    bound = 1 / np.sqrt(3)
    assert probe.weight.abs().max() <= bound and torch.all(probe.bias == 0)
    optimizer = probe.configure_optimizers()
    assert (
        optimizer["lr_scheduler"].step_size == 15 and optimizer["optimizer"].defaults["lr"] == 0.1
    )
    assert optimizer["optimizer"].defaults["momentum"] == 0.9
    hydra_style = ClassificationProbe(
        2,
        3,
        balance="resample",
        scheduler=False,
        optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.5},
    )
    assert hydra_style.configure_optimizers().defaults["lr"] == 0.5
