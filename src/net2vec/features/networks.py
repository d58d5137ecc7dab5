"""Networks whose layers are probed: adapters that build a model and name its layers.

A network config (``conf/network/<name>.yaml``) builds an adapter by ``_target_``; the adapter
takes plain values (``name``, ``arch``, ``weights``, ``input_size``, ``layers`` alias -> module path,
``channels``) and offers what extraction needs: ``build()`` (the model in eval mode, weights
loaded), ``weights_key()`` (what identifies the weights in a store key), ``resolve_layer()``,
``module_names()``, the input normalisation ``mean``/``std``, ``to_maps()`` (a layer's output as
(B, K, h, w) maps) and ``activation_store()``. :class:`TorchvisionNetwork` covers every
torchvision classification builder; ``features.synthnet.SynthNetNetwork`` extends it. A new kind
of network is one adapter class with these methods and one yaml file (docs/architecture.md).

``weights``: ``DEFAULT`` or a torchvision weights-enum name (fetched into the torch hub cache),
a checkpoint path (a state dict in a ``.pth``/``.pt`` file read with ``weights_only=True``, or a
``.safetensors`` file), or ``null`` = random init seeded by ``init_seed``. A file that needs
pickled code to load is refused with a one-line error saying how to convert it.
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import re
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from safetensors.torch import load_file
from torch import nn

from net2vec.common.cache import fingerprint_file
from net2vec.features.extract import IMAGENET_MEAN, IMAGENET_STD, extracted_store
from net2vec.features.hooks import NetworkError
from net2vec.features.tokens import image_hw, spatial_maps

log = logging.getLogger(__name__)
HEAD_KEYS = ("fc.weight", "classifier.6.weight", "classifier.weight")  # to infer num_classes
HEADS = ("fc.", "classifier.", "head.", "heads.")  # a checkpoint may lack them (self-supervised)
RANDOM = ("null", "none", "random")


def is_random(weights) -> bool:
    """True when `weights` asks for a random initialisation (null / none / random)."""
    return weights is None or str(weights).lower() in RANDOM


def is_enum_name(weights) -> bool:
    """True for a torchvision weights-enum name (DEFAULT, IMAGENET1K_V1 …) that is not a file."""
    return bool(re.fullmatch(r"[A-Z][A-Z0-9_]*", str(weights))) and not Path(str(weights)).is_file()


def file_key(path: str | Path) -> str:
    """A checkpoint file's identity in store keys: the SHA-256 of its content."""
    path = Path(str(path)).expanduser().resolve()
    if not path.is_file():
        return str(path)
    stat = path.stat()
    return f"sha256:{_file_digest(str(path), stat.st_size, stat.st_mtime_ns)}"


@functools.lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    """Full-content digest, computed once per (path, size, mtime) in a process."""
    return fingerprint_file(path, 64)


