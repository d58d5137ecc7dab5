"""Transformers and other model zoos: ViT tokens as maps, timm and user-module adapters, the
layers listing, and end-to-end runs with random weights (tiny models, small inputs)."""

from __future__ import annotations

import csv
import hashlib
from functools import partial

import h5py
import hydra
import numpy as np
import pytest
import timm
import torch
import torchvision
from conftest import compose_config, group_config
from token_fixtures import DIRECTION, RedTokens

from net2vec.features.hooks import LayerExtractor, NetworkError
from net2vec.features.module_network import ModuleNetwork
from net2vec.features.timm_network import TimmNetwork
from net2vec.features.tokens import spatial_maps
from net2vec.layers import layer_table
from net2vec.layers import main as layers_main
from net2vec.run.pipeline import train

TINY_VIT = {"depth": 2}  # timm vit_tiny_patch16_224 with two blocks


def test_tokens_become_row_major_maps_without_prefix_tokens():
    b, prefix, h, w, d = 2, 3, 4, 6, 5
    grid = torch.randn(b, d, h, w)
    tokens = torch.cat([torch.randn(b, prefix, d), grid.flatten(2).transpose(1, 2)], 1)
    torch.testing.assert_close(spatial_maps(tokens, (64, 96), prefix), grid)
    assert spatial_maps(tokens[:, prefix:], (96, 64), 0).shape == (b, d, 6, 4)  # portrait input
    with pytest.raises(NetworkError, match="prefix_tokens"):
        spatial_maps(tokens, (64, 96), 0)  # 27 tokens: no 2:3 grid
    nhwc = grid.permute(0, 2, 3, 1)
    torch.testing.assert_close(spatial_maps(nhwc, (64, 96), layout="nhwc"), grid)


def test_vit_b_16_aliases_resolve_to_768_channel_14x14_maps():
    cfg = group_config("network", "vit_b_16")
    network = hydra.utils.instantiate(cfg)
    with torch.device("meta"):
        model = network.architecture(weights_given=True)
    assert list(cfg.layers) == [f"block{i}" for i in range(12)]
    for alias in cfg.layers:
        path = network.resolve_layer(alias)
        out = LayerExtractor(model, path)(torch.empty(1, 3, 224, 224, device="meta"))
        assert network.to_maps(out).shape == (1, cfg.channels[alias], 14, 14)


def test_torchvision_vit_maps_equal_the_patch_tokens():
    """A small torchvision ViT (by _target_, class token dropped): maps = reshaped block output."""
    factory = partial(torchvision.models.VisionTransformer, image_size=32, patch_size=8,
                      num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32)  # fmt: skip
    network = ModuleNetwork("tiny", factory, input_size=32, prefix_tokens=1)
    model = network.build()
    x = torch.randn(2, 3, 32, 32)
    maps = network.to_maps(LayerExtractor(model, "encoder.layers.encoder_layer_1")(x))
    with torch.no_grad():
        seq = torch.cat([model.class_token.expand(2, -1, -1), model._process_input(x)], 1)
        seq = model.encoder.layers(model.encoder.dropout(seq + model.encoder.pos_embedding))
    torch.testing.assert_close(maps, seq[:, 1:].transpose(1, 2).reshape(2, 16, 4, 4))
    assert network.weights_key() != ModuleNetwork("t", partial(factory, num_layers=3)).weights_key()


def test_timm_vit_non_square_with_register_tokens():
    network = TimmNetwork("vit", "vit_tiny_patch16_224", weights=None, input_size=[32, 48],
                          model_kwargs={**TINY_VIT, "reg_tokens": 4})  # fmt: skip
    model = network.build()
    assert network.prefix_tokens == 5 and network.mean == (0.5, 0.5, 0.5)  # timm's pretrained_cfg
    x = torch.randn(2, 3, 32, 48)
    maps = network.to_maps(LayerExtractor(model, network.resolve_layer("blocks.1"))(x))
    with torch.no_grad():
        tokens = model.blocks(model.norm_pre(model._pos_embed(model.patch_embed(x))))
    torch.testing.assert_close(maps, tokens[:, 5:].transpose(1, 2).reshape(2, 192, 2, 3))
    again = TimmNetwork("vit", "vit_tiny_patch16_224", weights=None, input_size=[32, 48],
                        model_kwargs={**TINY_VIT, "reg_tokens": 4}).build()  # fmt: skip
    torch.testing.assert_close(again.blocks[0].attn.qkv.weight, model.blocks[0].attn.qkv.weight)


