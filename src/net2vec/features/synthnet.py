"""SynthNet: a small CNN trained on the synthetic probe set, the default network of `train.py`.

Modules ``conv1`` … ``conv5`` are each ``Sequential(conv 3×3, batch norm, ReLU)``, so each
module's output is the post-ReLU map the probes read (alias ``conv5`` -> module ``conv5``).
conv1-conv4 have stride 2 (16, 32, 64, 128 filters), conv5 stride 1 (128 filters): 8×8 at
128 px input (stride 16). Two heads on the spatially averaged conv5: ``scene`` (softmax over the
dataset's scene concepts) and ``presence`` (multi-label presence of every other concept: colours,
objects, parts, materials, textures), and one per-location head ``dense`` (1×1 conv on conv5:
the area fraction of every pixel-level concept in each conv5 cell, BCE), a segmentation task
that needs parts, materials and colours where they are, as the networks Net2Vec probes learn
them from their data (conv5 gets localised part and material detectors). Labels come from the
concept store, train split only.

`train_synthnet` is reproducible: seeded init, shuffling and flips, and a fixed single intra-op
thread (bit-identical on CPU for a given seed, whatever the thread setting of the caller; on a
shared 2-core machine one thread is also several times faster than two). The images are decoded
once into memory as uint8. About a minute for 2000 images (12 epochs).
`ensure_synthnet` keeps one checkpoint per (data fingerprint, seed, epochs) under
``<cache_dir>/synthnet/`` as ``.safetensors`` (cache.cached_build: locked, atomic, verified, a
corrupt one retrained): ``network=synthnet`` with ``weights: auto`` uses it.
CLI: ``python -m net2vec.features.synthnet --data DIR --out PATH [--epochs E] [--seed S]``
(``PATH`` ending in ``.safetensors``: that format; else a torch dict readable with weights_only).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from net2vec.common.cache import Artifact, atomic_path, cached_build
from net2vec.data.concept_store import prepare_concept_store
from net2vec.features.hooks import NetworkError
from net2vec.features.networks import TorchvisionNetwork, file_key, is_random, load_state_file

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


def load_images(root: Path, names, size: int = INPUT_SIZE) -> torch.Tensor:
    """(N, 3, size, size) uint8 images of `root/images/` (bilinear resize when needed)."""
    out = torch.empty((len(names), 3, size, size), dtype=torch.uint8)
    for i, name in enumerate(tqdm(names, desc="loading images", mininterval=1, leave=False)):
        image = Image.open(root / "images" / name).convert("RGB")
        if image.size != (size, size):
            image = image.resize((size, size), Image.BILINEAR)
        out[i] = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
    return out


def _labels(store) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train rows, scene target with -100 = none, presence of every non-scene concept)."""
    scenes = np.flatnonzero(store.categories == "scene")
    others = np.flatnonzero(store.categories != "scene")
    rows = np.flatnonzero(store.split == 0)
    scene_presence = store.presence[:, scenes]
    if not len(scenes):  # a tiny set may keep no scene concept (none with train and val images)
        return rows, np.full(store.num_images, -100), store.presence[:, others].astype(np.float32)
    target = np.where(scene_presence.any(1), scene_presence.argmax(1), -100)
    return rows, target, store.presence[:, others].astype(np.float32)


def dense_targets(store, rows: np.ndarray, map_size: tuple[int, int]) -> torch.Tensor:
    """(len(rows), D, h, w) uint8: 255 × the fraction of each layer cell covered by each of the D
    pixel-level concepts (area pooling of the masks to conv5's resolution)."""
    pixel = np.flatnonzero(store.pixel_level)
    column = np.full(store.num_concepts, -1)
    column[pixel] = np.arange(len(pixel))
    position = np.full(store.num_images, -1)
    position[rows] = np.arange(len(rows))
    out = torch.zeros((len(rows), len(pixel), *map_size), dtype=torch.uint8)
    pairs = np.flatnonzero(position[store.pair_image] >= 0)
    for start in range(0, len(pairs), 4096):
        chunk = pairs[start : start + 4096]
        masks = torch.from_numpy(store.masks(chunk)).float()[:, None]
        cover = F.adaptive_avg_pool2d(masks, map_size)[:, 0]
        image = torch.from_numpy(position[store.pair_image[chunk]])
        concept = torch.from_numpy(column[store.pair_concept[chunk]])
        out[image, concept] = (cover * 255).round().to(torch.uint8)
    return out


