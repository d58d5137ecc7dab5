"""The SynthNet architecture and its checkpoint files (.safetensors, or a torch dict read with
weights_only)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from net2vec.features.hooks import NetworkError
from net2vec.features.networks import load_state_file

log = logging.getLogger(__name__)

INPUT_SIZE = 128
WIDTHS = (16, 32, 64, 128, 128)
STRIDES = (2, 2, 2, 2, 1)
EPOCHS = 12
DENSE_WEIGHT = 1.0  # weight of the per-location (segmentation) loss against the image-level ones
VERSION = 3  # in the cached checkpoint's name: bump when the architecture or training changes
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU())


class SynthNet(nn.Module):
    """conv1 … conv5 (8×8 at 128 px input) + scene (softmax) and concept-presence (sigmoid) heads."""

    def __init__(
        self,
        num_scenes: int = 16,
        num_labels: int = 32,
        widths: tuple = WIDTHS,
        num_dense: int = 1,
    ) -> None:
        super().__init__()
        w = [3] + list(widths)
        for i, stride in enumerate(STRIDES):
            setattr(self, f"conv{i + 1}", _block(w[i], w[i + 1], stride))
        self.scene = nn.Linear(w[5], max(num_scenes, 1))
        self.presence = nn.Linear(w[5], max(num_labels, 1))
        self.dense = nn.Conv2d(w[5], max(num_dense, 1), 1)
        self.config = {
            "num_scenes": num_scenes,
            "num_labels": num_labels,
            "widths": w[1:],
            "num_dense": num_dense,
        }

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(scene logits, concept-presence logits, per-location pixel-concept logits (B, D, h, w))."""
        x = self.conv5(self.conv4(self.conv3(self.conv2(self.conv1(x)))))
        pooled = x.mean((2, 3))
        return self.scene(pooled), self.presence(pooled), self.dense(x)


def load_synthnet(path: str | Path) -> SynthNet:
    """SynthNet from a checkpoint written by `train_synthnet` (.safetensors, or a torch file read
    with ``weights_only=True``); a bad file is a one-line NetworkError."""
    path = Path(path)
    if not path.is_file():
        raise NetworkError(
            f"network.weights={str(path)!r}: file not found (weights: auto trains one)"
        )
    config, state = _read_checkpoint(path)
    try:
        model = SynthNet(**config)
        model.load_state_dict(state)
    except (TypeError, RuntimeError):
        raise NetworkError(
            f"{path}: a SynthNet checkpoint of another version; retrain it"
        ) from None
    return model.eval()


def _read_checkpoint(path: Path) -> tuple[dict, dict]:
    """(config, state dict) of a SynthNet checkpoint in either format."""
    try:
        with safe_open(str(path), "pt") as handle:
            config = json.loads((handle.metadata() or {}).get("config", "null"))
        if config is not None:
            return config, load_file(str(path))
    except Exception:  # not a safetensors file: read it as a torch file below
        pass
    state = load_state_file(path)
    if not isinstance(state, dict) or "config" not in state or "state_dict" not in state:
        raise NetworkError(f"{path}: not a SynthNet checkpoint (no config and state_dict)")
    return state["config"], state["state_dict"]


def save_synthnet(model: SynthNet, path: str | Path, meta: dict, safetensors: bool) -> None:
    """Write `model` as .safetensors (config and meta in the metadata) or as a torch dict."""
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if safetensors:
        metadata = {
            "config": json.dumps(model.config),
            "version": str(VERSION),
            "meta": json.dumps(meta),
        }
        save_file(state, str(path), metadata=metadata)
    else:
        payload = {"config": model.config, "state_dict": state, "version": VERSION, "meta": meta}
        torch.save(payload, path)
