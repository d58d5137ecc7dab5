"""Training SynthNet on a probe set's train split (reproducible: seeded, one intra-op thread),
and its CLI ``python -m net2vec.features.synthnet``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from net2vec.common.cache import atomic_path
from net2vec.data.concept_store import prepare_concept_store
from net2vec.features.synthnet.model import (
    DENSE_WEIGHT,
    EPOCHS,
    INPUT_SIZE,
    MEAN,
    STD,
    STRIDES,
    SynthNet,
    save_synthnet,
)

log = logging.getLogger(__name__)


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