@contextlib.contextmanager
def single_thread():
    """One intra-op thread inside the block (reproducible, and fast on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _loss(
    model: SynthNet,
    x: torch.Tensor,
    scene: torch.Tensor,
    presence: torch.Tensor,
    dense: torch.Tensor,
) -> torch.Tensor:
    """Multi-label BCE on concept presence + softmax cross-entropy on the scene (when labelled)
    + BCE of every conv5 location against the area fraction of each pixel-level concept there
    (the segmentation task that makes conv5 hold part, material and colour detectors)."""
    scene_logits, presence_logits, dense_logits = model(x)
    loss = F.binary_cross_entropy_with_logits(presence_logits, presence)
    if (scene >= 0).any():
        loss = loss + F.cross_entropy(scene_logits, scene, ignore_index=-100)
    target = dense.float() / 255
    per_concept = F.binary_cross_entropy_with_logits(dense_logits, target, reduction="none")
    return loss + DENSE_WEIGHT * per_concept.mean((0, 2, 3)).sum() / 10


def _fit(
    model: SynthNet,
    images: torch.Tensor,
    scene: torch.Tensor,
    presence: torch.Tensor,
    dense: torch.Tensor,
    epochs: int,
    seed: int,
    batch_size: int,
    lr: float,
) -> None:
    """Adam + cosine schedule over seeded shuffles with seeded horizontal flips."""
    n = len(images)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimiser, max(epochs, 1) * -(-n // batch_size)
    )
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in tqdm(range(epochs), desc="training synthnet", mininterval=1):
        order = torch.randperm(n, generator=generator)
        flips = torch.rand(n, generator=generator) < 0.5
        total = 0.0
        for start in range(0, n, batch_size):
            pick = order[start : start + batch_size]
            x = (images[pick].float() / 255 - MEAN) / STD
            flip = flips[pick].view(-1, 1, 1, 1)
            x = torch.where(flip, x.flip(3), x)
            cover = torch.where(flip, dense[pick].flip(3), dense[pick])
            x = x.contiguous(memory_format=torch.channels_last)
            loss = _loss(model, x, scene[pick], presence[pick], cover)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(pick)
        log.info("synthnet epoch %d: loss %.4f", epoch, total / max(n, 1))
    model.eval()


def fit_synthnet(
    data_root: str | Path,
    epochs: int = EPOCHS,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    batch_size: int = 32,
    lr: float = 2e-3,
) -> SynthNet:
    """SynthNet trained on the train split of the dataset at `data_root` (reproducible)."""
    data_root = Path(data_root)
    with tempfile.TemporaryDirectory() as scratch:
        store = prepare_concept_store(data_root, cache_dir or scratch, progress=False)
        rows, scene, presence = _labels(store)
        images = load_images(data_root, store.images[rows])
        side = INPUT_SIZE // int(np.prod(STRIDES))
        dense = dense_targets(store, rows, (side, side))
    with single_thread(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        num_scenes = int(scene.max()) + 1 if (scene >= 0).any() else 1
        model = SynthNet(num_scenes, presence.shape[1], num_dense=dense.shape[1])
        model = model.to(memory_format=torch.channels_last)
        _fit(
            model,
            images,
            torch.from_numpy(scene[rows]).long(),
            torch.from_numpy(presence[rows]),
            dense,
            epochs,
            seed,
            batch_size,
            lr,
        )
    return model


def train_synthnet(
    data_root: str | Path,
    out_path: str | Path,
    epochs: int = EPOCHS,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> Path:
    """Train SynthNet on `data_root`; write `out_path` atomically (.safetensors or a torch dict)."""
    model = fit_synthnet(data_root, epochs, seed, cache_dir)
    meta = {"data_root": str(data_root), "epochs": epochs, "seed": seed}
    with atomic_path(out_path) as tmp:
        save_synthnet(model, tmp, meta, Path(out_path).suffix == ".safetensors")
    return Path(out_path)


def checkpoint_artifact(
    data_root: str | Path, cache_dir: str | Path, seed: int, epochs: int
) -> Artifact:
    """SynthNet trained on `data_root` as a cached artifact: keyed by the concept store's key
    (the data's fingerprint), the seed, the epochs and VERSION."""
    concepts = prepare_concept_store(data_root, cache_dir, progress=False)
    inputs = {
        "concepts": str(concepts.attrs["key"]),
        "seed": int(seed),
        "epochs": int(epochs),
        "version": VERSION,
    }
    return Artifact(Path(cache_dir) / "synthnet", f"synthnet-v{VERSION}", ".safetensors", inputs)


def checkpoint_path(data_root: str | Path, cache_dir: str | Path, seed: int, epochs: int) -> Path:
    """Where the cached SynthNet of `data_root` (as it is now) lives."""
    return checkpoint_artifact(data_root, cache_dir, seed, epochs).path


def ensure_synthnet(
    data_root: str | Path, cache_dir: str | Path, seed: int = 0, epochs: int = EPOCHS
) -> Path:
    """Train once (locked, atomic) or reuse the cached SynthNet checkpoint of `data_root`;
    a corrupt or mismatched cached checkpoint is retrained (cache.cached_build)."""
    artifact = checkpoint_artifact(data_root, cache_dir, seed, epochs)
    meta = {"data_root": str(data_root), "epochs": epochs, "seed": seed}

    def build(tmp: Path) -> None:
        log.info("synthnet: training on %s (%d epochs, seed %d)", data_root, epochs, seed)
        save_synthnet(fit_synthnet(data_root, epochs, seed, cache_dir), tmp, meta, True)

    def verified(path: Path) -> Path:
        load_synthnet(path)  # raises on a corrupt file: cached_build then retrains
        return path

    return cached_build(artifact, build, verified, "synthnet")


class SynthNetNetwork(TorchvisionNetwork):
    """The ``synthnet`` network adapter: ``weights: auto`` trains SynthNet once on the probe set
    (cached per dataset, seed and epochs), or a checkpoint path, or ``null`` (random init)."""

    def __init__(
        self,
        name: str = "synthnet",
        weights: str | None = "auto",
        input_size: int = INPUT_SIZE,
        layers: dict | None = None,
        channels: dict | None = None,
        last_layer: str | None = None,
        init_seed: int = 0,
        train_seed: int = 0,
        epochs: int = EPOCHS,
        num_scenes: int = 16,
        num_objects: int = 32,
    ) -> None:
        super().__init__(
            name, "synthnet", weights, input_size, layers, channels, last_layer, init_seed
        )
        self.train_seed, self.epochs = int(train_seed), int(epochs)
        self.num_scenes, self.num_objects = int(num_scenes), int(num_objects)

    def architecture(self, weights_given: bool, num_classes: int | None = None) -> nn.Module:
        return SynthNet(self.num_scenes, self.num_objects)

    def _checkpoint(self, data_root, cache_dir) -> Path | None:
        if str(self.weights) != "auto":
            return None
        if data_root is None or cache_dir is None:
            raise NetworkError(
                "network.weights=auto: SynthNet trains on the probe set; "
                "its dataset root and cache directory are needed"
            )
        return checkpoint_path(data_root, cache_dir, self.train_seed, self.epochs)

    def build(
        self, data_root: str | Path | None = None, cache_dir: str | Path | None = None
    ) -> nn.Module:
        if is_random(self.weights):
            return super().build()
        if self._checkpoint(data_root, cache_dir) is not None:
            return load_synthnet(
                ensure_synthnet(data_root, cache_dir, self.train_seed, self.epochs)
            )
        return load_synthnet(self.weights)

    def weights_key(
        self, data_root: str | Path | None = None, cache_dir: str | Path | None = None
    ) -> str:
        checkpoint = None if is_random(self.weights) else self._checkpoint(data_root, cache_dir)
        if checkpoint is not None:
            return f"auto:{checkpoint.name}"
        return super().weights_key() if is_random(self.weights) else file_key(self.weights)


def main(argv: list[str] | None = None) -> int:
    """CLI: train SynthNet on a BRODEN-format dataset (e.g. the synthetic set)."""
    parser = argparse.ArgumentParser(description="Train SynthNet on a BRODEN-format probe set.")
    parser.add_argument("--data", required=True, help="dataset root (holds index.csv)")
    parser.add_argument("--out", required=True, help="checkpoint path to write")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(train_synthnet(args.data, args.out, args.epochs, args.seed))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
