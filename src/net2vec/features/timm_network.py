"""timm networks: any timm architecture as a network adapter (``network=timm network.arch=NAME``).

``weights``: ``DEFAULT`` (or ``pretrained``) = timm's own pretrained weights (Hugging Face hub or
URL, cached; offline, a one-line error says where to put the file), a local checkpoint path
(loaded by timm with ``weights_only=True`` and the model's own key conversion, so original
DINO/DINOv2 files load too; ``.safetensors`` too), or ``null`` = random init seeded by
``init_seed``. Input size, mean and std come from timm's ``pretrained_cfg`` unless given; an
``input_size`` other than the model's is passed to models that take ``img_size`` (ViTs resample
their position embeddings). Token outputs are reshaped by ``features.tokens`` with the model's
``num_prefix_tokens`` (class and register tokens).
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from net2vec.features.hooks import NetworkError
from net2vec.features.networks import TorchvisionNetwork, file_key, is_random
from net2vec.features.tokens import image_hw

PRETRAINED = ("default", "pretrained")


def pretrained_cfg(arch: str) -> dict:
    """timm's pretrained config of `arch` (``name`` or ``name.tag``), {} when it has none."""
    try:
        cfg = timm.models.get_pretrained_cfg(arch)
    except (RuntimeError, ValueError, KeyError):
        cfg = None
    return cfg.to_dict() if cfg is not None else {}


class TimmNetwork(TorchvisionNetwork):
    """A timm model, probed at any module (dotted path) or alias of ``layers``."""

    def __init__(
        self,
        name: str,
        arch: str,
        weights: str | None = "DEFAULT",
        input_size=None,
        layers: dict | None = None,
        channels: dict | None = None,
        last_layer: str | None = None,
        init_seed: int = 0,
        model_kwargs: dict | None = None,
        prefix_tokens: int | None = None,
        layout: str = "auto",
        mean=None,
        std=None,
    ) -> None:
        if not timm.is_model(str(arch).split(".")[0]):
            raise NetworkError(f"network.arch={arch!r}: not a timm model (see timm.list_models())")
        cfg = pretrained_cfg(str(arch))
        size = input_size if input_size is not None else cfg.get("input_size", (3, 224, 224))[1:]
        height, width = image_hw(size)
        super().__init__(
            name, arch, weights, height if height == width else [height, width], layers,
            channels, last_layer, init_seed, model_kwargs, prefix_tokens, layout,
        )  # fmt: skip
        self.native_hw = image_hw(cfg.get("input_size", (3, height, width))[1:])
        self.mean = tuple(mean if mean is not None else cfg.get("mean", self.mean))
        self.std = tuple(std if std is not None else cfg.get("std", self.std))

    def create(self, **kwargs) -> nn.Module:
        """timm.create_model with the configured kwargs (and img_size when the input differs)."""
        kwargs = {**self.builder_kwargs, **kwargs}
        if image_hw(self.input_size) != self.native_hw and "img_size" not in kwargs:
            try:
                return timm.create_model(self.arch, img_size=image_hw(self.input_size), **kwargs)
            except TypeError:  # a model without img_size (CNNs take any input size)
                pass
        return timm.create_model(self.arch, **kwargs)

    def architecture(self, weights_given: bool, num_classes: int | None = None) -> nn.Module:
        """The untrained model (timm's init)."""
        model = self.create(pretrained=False)
        self.set_prefix_tokens(model)
        return model

    def build(self, data_root=None, cache_dir=None) -> nn.Module:
        """The model with its weights, in eval mode."""
        if is_random(self.weights):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.init_seed)
                return self.architecture(weights_given=False).eval()
        if str(self.weights).lower() in PRETRAINED:
            try:
                model = self.create(pretrained=True)
            except Exception as error:  # offline, no weights, HTTP error: one line
                reason = (str(error).splitlines() or [type(error).__name__])[0]
                raise NetworkError(
                    f"cannot get timm's pretrained weights of {self.arch} ({reason}): copy them "
                    f"into the Hugging Face cache (HF_HUB_CACHE) or pass network.weights=PATH"
                ) from None
        else:
            path = Path(str(self.weights)).expanduser()
            if not path.is_file():
                raise NetworkError(f"network.weights={str(path)!r}: file not found")
            try:
                model = self.create(pretrained=True, pretrained_cfg_overlay={"file": str(path)})
            except Exception as error:  # wrong keys or shapes, pickled code, not a checkpoint
                reason = " ".join(str(error).split())[:300] or type(error).__name__
                raise NetworkError(
                    f"{path}: does not fit timm model {self.arch} ({reason})"
                ) from None
        self.set_prefix_tokens(model)
        return model.eval()

    def set_prefix_tokens(self, model: nn.Module) -> None:
        """Class/register tokens to drop: the config's value, else the model's own."""
        if self.configured_prefix is None:
            self.prefix_tokens = int(getattr(model, "num_prefix_tokens", 0) or 0)

    def weights_key(self, data_root=None, cache_dir=None) -> str:
        """What identifies the weights in the activation store key."""
        if is_random(self.weights):
            return f"random(init_seed={self.init_seed}, timm={timm.__version__})"
        if str(self.weights).lower() in PRETRAINED:
            tag = pretrained_cfg(self.arch).get("tag") or ""
            return f"timm-pretrained:{self.arch}.{tag}:{timm.__version__}"
        return file_key(self.weights)