class TorchvisionNetwork:
    """A torchvision classification network, probed at its post-ReLU layers (plain config values).

    ``input_size``: N or [H, W]; ``prefix_tokens``: class/register tokens of token outputs
    (ViTs: 1); ``layout``: ``auto`` | ``nchw`` | ``nhwc`` | ``tokens`` (features.tokens)."""

    mean, std = IMAGENET_MEAN, IMAGENET_STD

    def __init__(
        self,
        name: str,
        arch: str,
        weights: str | None = "DEFAULT",
        input_size=224,
        layers: dict | None = None,
        channels: dict | None = None,
        last_layer: str | None = None,
        init_seed: int = 0,
        builder_kwargs: dict | None = None,
        prefix_tokens: int | None = None,
        layout: str = "auto",
        mean=None,
        std=None,
    ) -> None:
        self.name, self.arch, self.weights = str(name), str(arch), weights
        height, width = image_hw(input_size)
        self.input_size = height if height == width else [height, width]
        self.init_seed = int(init_seed)
        self.configured_prefix = prefix_tokens
        self.prefix_tokens, self.layout = int(prefix_tokens or 0), str(layout)
        self.mean = tuple(mean) if mean is not None else self.mean
        self.std = tuple(std) if std is not None else self.std
        self.layers = {str(k): str(v) for k, v in dict(layers or {}).items()}
        self.channels = {str(k): int(v) for k, v in dict(channels or {}).items()}
        self.last_layer = last_layer
        self.builder_kwargs = dict(builder_kwargs or {})

    def architecture(self, weights_given: bool, num_classes: int | None = None) -> nn.Module:
        """The untrained model (torchvision's init only for random weights)."""
        if self.arch not in torchvision.models.list_models():
            raise NetworkError(f"network.arch={self.arch!r}: not a torchvision model builder")
        kwargs = (
            {"aux_logits": False, "init_weights": not weights_given}
            if self.arch in ("googlenet", "inception_v3")
            else {}
        )
        kwargs.update(self.builder_kwargs)
        if num_classes:
            kwargs["num_classes"] = num_classes
        return torchvision.models.get_model(self.arch, weights=None, **kwargs)

    def build(
        self, data_root: str | Path | None = None, cache_dir: str | Path | None = None
    ) -> nn.Module:
        """The network with its weights, in eval mode (``data_root``/``cache_dir``: unused here)."""
        if is_random(self.weights):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.init_seed)
                model = self.architecture(weights_given=False)
        elif is_enum_name(self.weights):
            member = weights_enum(self.arch, str(self.weights))
            path = _fetch(member)
            model = torchvision.models.get_model(
                self.arch, weights=None, **_enum_kwargs(self.arch, member)
            )
            load_weights(model, read_checkpoint(path), str(path))
        else:
            state = read_checkpoint(self.weights)
            num_classes = next((state[k].shape[0] for k in HEAD_KEYS if k in state), None)
            model = self.architecture(weights_given=True, num_classes=num_classes)
            load_weights(model, state, str(self.weights))
        return model.eval()

    def weights_key(
        self, data_root: str | Path | None = None, cache_dir: str | Path | None = None
    ) -> str:
        """What identifies the weights in the activation store key."""
        if is_random(self.weights):
            return f"random(init_seed={self.init_seed})"
        if is_enum_name(self.weights):
            return str(weights_enum(self.arch, str(self.weights)))
        return file_key(self.weights)

    def module_names(self) -> list[str]:
        """Every module path of the network (built on the meta device: no memory, no weights)."""
        with torch.device("meta"):
            model = self.architecture(weights_given=True)
        return [name for name, _ in model.named_modules() if name]

    def resolve_layer(self, layer: str, model: nn.Module | None = None) -> str:
        """Module path of `layer`: an alias of ``layers`` or a raw dotted module path."""
        if str(layer) in self.layers:
            return self.layers[str(layer)]
        names = (
            [n for n, _ in model.named_modules() if n] if model is not None else self.module_names()
        )
        if str(layer) in names:
            return str(layer)
        shown = ", ".join(names[:40]) + (
            f", ... ({len(names) - 40} more)" if len(names) > 40 else ""
        )
        raise NetworkError(
            f"layer={layer!r}: not an alias of network {self.name} "
            f"({', '.join(self.layers) or 'none'}) nor one of its modules ({shown})"
        )

    def to_maps(self, output: torch.Tensor) -> torch.Tensor:
        """A layer's output as (B, K, h, w) maps: a CNN's output already is; ViT tokens (B, T, D)
        lose their prefix tokens and become (B, D, h, w) (features.tokens)."""
        return spatial_maps(output, image_hw(self.input_size), self.prefix_tokens, self.layout)

    def activation_store(
        self,
        concepts,
        layer: str,
        quantile: float,
        cache_dir: str | Path,
        extraction,
        transform=None,
    ):
        """The cached activation store of `layer` on the concept store's images (features.extract)."""
        return extracted_store(self, concepts, layer, quantile, cache_dir, extraction, transform)


