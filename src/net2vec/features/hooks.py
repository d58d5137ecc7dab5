"""Running a network up to its layers: `LayerExtractor`, and `NetworkError` for bad settings.

`LayerExtractor` runs a network up to one module (or the last of several) only: forward hooks
clone the modules' outputs and stop the forward pass once all are captured, so later layers are
never computed and later in-place operations cannot touch the captured tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class NetworkError(ValueError):
    """A bad network, weights or layer setting (one line)."""


class _Stop(Exception):
    pass


class LayerExtractor(nn.Module):
    """model(x) up to the module at `path` (a clone of its output), or up to the last reached of
    several modules (`path` a list: a dict path -> clone of each output, from one forward pass)."""

    def __init__(self, model: nn.Module, path: str | Sequence[str]) -> None:
        super().__init__()
        self.model, self.path = model, path
        self.paths = [path] if isinstance(path, str) else list(dict.fromkeys(path))
        modules = dict(model.named_modules())
        for name in self.paths:
            if name not in modules:
                raise NetworkError(f"layer {name!r}: no such module in {type(model).__name__}")
        self.targets = [modules[name] for name in self.paths]

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        captured: dict[str, torch.Tensor] = {}

        def hook_for(name: str):
            def hook(module, inputs, output):
                captured.setdefault(name, output.detach().clone())
                if len(captured) == len(self.paths):
                    raise _Stop

            return hook

        handles = [m.register_forward_hook(hook_for(n)) for n, m in zip(self.paths, self.targets)]
        try:
            self.model(x)
        except _Stop:
            pass
        finally:
            for handle in handles:
                handle.remove()
        missing = [name for name in self.paths if name not in captured]
        if missing:
            raise NetworkError(f"layer {missing[0]!r} was not reached by the forward pass")
        return captured[self.path] if isinstance(self.path, str) else captured
