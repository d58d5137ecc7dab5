"""Running a network up to one layer: `LayerExtractor`, and `NetworkError` for bad settings.

`LayerExtractor` runs a network up to one module only: a forward hook clones that module's
output and stops the forward pass, so later layers are never computed and later in-place
operations cannot touch the captured tensor.
"""

from __future__ import annotations

import torch
from torch import nn


class NetworkError(ValueError):
    """A bad network, weights or layer setting (one line)."""


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