def weights_enum(arch: str, name: str):
    """The torchvision weights enum member `name` (DEFAULT or e.g. IMAGENET1K_V1) of `arch`."""
    try:
        enum = torchvision.models.get_model_weights(arch)
    except (ValueError, KeyError):
        raise NetworkError(
            f"network.arch={arch!r} has no torchvision weights; use network.weights=PATH"
        ) from None
    try:
        return enum[name]
    except KeyError:
        names = ", ".join(["DEFAULT"] + [m.name for m in enum])
        raise NetworkError(
            f"network.weights={name!r}: {arch} offers {names}, or a checkpoint path"
        ) from None


def cached_weights_path(weights) -> Path:
    """Where torch.hub keeps the file of a torchvision weights enum member."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def _fetch(weights) -> Path:
    path = cached_weights_path(weights)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(weights.url, str(path), progress=True)
        except Exception as error:  # offline, proxy, HTTP error: one line saying what to do
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise NetworkError(
                f"cannot download {weights.url} ({reason}): place that file at {path}, "
                f"or pass network.weights=PATH"
            ) from None
    return path


CONVERT = (
    'convert it once, from a source you trust, to a plain state dict: python -c "import torch; '
    "m = torch.load('{path}', weights_only=False); "
    "m = m.state_dict() if hasattr(m, 'state_dict') else m.get('state_dict', m); "
    "torch.save(m, '{path}.state_dict.pt')\" and pass that file (or a .safetensors file)"
)


def load_state_file(path: str | Path) -> dict:
    """A .safetensors file, or a torch file read with ``weights_only=True`` (tensors, numbers,
    strings and containers only: a file that needs pickled code is refused, its code never runs)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise NetworkError(f"network.weights={str(path)!r}: file not found")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as error:  # safetensors' own error types
            raise NetworkError(f"{path}: not a readable .safetensors file ({error})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if re.search(r"Unsupported global|GLOBAL |not an allowed global", str(error)):
            raise NetworkError(
                f"{path}: holds pickled objects or code that safe loading refuses; "
                + CONVERT.format(path=path)
            ) from None
        raise NetworkError(f"{path}: not a PyTorch checkpoint (UnpicklingError)") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise NetworkError(f"{path}: not a PyTorch checkpoint ({type(error).__name__})") from None


def read_checkpoint(path: str | Path) -> dict:
    """State dict of a .pth/.pth.tar/.safetensors file: a `state_dict`/`model` entry if present,
    every `module.` (DataParallel wrappers, also inside a path as in Places365's AlexNet) stripped
    (load_state_file: safe loading only)."""
    state = load_state_file(path)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise NetworkError(f"{path}: holds a {type(state).__name__}, not a state dict of tensors")
    return {re.sub(r"(^|\.)module\.", r"\1", k): v for k, v in state.items()}


def load_weights(model: nn.Module, state: dict, source: str) -> None:
    """Load `state` strictly (auxiliary heads aside; a missing classifier head stays random);
    one-line error naming `source`."""
    state = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2.", "AuxLogits."))}
    own = model.state_dict()
    wrong = [k for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        raise NetworkError(f"{source}: does not fit the network (shape of {wrong[:4]} differs)")
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(HEADS)]
    if missing or result.unexpected_keys:
        raise NetworkError(
            f"{source}: does not fit the network (missing {missing[:4]}, "
            f"unexpected {result.unexpected_keys[:4]})"
        )
    if result.missing_keys:  # a backbone-only checkpoint: the classifier head stays random
        log.info(
            "%s: no classifier head (%s ...); it is left at random", source, result.missing_keys[0]
        )


def _enum_kwargs(arch: str, member) -> dict:
    """What torchvision's builder sets when it loads `member` (e.g. GoogLeNet's transform_input)."""
    kwargs = {"num_classes": len(member.meta["categories"])}
    if arch in ("googlenet", "inception_v3"):
        kwargs.update(transform_input=True, aux_logits=False, init_weights=False)
    return kwargs
