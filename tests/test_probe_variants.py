"""Probe variants (mlp head, soft-IoU loss, calibrated decision) against one-concept references:
batched training on a full batch ≡ each concept trained alone; calibrated thresholds ≡ brute force."""

import functools

import numpy as np
import pytest
import torch
from reference import (
    best_threshold_iou,
    planted_pairs,
    reference_logits,
    reference_loss,
    reference_mlp_logits,
    reference_soft_iou_loss,
    train_concept_params,
)
from test_seg_probe import datamodule, trainer

from net2vec.probes.segmentation import SegmentationProbe


@pytest.fixture(scope="module")
def data():
    return planted_pairs(
        num_images=40, num_concepts=4, num_filters=10, map_size=(5, 5), mask_size=(15, 15)
    )


def fit_full_batch(data, epochs=4, **kwargs) -> SegmentationProbe:
    optimizer = functools.partial(torch.optim.SGD, lr=1e-3, momentum=0.9)
    init = torch.empty(4, 10).uniform_(-0.3, 0.3, generator=torch.Generator().manual_seed(5))
    probe = SegmentationProbe(
        4, 10, data.alpha(), initial_weights=init, ref_batch_size=64, optimizer=optimizer, **kwargs
    )
    trainer(epochs).fit(probe, datamodule=datamodule(data, batch_size=len(data.split)))
    return probe


def test_soft_iou_full_batch_equals_one_concept_reference(data):
    probe = fit_full_batch(data, loss="soft_iou")
    init = torch.empty(4, 10).uniform_(-0.3, 0.3, generator=torch.Generator().manual_seed(5))
    for c in range(4):
        (ref,) = train_concept_params(
            data,
            c,
            [init[c]],
            lambda p, maps: reference_logits(p[0], maps, data.mask_size, True),
            reference_soft_iou_loss,
            epochs=4,
            lr=1e-3,
        )
        torch.testing.assert_close(probe.weight[0, c].detach(), ref, rtol=1e-4, atol=1e-6)
        assert not torch.allclose(ref, init[c])


def test_mlp_full_batch_equals_one_concept_reference(data):
    probe = fit_full_batch(data, head="mlp", hidden=3)
    assert probe.hidden_weight.shape == (3, 4, 10) and probe.out_weight.shape == (4, 3)
    start = fit_full_batch(data, epochs=0, head="mlp", hidden=3)  # the seeded initial head
    for c in range(4):
        params = [
            start.hidden_weight[:, c],
            start.hidden_bias[:, c],
            start.out_weight[c],
            start.weight[0, c],
        ]
        ref = train_concept_params(
            data,
            c,
            params,
            lambda p, maps: reference_mlp_logits(p, maps, data.mask_size),
            lambda z, masks, c=c: reference_loss(z, masks, float(data.alpha()[c]), "paper"),
            epochs=4,
            lr=1e-3,
        )
        got = [
            probe.hidden_weight[:, c],
            probe.hidden_bias[:, c],
            probe.out_weight[c],
            probe.weight[0, c],
        ]
        for a, b in zip(got, ref):
            torch.testing.assert_close(a.detach(), b, rtol=1e-4, atol=1e-6)
        assert not torch.allclose(ref[0], params[0])


def test_mlp_refuses_top_f_subsets(data):
    with pytest.raises(ValueError, match="linear head only"):
        SegmentationProbe(4, 10, data.alpha(), subsets=[2], all_filters_head=False, head="mlp")


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_calibrated_threshold_is_the_brute_force_best_on_train(data, head):
    probe = fit_full_batch(data, head=head, hidden=3, decision="calibrated")
    dm = datamodule(data, batch_size=7)  # several batches: histograms add up
    dm.setup()
    train_iou = probe.calibrate(dm.probe_dataloader(split=0)).numpy()[0]
    trainer(0).validate(probe, datamodule=dm, verbose=False)
    for c in range(4):
        for split, rows in ((0, "train"), (1, "val")):
            sel = np.flatnonzero((data.pair_concept == c) & (data.split[data.pair_image] == split))
            batch = {
                "maps": data.maps[torch.from_numpy(data.pair_image[sel])],
                "pair_image": torch.arange(len(sel)),
                "pair_concept": torch.full((len(sel),), c),
                "masks": data.masks[torch.from_numpy(sel)],
            }
            with torch.no_grad():
                z = probe(batch)[0].numpy()
            masks = data.masks[torch.from_numpy(sel)].numpy()
            if rows == "train":  # one bin (2B/4096) of the exact optimum, never above it
                best = best_threshold_iou(z, masks)
                assert best - 0.01 <= train_iou[c] <= best + 1e-6
            else:  # val set IoU reported with the train threshold, counted in NumPy
                pred, target = z >= float(probe.threshold[0, c]), masks > 0.5
                expected = (pred & target).sum() / max((pred | target).sum(), 1)
                assert probe.val_iou[0, c] == pytest.approx(expected, abs=1e-6)
    assert train_iou.min() > 0.0


def test_threshold_search_in_blocks_equals_a_numpy_histogram():
    from net2vec.probes.decision import ThresholdSearch

    gen = torch.Generator().manual_seed(0)
    heads, num_concepts, bins = 3, 4, 16
    logits = torch.randn(heads, 9, 5, 6, generator=gen) * 2
    masks = (torch.rand(9, 5, 6, generator=gen) > 0.6).float()
    concept = torch.randint(0, num_concepts, (9,), generator=gen)
    bound = torch.full((heads, num_concepts), 3.0)
    blocked = ThresholdSearch(bound, bins, chunk_bytes=16 * heads * 30 * 2)  # two pairs a block
    blocked.update(logits, masks, concept)
    edges = np.linspace(-3.0, 3.0, bins + 1)
    for s in range(heads):
        for c in range(num_concepts):
            z = logits[s, concept == c].numpy().astype(np.float64)
            m = masks[concept == c].numpy() > 0.5
            index = np.clip(np.floor((z + 3.0) / (edges[1] - edges[0])), 0, bins - 1)
            pos = np.bincount(index[m].astype(int), minlength=bins)
            neg = np.bincount(index[~m].astype(int), minlength=bins)
            np.testing.assert_array_equal(blocked.positive[s, c].numpy(), pos)
            np.testing.assert_array_equal(blocked.negative[s, c].numpy(), neg)
