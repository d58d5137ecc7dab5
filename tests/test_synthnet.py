"""SynthNet: architecture, reproducible training, cached `weights: auto`, and (slow) its filters
detect concepts clearly better than a randomly initialised SynthNet."""
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from net2vec.data.concept_store import prepare_concept_store
from net2vec.data.synthetic import generate_synthetic
from net2vec.features import synthnet
from net2vec.features.extract import prepare_activation_store
from net2vec.features.networks import LayerExtractor
from net2vec.features.synthnet import SynthNet, ensure_synthnet, load_synthnet, train_synthnet

CONF = Path(__file__).resolve().parents[1] / "conf" / "network"


def test_architecture():
    model = SynthNet(5, 7).eval()
    x = torch.randn(2, 3, 128, 128)
    assert LayerExtractor(model, "conv5")(x).shape == (2, 128, 8, 8)
    assert all(isinstance(getattr(model, f"conv{i}")[-1], torch.nn.ReLU) for i in range(1, 6))
    scene, objects = model(x)
    assert scene.shape == (2, 5) and objects.shape == (2, 7)


def test_training_is_reproducible_and_cached(tmp_path, monkeypatch):
    root = generate_synthetic(tmp_path / "syn", images=24, size=64, seed=0, progress=False)
    a = load_synthnet(train_synthnet(root, tmp_path / "a.pt", epochs=1, seed=0, cache_dir=tmp_path / "cache"))
    b = load_synthnet(train_synthnet(root, tmp_path / "b.pt", epochs=1, seed=0, cache_dir=tmp_path / "cache"))
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=name)
    assert not torch.equal(a.conv1[0].weight, SynthNet().conv1[0].weight)
    first = ensure_synthnet(root, tmp_path / "cache", seed=0, epochs=1)
    monkeypatch.setattr(synthnet, "train_synthnet", lambda *args: pytest.fail("retrained"))
    assert ensure_synthnet(root, tmp_path / "cache", seed=0, epochs=1) == first
    # network=synthnet, weights: auto -> the cached checkpoint
    concepts = prepare_concept_store(root, tmp_path / "cache", progress=False)
    net = OmegaConf.merge(OmegaConf.load(CONF / "synthnet.yaml"), {"epochs": 1, "input_size": 64})
    cfg = OmegaConf.create({"network": net, "layer": "conv5", "paths": {"cache_dir": str(tmp_path / "cache")},
                            "features": {"dtype": "float32", "progress": False}, "probe": {"quantile": 0.01},
                            "trainer": {"accelerator": "cpu"}})
    store = prepare_activation_store(cfg, concepts)
    assert store.attrs["weights"] == f"auto:{first.name}" and store.map_size == (4, 4)


def test_cli(tmp_path):
    root = generate_synthetic(tmp_path / "syn", images=12, size=64, seed=1, progress=False)
    assert synthnet.main(["--data", str(root), "--out", str(tmp_path / "s.pt"), "--epochs", "1"]) == 0
    assert isinstance(load_synthnet(tmp_path / "s.pt"), SynthNet)


def best_filter_iou(store, concepts, quantile=0.02) -> np.ndarray:
    """Per pixel-level concept (≥ 5 val pairs): best single-filter set IoU on val, brute force."""
    val = np.flatnonzero(concepts.split == 1)
    acts = store.activations(val)
    flat = acts.transpose(1, 0, 2, 3).reshape(acts.shape[1], -1)
    thresholds = -np.sort(-flat, axis=1)[:, int(np.ceil(quantile * flat.shape[1]))]
    position = np.full(concepts.num_images, -1)
    position[val] = np.arange(len(val))
    scores = []
    for c in np.flatnonzero(concepts.pixel_level):
        pairs = np.flatnonzero((concepts.pair_concept == c) & (concepts.split[concepts.pair_image] == 1))
        if len(pairs) < 5:
            continue
        masks = concepts.masks(pairs)
        factor = masks.shape[1] // acts.shape[2]
        maps = acts[position[concepts.pair_image[pairs]]] > thresholds[:, None, None]
        maps = maps.repeat(factor, axis=2).repeat(factor, axis=3)   # nearest upsampling to mask size
        inter = (maps & masks[:, None]).sum((0, 2, 3))
        union = (maps | masks[:, None]).sum((0, 2, 3))
        scores.append((inter / np.maximum(union, 1)).max())
    return np.array(scores)


@pytest.mark.slow
def test_trained_filters_beat_random_init(tmp_path):
    root = generate_synthetic(tmp_path / "syn", images=600, size=128, seed=0, progress=False)
    concepts = prepare_concept_store(root, tmp_path / "cache", progress=False)
    base = {"layer": "conv5", "paths": {"cache_dir": str(tmp_path / "cache")}, "probe": {"quantile": 0.02},
            "features": {"dtype": "float32", "progress": False}, "trainer": {"accelerator": "cpu"}}
    scores = {}
    for weights in ("auto", None):
        net = OmegaConf.merge(OmegaConf.load(CONF / "synthnet.yaml"), {"weights": weights, "epochs": 4})
        store = prepare_activation_store(OmegaConf.create({**base, "network": net}), concepts)
        scores[weights] = best_filter_iou(store, concepts)
    trained, random = scores["auto"].mean(), scores[None].mean()
    print(f"mean best-filter val IoU: trained {trained:.3f}, random init {random:.3f} over {len(scores[None])} concepts")
    assert trained > random + 0.05
