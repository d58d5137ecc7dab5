"""Networks: every alias resolves to a post-ReLU module with the configured channel count;
LayerExtractor stops at the layer and equals a direct forward; weights loading and errors."""

import hydra
import pytest
import torch
import torchvision
from conftest import group_config

from net2vec.features import networks
from net2vec.features.hooks import LayerExtractor, NetworkError

TORCHVISION = ["alexnet", "vgg16", "googlenet", "resnet18", "resnet50"]


def net_cfg(name: str, **override):
    return group_config("network", name, **override)


def network(name: str, **override):
    """The network adapter that conf/network/<name>.yaml builds (by its _target_)."""
    return hydra.utils.instantiate(net_cfg(name, **override))


def build_network(cfg):
    return hydra.utils.instantiate(cfg).build()


def resolve_layer(cfg, layer: str, model=None) -> str:
    return hydra.utils.instantiate(cfg).resolve_layer(layer, model)


@pytest.mark.parametrize("name", TORCHVISION + ["synthnet"])
def test_every_alias_resolves_with_expected_channels(name):
    cfg = net_cfg(name)
    with torch.device("meta"):  # the real module graph, shapes only: no weights, no compute
        model = hydra.utils.instantiate(cfg).architecture(weights_given=True)
    size = int(cfg.input_size)
    assert set(cfg.layers) == set(cfg.channels)
    for alias, path in cfg.layers.items():
        assert resolve_layer(cfg, alias) == path
        out = LayerExtractor(model, path)(torch.empty(1, 3, size, size, device="meta"))
        assert out.shape[1] == cfg.channels[alias], (name, alias)
    assert (
        resolve_layer(cfg, cfg.layers[next(iter(cfg.layers))]) == cfg.layers[next(iter(cfg.layers))]
    )


def test_alexnet_small_input_equals_direct_forward_and_stops_at_layer():
    cfg = net_cfg("alexnet", weights=None)
    model = build_network(cfg)
    assert not model.training
    x = torch.randn(2, 3, 64, 64)
    later = []
    model.classifier.register_forward_hook(lambda *args: later.append(1))
    with torch.no_grad():
        for alias, path in cfg.layers.items():
            index = int(path.split(".")[1])
            got = LayerExtractor(model, path)(x)
            torch.testing.assert_close(got, model.features[: index + 1](x), rtol=0, atol=0)
            assert got.min() >= 0 and got.shape[1] == cfg.channels[alias]
        conv = LayerExtractor(model, "features.0")(
            x
        )  # pre-ReLU conv output; next op is ReLU(inplace)
    assert not later
    assert conv.min() < 0
    torch.testing.assert_close(conv, model.features[0](x))


def test_captured_output_is_a_clone():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(inplace=True))
    captured = LayerExtractor(model, "0")(torch.randn(1, 3, 8, 8))
    expected = captured.clone()
    model(torch.randn(1, 3, 8, 8))  # runs conv + in-place ReLU again on new tensors
    captured_again = LayerExtractor(model, "1")(torch.randn(1, 3, 8, 8))
    captured_again.zero_()
    torch.testing.assert_close(captured, expected)
    assert captured.min() < 0  # the in-place ReLU that followed did not touch it


def test_resnet18_random_init_is_seeded_and_layer4_direct():
    a, b = (
        build_network(net_cfg("resnet18", weights=None)),
        build_network(net_cfg("resnet18", weights=None)),
    )
    torch.testing.assert_close(a.conv1.weight, b.conv1.weight)
    c = build_network(net_cfg("resnet18", weights=None, init_seed=1))
    assert not torch.equal(a.conv1.weight, c.conv1.weight)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        direct = a.layer4(a.layer3(a.layer2(a.layer1(a.maxpool(a.relu(a.bn1(a.conv1(x))))))))
        torch.testing.assert_close(LayerExtractor(a, "layer4")(x), direct)


def test_checkpoint_with_state_dict_key_and_module_prefix(tmp_path):
    source = torchvision.models.resnet18(num_classes=365)
    state = {"module." + k: v for k, v in source.state_dict().items()}
    torch.save({"epoch": 3, "state_dict": state}, tmp_path / "places.pth.tar")
    model = build_network(net_cfg("resnet18", weights=str(tmp_path / "places.pth.tar")))
    torch.testing.assert_close(model.conv1.weight, source.conv1.weight)
    assert model.fc.out_features == 365
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(NetworkError, match="does not fit"):
        build_network(net_cfg("resnet18", weights=str(tmp_path / "bad.pth")))
    with pytest.raises(NetworkError, match="file not found"):
        build_network(net_cfg("resnet18", weights=str(tmp_path / "missing.pth")))


def test_default_weights_offline_is_one_line_with_cache_path(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(url, dst, progress=True):
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(NetworkError) as error:
        build_network(net_cfg("alexnet"))
    message = str(error.value)
    assert "\n" not in message and "network.weights=PATH" in message
    assert str(tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth") in message
    with pytest.raises(NetworkError, match="IMAGENET1K_V1"):
        build_network(net_cfg("alexnet", weights="NO_SUCH"))


def test_default_weights_from_cache_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    source = torchvision.models.resnet18()
    member = torchvision.models.ResNet18_Weights.DEFAULT
    path = networks.cached_weights_path(member)
    path.parent.mkdir(parents=True)
    torch.save(source.state_dict(), path)
    model = build_network(net_cfg("resnet18"))
    torch.testing.assert_close(model.layer1[0].conv1.weight, source.layer1[0].conv1.weight)


def test_unknown_layer_is_one_line_listing_aliases_and_modules():
    with pytest.raises(NetworkError) as error:
        resolve_layer(net_cfg("vgg16"), "conv9")
    message = str(error.value)
    assert "\n" not in message and "conv5_3" in message and "features.29" in message
    assert "more)" in message and len(message) < 1500
    assert resolve_layer(net_cfg("vgg16"), "features.30") == "features.30"
