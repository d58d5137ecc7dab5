"""Several layers from one forward pass: one store per layer, each equal to its own single-layer
extraction, the images run through the network once; cached layers are reused, not recomputed."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import store_config

from net2vec.data.concept_store import prepare_concept_store
from net2vec.data.synthetic import generate_synthetic
from net2vec.features.store import ActivationStore
from net2vec.features.synthnet import SynthNetNetwork
from net2vec.run.pipeline import prepare_activation_store

LAYERS = ["conv1", "conv3", "conv5"]
IMAGES, BATCH = 20, 10  # store_config extracts in batches of 10


@pytest.fixture()
def forwards(monkeypatch):
    """Counts forward calls of every model the synthnet adapter builds."""
    calls = []
    build = SynthNetNetwork.build

    def counted(self, *args, **kwargs):
        model = build(self, *args, **kwargs)
        model.register_forward_pre_hook(lambda module, inputs: calls.append(1))
        return model

    monkeypatch.setattr(SynthNetNetwork, "build", counted)
    return calls


def test_layers_of_one_pass_equal_single_layer_stores(tmp_path, forwards):
    root = generate_synthetic(tmp_path / "syn", images=IMAGES, size=64, seed=0, progress=False)
    concepts = prepare_concept_store(root, tmp_path / "concepts", progress=False)
    single = store_config(tmp_path / "one", "synthnet", "conv1", 0.01, weights=None, input_size=64)
    expected = {layer: prepare_activation_store(single, concepts, layer) for layer in LAYERS}
    assert len(forwards) == len(LAYERS) * math.ceil(IMAGES / BATCH)
    forwards.clear()
    cfg = store_config(tmp_path / "all", "synthnet", "conv3", 0.01, weights=None, input_size=64)
    cfg.features.layers = LAYERS
    got = prepare_activation_store(cfg, concepts)
    assert len(forwards) == math.ceil(IMAGES / BATCH)  # one pass over the images for 3 layers
    files = sorted((tmp_path / "all" / "activations").glob("*.h5"))
    assert [f.name for f in files] == sorted(p.path.name for p in expected.values())
    for layer, want in expected.items():
        store = ActivationStore(tmp_path / "all" / "activations" / want.path.name)
        rows = np.arange(IMAGES)
        np.testing.assert_array_equal(store.activations(rows), want.activations(rows))
        np.testing.assert_array_equal(store.thresholds, want.thresholds)
        np.testing.assert_array_equal(store.pooled(), want.pooled())
        for attr in ("layer", "module", "key", "stride", "channels"):
            assert store.attrs[attr] == want.attrs[attr], (layer, attr)
    assert got.attrs["layer"] == "conv3"
    forwards.clear()
    cfg.layer, cfg.features.layers = "conv5", "all"  # conv2, conv4 new: one pass for those two
    prepare_activation_store(cfg, concepts)
    assert len(forwards) == math.ceil(IMAGES / BATCH)
    assert len(list((tmp_path / "all" / "activations").glob("*.h5"))) == 5
    forwards.clear()
    prepare_activation_store(cfg, concepts)  # everything cached: no forward pass
    assert not forwards
