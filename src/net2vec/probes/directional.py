"""Class scores at a layer: directional derivatives along many vectors, and ablation along them.

:class:`ClassOutput` runs a network with a forward hook on one module: it returns the class
logits (the network's output, or its first output when it returns several, as SynthNet's scene
head) together with the module's output, and can replace that output (an ablation). A network
whose output is not (B, classes) has no class scores: a one-line ``NetworkError``.

Directional derivatives (docs/tcav.md): for unit vectors ŵ_d (K,) in the layer's filter space,

    S_{d,k}(x) = Σ_{h,w} ∇_a logit_k(x)[:, h, w] · ŵ_d = (Σ_{h,w} ∇_a logit_k(x)) · ŵ_d,

so one backward pass per image batch and class set gives a (n_sets, B, K, H, W) gradient whose
spatial sums times the (K, D) matrix of every vector give all D directional derivatives at once
(``torch.autograd.grad`` with ``is_grads_batched``: the class sets are vmapped, not looped).

Ablation along ŵ: a ↦ a − (⟨a, ŵ⟩ − m)·ŵ at every location, m = 0 (project out) or m = the
concept-absent mean of ⟨a, ŵ⟩ (clamp). The D edited copies of a batch's layer output go through
the rest of the network as one batch of D·B (the layers before the hooked one run once).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from net2vec.features.hooks import NetworkError


class ClassOutput(nn.Module):
    """``model`` with a hook on ``module_path``: forward(x, edit) -> (logits (B', n), layer output)."""

    def __init__(self, model: nn.Module, module_path: str, to_maps: Callable | None = None) -> None:
        super().__init__()
        modules = dict(model.named_modules())
        if module_path not in modules:
            raise NetworkError(f"layer {module_path!r}: no such module in {type(model).__name__}")
        self.model, self.module, self.path = model, modules[module_path], module_path
        self.to_maps = to_maps or (lambda output: output)

    def forward(self, x: torch.Tensor, edit: Callable | None = None, leaf: bool = False):
        """``edit``: replaces the layer's output; ``leaf``: the output becomes a leaf that
        requires grad (backward passes then stop at the layer)."""
        captured = {}

        def hook(module, inputs, output):
            if not isinstance(output, torch.Tensor):
                raise NetworkError(
                    f"layer {self.path!r} returns {type(output).__name__}, not a tensor"
                )
            if leaf:
                output = output.detach().requires_grad_(True)
            captured["output"] = output
            return edit(output) if edit is not None else output if leaf else None

        handle = self.module.register_forward_hook(hook)
        try:
            output = self.model(x)
        finally:
            handle.remove()
        if "output" not in captured:
            raise NetworkError(f"layer {self.path!r} was not reached by the forward pass")
        return class_logits(output), captured["output"]


def class_logits(output) -> torch.Tensor:
    """The network's class scores: its output, or its first output; (B, n) or a one-line error."""
    logits = output[0] if isinstance(output, (tuple, list)) else output
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise NetworkError(
            f"the network's output {shape} is not (batch, classes) class scores: task=tcav needs "
            "a classifier (torchvision/timm classifiers, synthnet's scene head)"
        )
    return logits


def summed_gradients(net: ClassOutput, x: torch.Tensor, targets_of: Callable) -> tuple:
    """Σ_{h,w} ∇_a logit_{t[s, i]}(x_i) of every class set: (n_sets, B, K), and the logits (B, n).

    ``targets_of(logits)`` returns the class sets: a list of (n, B) long tensors t (the class of
    each image in each of n sets); one forward pass, and one backward pass per list entry
    (vmapped over its n one-hot output gradients)."""
    with torch.enable_grad():
        logits, output = net(x, leaf=True)
        chunks, sums = targets_of(logits.detach()), []
        for i, targets in enumerate(chunks):
            one_hot = torch.zeros(len(targets), *logits.shape, dtype=logits.dtype, device=x.device)
            one_hot.scatter_(2, targets[:, :, None].to(x.device), 1.0)
            retain = i < len(chunks) - 1
            if len(targets) > 1:
                (grad,) = torch.autograd.grad(
                    logits, output, one_hot, retain_graph=retain, is_grads_batched=True
                )
            else:
                grad = torch.autograd.grad(logits, output, one_hot[0], retain_graph=retain)[0][None]
            maps = net.to_maps(grad.reshape(-1, *output.shape[1:]))  # (n·B, K, H, W)
            sums.append(maps.view(len(targets), len(x), *maps.shape[1:]).sum((3, 4)))
    return torch.cat(sums), logits.detach()


def directional_derivatives(gradients: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """(n_sets, B, D) = spatially summed gradients (n_sets, B, K) @ unit vectors (K, D)."""
    return gradients.double() @ vectors.double()


def ablation_edit(vectors: torch.Tensor, offsets: torch.Tensor) -> Callable:
    """An edit a (B, K, H, W) -> (D·B, K, H, W): a − (⟨a, ŵ_d⟩ − m_d)·ŵ_d for each of the D
    unit vectors (D, K) and offsets m (D,) (0: project out; the absent mean: clamp)."""

    def edit(output: torch.Tensor) -> torch.Tensor:
        if output.dim() != 4:
            raise NetworkError(
                f"ablation needs a (B, K, H, W) layer output, got {tuple(output.shape)}; "
                "set task.ablation=false for this layer"
            )
        w = vectors.to(output)
        along = torch.einsum("bkhw,dk->dbhw", output, w) - offsets.to(output)[:, None, None, None]
        edited = output[None] - along[:, :, None] * w[:, None, :, None, None]
        return edited.flatten(0, 1)

    return edit


@torch.no_grad()
def ablated_probabilities(
    net: ClassOutput, x: torch.Tensor, vectors: torch.Tensor, offsets: torch.Tensor
) -> torch.Tensor:
    """(D, B, n) class probabilities with each of the D directions ablated (one forward pass)."""
    logits, _ = net(x, ablation_edit(vectors, offsets))
    return logits.softmax(1).view(len(vectors), len(x), -1)