def test_timm_checkpoint_loads_and_bad_ones_are_one_line(tmp_path):
    source = timm.create_model("vit_tiny_patch16_224", **TINY_VIT, img_size=32)
    torch.save(source.state_dict(), tmp_path / "vit.pth")
    network = TimmNetwork("vit", "vit_tiny_patch16_224", weights=str(tmp_path / "vit.pth"),
                          input_size=32, model_kwargs=TINY_VIT)  # fmt: skip
    torch.testing.assert_close(
        network.build().blocks[1].mlp.fc1.weight, source.blocks[1].mlp.fc1.weight
    )
    digest = hashlib.sha256((tmp_path / "vit.pth").read_bytes()).hexdigest()
    assert network.weights_key() == f"sha256:{digest}"  # the file's content keys the stores
    torch.save({"blocks.0.norm1.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    for weights, fragment in (("bad.pth", "does not fit"), ("none.pth", "file not found")):
        bad = TimmNetwork("v", "vit_tiny_patch16_224", weights=str(tmp_path / weights),
                          input_size=32, model_kwargs=TINY_VIT)  # fmt: skip
        with pytest.raises(NetworkError, match=fragment) as error:
            bad.build()
        assert "\n" not in str(error.value)
    with pytest.raises(NetworkError, match="not a timm model"):
        TimmNetwork("x", "no_such_model")


def test_timm_pretrained_offline_is_one_line(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'\nmore text")

    monkeypatch.setattr(timm.models._builder, "load_state_dict_from_hf", offline)
    monkeypatch.setattr(timm.models._builder, "load_state_dict_from_url", offline)
    network = TimmNetwork("vit", "vit_tiny_patch16_224", weights="DEFAULT", model_kwargs=TINY_VIT)
    with pytest.raises(NetworkError) as error:
        network.build()
    message = str(error.value)
    assert "\n" not in message and "network.weights=PATH" in message and "huggingface" in message


def test_layers_listing_shows_aliases_shapes_and_strides(capsys):
    network = TimmNetwork("vit", "vit_tiny_patch16_224", weights=None, input_size=[32, 48],
                          model_kwargs=TINY_VIT, layers={"last": "blocks.1"})  # fmt: skip
    rows = {row["layer"]: row for row in layer_table(network)}
    assert rows["blocks.1"]["alias"] == "last" and rows["blocks.1"]["output"] == (1, 7, 192)
    assert rows["blocks.1"]["channels"] == 192 and rows["blocks.1"]["map"] == "2x3"
    assert rows["blocks.1"]["stride"] == 16 and "blocks.0.mlp.fc1" in rows
    assert "pos_drop" not in rows  # pass-through modules are left out
    assert layers_main(["network=alexnet"]) == 0
    out = capsys.readouterr().out
    assert "features.11  conv5" in out and "1x256x13x13" in out


@pytest.mark.slow
def test_planted_token_direction_is_recovered_through_train(tmp_path, shared_cache):
    """Patch tokens carry DIRECTION x (fraction of red pixels) behind two huge prefix tokens, at a
    non-square input: a wrong prefix, grid or reshape order would lose the red concept."""
    cfg = compose_config(
        tmp_path, "network=module", "data=synthetic", "network.model._target_=token_fixtures.RedTokens",
        "network.input_size=[64,96]", "layer=blocks", "probe.subsets=[2]", "probe.quantile=0.1", "task.epochs=10", "task.optimizer.lr=0.01",
        f"paths.data_dir={shared_cache}/data", cache=tmp_path / "cache",
    )  # fmt: skip
    train(cfg)
    with open(tmp_path / "run" / "results.csv") as handle:
        rows = {row["concept"]: row for row in csv.DictReader(handle)}
    with h5py.File(tmp_path / "run" / "embeddings.h5") as h5:
        red = list(h5["concepts"].asstr()[()]).index("red")
        weights, kept = h5["weights"][red], set(h5["subsets/F2/filters"][red].tolist())
    cosine = weights @ np.array(DIRECTION) / np.linalg.norm(weights)
    assert int(rows["red"]["single_filter"]) in (2, 3) and kept == {2, 3}
    assert float(rows["red"]["single_iou_train"]) > 0.3 and cosine > 0.9, (rows["red"], cosine)
    assert RedTokens.num_prefix_tokens == 2


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides,channels",
    [
        (["network=vit_b_16", "network.input_size=64", "+network.builder_kwargs.image_size=64",
          "layer=block11", "task=seg"], 768),
        (["network=timm", "network.arch=vit_tiny_patch16_224", "network.input_size=64",
          "+network.model_kwargs.depth=2", "layer=blocks.1", "task=cls"], 192),
    ],
)  # fmt: skip
def test_vit_runs_end_to_end_with_random_weights(tmp_path, shared_cache, overrides, channels):
    cfg = compose_config(
        tmp_path, *overrides, "network.weights=null", "data=synthetic", "probe.subsets=[2]",
        f"paths.data_dir={shared_cache}/data", cache=tmp_path / "cache",
    )  # fmt: skip
    summary = train(cfg)
    with h5py.File(summary["stores"]["activation_store"]) as store:
        assert store["activations"].shape[1:] == (channels, 4, 4)
    with open(tmp_path / "run" / "results.csv") as handle:
        assert len(list(csv.DictReader(handle))) > 10


class _Payload:
    """Unpickling this would create the file named by `path` (code in a checkpoint)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_user_module_checkpoint_loads_safely(tmp_path):
    source = torchvision.models.resnet18(num_classes=7)
    torch.save({"state_dict": source.state_dict(), "epoch": 2}, tmp_path / "ok.pth")
    factory = partial(torchvision.models.resnet18, num_classes=7)
    model = ModuleNetwork("r", factory, weights=str(tmp_path / "ok.pth"), input_size=64).build()
    torch.testing.assert_close(model.layer2[0].conv1.weight, source.layer2[0].conv1.weight)
    torch.save({"fc.weight": _Payload(tmp_path / "ran")}, tmp_path / "evil.pth")
    with pytest.raises(NetworkError, match="evil.pth"):
        ModuleNetwork("r", factory, weights=str(tmp_path / "evil.pth")).build()
    assert not (tmp_path / "ran").exists()
