"""Networks whose layers are probed: torchvision builders, SynthNet, weights and layer names.

A network config (``conf/network/<name>.yaml``) holds ``name``, ``arch`` (a torchvision builder
name, ``synthnet`` or ``planted``), ``weights`` (``DEFAULT`` or a torchvision weights-enum name,
a checkpoint path, ``null`` = random init seeded by ``init_seed``; SynthNet also ``auto``),
``input_size``, ``layers`` (alias -> module path of a post-ReLU output) and ``channels``.

`LayerExtractor` runs a network up to one module only: a forward hook clones that module's
output and stops the forward pass, so later layers are never computed and later in-place
operations cannot touch the captured tensor.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

log = logging.getLogger(__name__)
HEAD_KEYS = ("fc.weight", "classifier.6.weight", "classifier.weight")   # to infer num_classes


class NetworkError(ValueError):
    """A bad network, weights or layer setting (one line)."""


def _builder_kwargs(arch: str, weights_given: bool) -> dict:
    if arch == "googlenet":   # no auxiliary heads; torchvision's init only for random weights
        return {"aux_logits": False, "init_weights": not weights_given}
    if arch == "inception_v3":
        return {"aux_logits": False, "init_weights": not weights_given}
    return {}


def _build_arch(net_cfg, weights_given: bool, num_classes: int | None = None) -> nn.Module:
    arch = str(net_cfg.arch)
    if arch == "synthnet":
        from net2vec.features.synthnet import SynthNet
        return SynthNet(int(net_cfg.get("num_scenes", 16)), int(net_cfg.get("num_objects", 32)))
    if arch == "planted":
        raise NetworkError("network=planted has no modules: its activation store is built from the concept masks")
    if arch not in torchvision.models.list_models():
        raise NetworkError(f"network.arch={arch!r}: not a torchvision model builder (nor synthnet/planted)")
    kwargs = _builder_kwargs(arch, weights_given)
    kwargs.update(dict(net_cfg.get("builder_kwargs") or {}))
    if num_classes:
        kwargs["num_classes"] = num_classes
    return torchvision.models.get_model(arch, weights=None, **kwargs)


def weights_enum(arch: str, name: str):
    """The torchvision weights enum member `name` (DEFAULT or e.g. IMAGENET1K_V1) of `arch`."""
    try:
        enum = torchvision.models.get_model_weights(arch)
    except (ValueError, KeyError):
        raise NetworkError(f"network.arch={arch!r} has no torchvision weights; use network.weights=PATH") from None
    try:
        return enum[name]
    except KeyError:
        names = ", ".join(["DEFAULT"] + [m.name for m in enum])
        raise NetworkError(f"network.weights={name!r}: {arch} offers {names}, or a checkpoint path") from None


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
            raise NetworkError(f"cannot download {weights.url} ({reason}): place that file at {path}, "
                               f"or pass network.weights=PATH") from None
    return path


def read_checkpoint(path: str | Path) -> dict:
    """State dict of a .pth/.pth.tar file: a `state_dict`/`model` entry if present, `module.` stripped."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise NetworkError(f"network.weights={str(path)!r}: file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise NetworkError(f"{path}: not a PyTorch checkpoint ({type(error).__name__})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if isinstance(state, nn.Module):
        state = state.state_dict()
    if not isinstance(state, dict):
        raise NetworkError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def load_weights(model: nn.Module, state: dict, source: str) -> None:
    """Load `state` strictly (auxiliary-head keys aside); one-line error naming `source`."""
    state = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2.", "AuxLogits."))}
    own = model.state_dict()
    wrong = [k for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        raise NetworkError(f"{source}: does not fit the network (shape of {wrong[:4]} differs)")
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise NetworkError(f"{source}: does not fit the network (missing {result.missing_keys[:4]}, "
                           f"unexpected {result.unexpected_keys[:4]})")


def build_network(net_cfg) -> nn.Module:
    """The network of `net_cfg` with its weights, in eval mode."""
    weights = net_cfg.get("weights")
    arch = str(net_cfg.arch)
    if weights is None or str(weights).lower() in ("null", "none", "random"):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(net_cfg.get("init_seed", 0)))
            model = _build_arch(net_cfg, weights_given=False)
    elif arch == "synthnet":
        from net2vec.features.synthnet import load_synthnet
        model = load_synthnet(weights)
    elif re.fullmatch(r"[A-Z][A-Z0-9_]*", str(weights)) and not Path(str(weights)).is_file():
        member = weights_enum(arch, str(weights))
        path = _fetch(member)
        model = torchvision.models.get_model(arch, weights=None, **_enum_kwargs(arch, member))
        load_weights(model, read_checkpoint(path), str(path))
    else:
        state = read_checkpoint(weights)
        num_classes = next((state[k].shape[0] for k in HEAD_KEYS if k in state), None)
        model = _build_arch(net_cfg, weights_given=True, num_classes=num_classes)
        load_weights(model, state, str(weights))
    return model.eval()


def _enum_kwargs(arch: str, member) -> dict:
    """What torchvision's builder sets when it loads `member` (e.g. GoogLeNet's transform_input)."""
    kwargs = {"num_classes": len(member.meta["categories"])}
    if arch in ("googlenet", "inception_v3"):
        kwargs.update(transform_input=True, aux_logits=False, init_weights=False)
    return kwargs


def module_names(net_cfg) -> list[str]:
    """Every module path of the network (built on the meta device: no memory, no weights)."""
    with torch.device("meta"):
        model = _build_arch(net_cfg, weights_given=True)
    return [name for name, _ in model.named_modules() if name]


def resolve_layer(net_cfg, layer: str, model: nn.Module | None = None) -> str:
    """Module path of `layer`: an alias of ``net_cfg.layers`` or a raw dotted module path."""
    aliases = dict(net_cfg.get("layers") or {})
    if str(layer) in aliases:
        return str(aliases[str(layer)])
    names = [n for n, _ in model.named_modules() if n] if model is not None else module_names(net_cfg)
    if str(layer) in names:
        return str(layer)
    shown = ", ".join(names[:40]) + (f", ... ({len(names) - 40} more)" if len(names) > 40 else "")
    raise NetworkError(f"layer={layer!r}: not an alias of network {net_cfg.name} "
                       f"({', '.join(aliases) or 'none'}) nor one of its modules ({shown})")


class _Stop(Exception):
    pass


class LayerExtractor(nn.Module):
    """model(x) up to the module at `path`; returns a clone of that module's output."""

    def __init__(self, model: nn.Module, path: str) -> None:
        super().__init__()
        self.model, self.path = model, path
        self.module = dict(model.named_modules()).get(path)
        if self.module is None:
            raise NetworkError(f"layer {path!r}: no such module in {type(model).__name__}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []

        def hook(module, inputs, output):
            captured.append(output.detach().clone())
            raise _Stop

        handle = self.module.register_forward_hook(hook)
        try:
            self.model(x)
        except _Stop:
            pass
        finally:
            handle.remove()
        if not captured:
            raise NetworkError(f"layer {self.path!r} was not reached by the forward pass")
        return captured[0]
