"""Planted activation store: follows its documented encoding, and the saved matrix matches it."""

from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import store_config
from test_thresholds import sort_threshold

from net2vec.data.concept_store import prepare_concept_store
from net2vec.data.synthetic import generate_synthetic
from net2vec.run.pipeline import prepare_activation_store

CONF = Path(__file__).resolve().parents[1] / "conf" / "network"


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    base = tmp_path_factory.mktemp("planted")
    concepts = prepare_concept_store(
        generate_synthetic(base / "syn", images=40, size=64, seed=2, progress=False),
        base / "cache",
        progress=False,
    )
    cfg = store_config(
        base / "cache", "planted", "conv5", 0.005, filters=40, noise_filters=4, seed=3
    )
    net = cfg.network
    store = prepare_activation_store(cfg, concepts)
    with h5py.File(store.path) as handle:
        saved = {k: handle[f"planted/{k}"][()] for k in ("weights", "kind", "part")}
    saved["kind"] = saved["kind"].astype(str)
    return concepts, store, saved, net


def brute_force(concepts, weights, part, net):
    """Step 4 of the docstring, image by image, filter by filter, in plain NumPy."""
    s, K, D = net.map_size, net.filters, net.distributed_parts
    sh, sw = concepts.mask_size
    out = np.zeros((concepts.num_images, K, s, s), np.float32)
    for i in range(concepts.num_images):
        maps = np.zeros((concepts.num_concepts, s, s))
        for p in range(concepts.pair_offsets[i], concepts.pair_offsets[i + 1]):
            mask = concepts.masks(np.array([p]))[0].astype(float)
            maps[concepts.pair_concept[p]] = mask.reshape(s, sh // s, s, sw // s).mean((1, 3))
        for c in np.flatnonzero(~concepts.pixel_level & concepts.presence[i]):
            maps[c] = 1.0
        noise = np.random.default_rng([net.seed, i]).standard_normal((K, s, s), dtype=np.float32)
        for k in range(K):
            signal = np.tensordot(weights[:, k], maps, axes=1)
            if part[k] >= 0:
                signal[:, [j for j in range(s) if j * D // s != part[k]]] = 0
            out[i, k] = np.maximum(0, signal + net.noise * noise[k])
    return out


def test_store_follows_encoding(planted):
    concepts, store, saved, net = planted
    acts = store.activations(np.arange(concepts.num_images))
    np.testing.assert_allclose(
        acts, brute_force(concepts, saved["weights"], saved["part"], net), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_array_equal(store.thresholds, sort_threshold(acts, 0.005))
    assert (
        store.map_size == (8, 8) and store.num_filters == 40 and store.attrs["network"] == "planted"
    )


def test_saved_matrix_matches_kinds(planted):
    concepts, store, saved, net = planted
    weights, kind, part = saved["weights"], saved["kind"], saved["part"]
    used = weights > 0
    owners = used.sum(0)
    assert (owners == 0).sum() >= net.noise_filters
    assert set(kind) >= {"single", "distributed", "shared", "absent"}
    for c in range(concepts.num_concepts):
        filters = np.flatnonzero(used[c])
        assert np.all((weights[c, filters] >= 1) & (weights[c, filters] <= 2))
        if kind[c] == "absent":
            assert len(filters) == 0
        elif kind[c] == "single":
            assert len(filters) == 1 and owners[filters[0]] == 1 and part[filters[0]] == -1
        elif kind[c] == "distributed":
            assert (
                len(filters) == 3
                and np.all(owners[filters] == 1)
                and sorted(part[filters]) == [0, 1, 2]
            )
        else:
            assert len(filters) == 1 and owners[filters[0]] in (2, 3) and part[filters[0]] == -1
    # assignment stops when filters run out: the noise filters stay unused, all but < 3 others used
    assert (owners == 0).sum() - net.noise_filters < 3


def test_single_filter_carries_its_concept(planted):
    """Over all images, a planted single filter correlates best with its own concept's mask."""
    concepts, store, saved, _ = planted
    acts = store.activations(np.arange(concepts.num_images)).transpose(1, 0, 2, 3).reshape(40, -1)
    singles = [c for c in np.flatnonzero(saved["kind"] == "single") if concepts.pixel_level[c]]
    assert singles
    for c in singles:
        target = np.zeros((concepts.num_images, 8, 8))
        pairs = np.flatnonzero(concepts.pair_concept == c)
        target[concepts.pair_image[pairs]] = (
            concepts.masks(pairs).reshape(len(pairs), 8, 4, 8, 4).mean((2, 4))
        )
        corr = [np.corrcoef(a, target.reshape(-1))[0, 1] if a.std() > 0 else 0 for a in acts]
        assert np.argmax(corr) == np.flatnonzero(saved["weights"][c])[0] and max(corr) > 0.2
