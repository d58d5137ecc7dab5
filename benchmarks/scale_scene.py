"""A BRODEN-shaped probe set regenerated batch by batch from seeds (for benchmarks/scale.py).

~1,200 labels (``image_level`` of them scene/texture labels, one scene per image and a texture
on some; the rest pixel-level with a Zipf-like frequency, the first few on most images, 17.5 per
image on average as in BRODEN), 113²
masks (random blobs: an 8×8 field thresholded and blown up), and planted activations (K, h, w):
noise, plus on half of the units the mean-pooled mask of one label, so that the tally and the
nulls have real detectors to find. Nothing is held per image: image i's labels, masks and
activations come from ``default_rng((seed, i))``, so the benchmark's own memory stays flat in N.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from net2vec.probes.netdissect import DissectionLabels


@dataclass
class Scene:
    images: int
    filters: int
    map_size: int
    mask_size: int = 113
    labels: int = 1197
    image_level: int = 400
    pixel_labels_per_image: float = 17.5  # BRODEN: 1.11 M pairs / 63,305 images
    seed: int = 0

    def __post_init__(self) -> None:
        pixel = self.labels - self.image_level
        rank = np.arange(pixel)
        freq = 1.0 / (rank + 1.0) ** 0.8
        freq *= (self.pixel_labels_per_image - 3 * 0.9) / freq[3:].sum()
        freq[:3] = 0.9  # a few labels (colours, wall, sky) on most images
        self.frequency = np.minimum(freq, 0.95)
        self.split = np.arange(self.images) % 2  # 0 train, 1 val
        self.planted = (np.arange(self.filters) // 2) % 64  # unit 2j follows pixel label j % 64
        self.planted[1::2] = -1

    def dissection_labels(self) -> DissectionLabels:
        """Categories (image-level labels: scene, texture) and every image's image-level labels."""
        category = np.zeros(self.labels, np.int64)  # 0 object (pixel-level)
        category[self.labels - self.image_level :] = 1  # 1 scene
        category[self.labels - 50 :] = 2  # 2 texture
        offsets, concepts = [0], []
        for i in range(self.images):
            whole = self.whole_labels(i)
            concepts += whole
            offsets.append(offsets[-1] + len(whole))
        return DissectionLabels(
            category, ["object", "scene", "texture"], np.array(offsets), np.array(concepts)
        )

    def whole_labels(self, i: int) -> list[int]:
        rng = np.random.default_rng((self.seed, i, 1))
        first = self.labels - self.image_level
        scene = first + min(int(rng.zipf(1.5)) - 1, self.image_level - 51)
        texture = [self.labels - 50 + int(rng.integers(50))] if rng.random() < 0.3 else []
        return [scene, *texture]

    def image(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pixel-level labels (L,), their masks (L, s, s) bool and activations (K, h, w)."""
        rng = np.random.default_rng((self.seed, i))
        labels = np.flatnonzero(rng.random(len(self.frequency)) < self.frequency)
        s, h = self.mask_size, self.map_size
        field = rng.random((len(labels), 8, 8)) < rng.uniform(0.2, 0.6, (len(labels), 1, 1))
        rep = -(-s // 8)
        masks = field.repeat(rep, 1).repeat(rep, 2)[:, :s, :s]
        acts = rng.standard_normal((self.filters, h, h), dtype=np.float32)
        bins = np.linspace(0, s, h + 1).astype(int)
        for j, label in enumerate(labels[labels < 64]):
            pooled = np.add.reduceat(np.add.reduceat(masks[j], bins[:-1], 0), bins[:-1], 1)
            area = np.outer(np.diff(bins), np.diff(bins))
            acts[self.planted == label] += 3.0 * (pooled / area).astype(np.float32)
        return labels, masks, acts

    def batch(self, rows: np.ndarray, thresholds: torch.Tensor | None = None) -> dict:
        """The segmentation batch dict (docs/architecture.md): ``maps`` thresholded at
        ``thresholds`` when given, else raw ``activations``."""
        parts = [self.image(int(i)) for i in rows]
        counts = np.array([len(p[0]) for p in parts])
        acts = torch.from_numpy(np.stack([p[2] for p in parts]))
        batch = {
            "pair_image": torch.from_numpy(np.repeat(np.arange(len(rows)), counts)),
            "pair_concept": torch.from_numpy(np.concatenate([p[0] for p in parts])),
            "masks": torch.from_numpy(np.concatenate([p[1] for p in parts])).float(),
            "image_index": torch.as_tensor(np.asarray(rows), dtype=torch.long),
            "pair_slot": torch.from_numpy(np.concatenate([np.arange(c) for c in counts])),
            "pair_width": int(counts.max()),
        }
        if thresholds is None:
            batch["activations"] = acts
        else:
            batch["maps"] = (acts > thresholds[None, :, None, None]).float()
        return batch

    def batches(self, rows=None, thresholds=None, batch_size: int = 64):
        """A re-iterable list-like of batches over ``rows`` (default all images)."""
        rows = np.arange(self.images) if rows is None else np.asarray(rows)
        return Batches(self, rows, thresholds, batch_size)


class Batches:
    def __init__(self, scene: Scene, rows, thresholds, batch_size: int) -> None:
        self.scene, self.rows, self.thresholds, self.size = scene, rows, thresholds, batch_size

    def __len__(self) -> int:
        return -(-len(self.rows) // self.size)

    def __iter__(self):
        for start in range(0, len(self.rows), self.size):
            yield self.scene.batch(self.rows[start : start + self.size], self.thresholds)
