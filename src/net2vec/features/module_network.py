"""Any ``nn.Module`` as a network adapter: the model by ``_target_``, the weights from a checkpoint.

``conf/network/module.yaml`` shows the shape of such a config::

    _target_: net2vec.features.module_network.ModuleNetwork
    name: mynet
    model: {_target_: my_package.MyNet, _partial_: true, width: 64}   # built on demand
    weights: /path/to/mynet.pth     # a state dict (weights_only=True; .safetensors too) or null
    input_size: 224                 # or [H, W]
    mean: [0.485, 0.456, 0.406]
    std: [0.229, 0.224, 0.225]
    layers: {conv5: features.12}    # aliases; any dotted module path works as well

``model`` is a callable returning the module (Hydra's ``_partial_: true``) or a module. Token
outputs (B, T, D) lose their first ``prefix_tokens`` tokens (default: the model's
``num_prefix_tokens`` attribute, else 0) and become (B, D, h, w) maps (``features.tokens``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from net2vec.common.cache import fingerprint_json
from net2vec.features.hooks import NetworkError
from net2vec.features.networks import (
    TorchvisionNetwork,
    file_key,
    is_random,
    load_weights,
    read_checkpoint,
)


def describe(model) -> str:
    """The model's class path and arguments (a random init's identity in store keys): a
    ``_partial_`` callable by its positional and keyword arguments, a built module by its
    printed structure (every layer with its sizes)."""
    func = getattr(model, "func", model)
    if isinstance(model, nn.Module):
        func = type(model)
    target = (
        f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', type(func).__name__)}"
    )
    arguments = {"args": getattr(model, "args", ()), "kwargs": getattr(model, "keywords", {})}
    if isinstance(model, nn.Module):
        arguments = {"structure": repr(model)}
    return f"{target}({fingerprint_json(arguments)})"


class ModuleNetwork(TorchvisionNetwork):
    """A user's ``nn.Module`` (built by ``model``), probed at any module or alias."""

    def __init__(
        self,
        name: str,
        model: Callable[[], nn.Module] | nn.Module,
        weights: str | None = None,
        input_size=224,
        layers: dict | None = None,
        channels: dict | None = None,
        last_layer: str | None = None,
        init_seed: int = 0,
        prefix_tokens: int | None = None,
        layout: str = "auto",
        mean=None,
        std=None,
    ) -> None:
        if not callable(model):
            raise NetworkError(f"network.model={model!r}: expected a _target_ of an nn.Module")
        super().__init__(
            name, describe(model), weights, input_size, layers, channels, last_layer,
            init_seed, None, prefix_tokens, layout, mean, std,
        )  # fmt: skip
        self.model = model

    def architecture(self, weights_given: bool, num_classes: int | None = None) -> nn.Module:
        """The module as ``model`` builds it."""
        model = self.model if isinstance(self.model, nn.Module) else self.model()
        if not isinstance(model, nn.Module):
            raise NetworkError(f"network.model built a {type(model).__name__}, not an nn.Module")
        if self.configured_prefix is None:
            self.prefix_tokens = int(getattr(model, "num_prefix_tokens", 0) or 0)
        return model

    def build(self, data_root=None, cache_dir=None) -> nn.Module:
        """The module with the checkpoint's weights (or its own seeded init), in eval mode."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.init_seed)
            model = self.architecture(weights_given=not is_random(self.weights))
        if not is_random(self.weights):
            load_weights(model, read_checkpoint(self.weights), str(self.weights))
        return model.eval()

    def weights_key(self, data_root=None, cache_dir=None) -> str:
        """The checkpoint file's identity, or the seeded init of the described model."""
        if is_random(self.weights):
            return f"random(init_seed={self.init_seed}, {self.arch})"
        return file_key(self.weights)
