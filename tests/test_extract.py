"""Activation store: stored values equal a direct forward pass, thresholds equal a sort-based
quantile of the stored values, and the cache is reused only for the same (dataset, network,
weights, layer, input size) and never when incomplete."""

import json
from pathlib import Path

import h5py
import hydra
import numpy as np
import pytest
import torch
from conftest import store_config
from test_thresholds import sort_threshold

from net2vec.data.concept_store import prepare_concept_store
from net2vec.data.synthetic import generate_synthetic
from net2vec.features import extract
from net2vec.features import store as store_module
from net2vec.features.extract import ProbeImages, normalise
from net2vec.features.store import ActivationStore
from net2vec.run.pipeline import prepare_activation_store

CONF = Path(__file__).resolve().parents[1] / "conf" / "network"


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    base = tmp_path_factory.mktemp("extract")
    concepts = prepare_concept_store(
        generate_synthetic(base / "syn", images=24, size=64, seed=0, progress=False),
        base / "cache",
        progress=False,
    )
    other = prepare_concept_store(
        generate_synthetic(base / "syn2", images=24, size=64, seed=1, progress=False),
        base / "cache",
        progress=False,
    )
    return base, concepts, other


def make_cfg(base, network="synthnet", layer="conv5", **network_override):
    return store_config(
        base / "cache",
        network,
        layer,
        0.01,
        **{"weights": None, "input_size": 64, **network_override},
    )


def direct(cfg, concepts, upto):
    """The network applied by hand (no hooks) to the dataset's preprocessed images."""
    model = hydra.utils.instantiate(cfg.network).build()
    images = ProbeImages(
        concepts.attrs["dataset_root"], concepts.images, int(cfg.network.input_size)
    )
    x = normalise(torch.stack([images[i][1] for i in range(len(images))]))
    with torch.no_grad():
        return upto(model, x).numpy()


def test_synthnet_store_equals_direct_forward_and_sorted_quantile(stores):
    base, concepts, _ = stores
    cfg = make_cfg(base)
    store = prepare_activation_store(cfg, concepts)
    want = direct(cfg, concepts, lambda m, x: m.conv5(m.conv4(m.conv3(m.conv2(m.conv1(x))))))
    rows = np.arange(store.num_images)
    np.testing.assert_allclose(store.activations(rows), want, rtol=1e-5, atol=1e-5)
    assert (store.num_images, store.num_filters, store.map_size) == (24, 128, (4, 4))
    np.testing.assert_array_equal(store.thresholds, sort_threshold(store.activations(rows), 0.01))
    np.testing.assert_array_equal(
        store.thresholded([5, 2, 7]), store.activations([5, 2, 7]) > store.thresholds[:, None, None]
    )
    np.testing.assert_allclose(store.pooled(), want.mean((2, 3)), rtol=1e-5, atol=1e-6)
    attrs = store.attrs
    assert (
        attrs["network"],
        attrs["layer"],
        attrs["module"],
        attrs["input_size"],
        attrs["channels"],
    ) == ("synthnet", "conv5", "conv5", 64, 128)
    assert attrs["stride"] == 16 and attrs["concepts"] == concepts.attrs["key"]
    assert store.quantile == 0.01 and attrs["net2vec_complete"]


def test_alexnet_float16_store(stores):
    base, concepts, _ = stores
    cfg = make_cfg(base, "alexnet", "conv2")
    cfg.features.dtype = "float16"
    store = prepare_activation_store(cfg, concepts)
    want = direct(cfg, concepts, lambda m, x: m.features[:5](x))
    with h5py.File(store.path) as handle:
        assert handle["activations"].dtype == np.float16
    acts = store.activations(np.arange(24))
    np.testing.assert_array_equal(acts, want.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(store.thresholds, sort_threshold(acts, 0.01))
    assert store.path.name.startswith("alexnet-conv2-")


def test_reuse_and_never_reuse_other_settings(stores, monkeypatch):
    base, concepts, other = stores
    first = prepare_activation_store(make_cfg(base), concepts)
    calls = []
    real = extract.extract
    monkeypatch.setattr(extract, "extract", lambda *args: (calls.append(args), real(*args)))
    again = prepare_activation_store(make_cfg(base), concepts)
    assert again.path == first.path and calls == []
    paths = {first.path}
    for cfg, store in [
        (make_cfg(base, layer="conv4"), concepts),
        (make_cfg(base, init_seed=1), concepts),
        (make_cfg(base), other),
        (make_cfg(base, layer="conv5.2"), concepts),
    ]:
        built = prepare_activation_store(cfg, store)
        assert built.path not in paths and built.attrs["key"] in built.path.name
        paths.add(built.path)
    assert len(calls) == 4
    seeded = ActivationStore(sorted(p for p in paths if p != first.path)[0])
    assert seeded.num_images == 24


def test_incomplete_or_mismatched_store_is_rebuilt(stores, monkeypatch):
    base, concepts, _ = stores
    cfg = make_cfg(base, layer="conv3")
    path = prepare_activation_store(cfg, concepts).path
    reader = ActivationStore(path)
    good = reader.activations([0, 1])
    reader.close()
    with h5py.File(path, "a") as handle:  # as if the writer died before the last attribute
        handle.attrs["net2vec_complete"] = False
        handle["activations"][0] = 0
    with pytest.raises(ValueError, match="incomplete"):
        ActivationStore(path)
    rebuilt = prepare_activation_store(cfg, concepts)
    np.testing.assert_array_equal(rebuilt.activations([0, 1]), good)
    rebuilt.close()
    with h5py.File(path, "a") as handle:  # a file of other inputs under this name
        record = json.loads(handle.attrs["net2vec_record"])
        handle.attrs["net2vec_record"] = json.dumps({**record, "key": "something-else"})
        handle["activations"][0] = 0
    again = prepare_activation_store(cfg, concepts)
    assert again.attrs["key"] in path.name
    np.testing.assert_array_equal(again.activations([0, 1]), good)


def test_interrupted_write_leaves_nothing_trusted(stores, monkeypatch):
    base, concepts, _ = stores
    cfg = make_cfg(base, layer="conv2")

    def broken(self, start, acts):
        if start > 0:
            raise RuntimeError("killed mid-way")
        real_add(self, start, acts)

    real_add = store_module.StoreBuilder.add
    monkeypatch.setattr(store_module.StoreBuilder, "add", broken)
    with pytest.raises(RuntimeError, match="killed"):
        prepare_activation_store(cfg, concepts)
    assert not list((base / "cache" / "activations").glob("synthnet-conv2-*.h5*[!k]"))
    monkeypatch.setattr(store_module.StoreBuilder, "add", real_add)
    assert prepare_activation_store(cfg, concepts).num_images == 24
