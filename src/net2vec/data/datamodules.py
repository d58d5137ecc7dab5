"""The segmentation probes' LightningDataModule: probe batches streamed from the concept and
activation stores (the classification probes' is in ``data.classification_data``).

Segmentation batches (docs/architecture.md) hold, for a sorted set of dataset rows, the
thresholded maps of those images and every (image, pixel-level concept) pair among them:

    {"maps": (n, K, h, w) float32 0/1, "pair_image": (P,) long index into the batch,
     "pair_concept": (P,) long, "masks": (P, sh, sw) float32 0/1, "image_index": (n,) long}

With ``in_memory`` the thresholded maps (bool) and the bit-packed masks are read once at setup;
otherwise each batch reads them from the stores. ``'auto'`` decides by the size they would take.
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from net2vec.data.device_batches import DeviceBatches, batch_device, pair_rows

log = logging.getLogger(__name__)

MEMORY_BUDGET = 2 << 30  # bytes that in_memory='auto' may spend on maps and masks
READ_CHUNK = 256  # images (or pairs × 16) read from a store at a time when loading


def shard_of(datamodule: pl.LightningDataModule) -> tuple[int, int]:
    """(rank, world size) of the trainer the datamodule is attached to; (0, 1) when there is none."""
    trainer = datamodule.trainer
    return (int(trainer.global_rank), int(trainer.world_size)) if trainer is not None else (0, 1)


class EpochShuffle(torch.utils.data.Sampler):
    """Batches of a permutation of range(n) drawn from (seed, epoch), so a resumed fit sees the
    same order; ``shuffle=False`` keeps range(n) in order.

    Under DDP every rank draws the same global batches of ``batch_size`` and rank r of W keeps
    positions r, r + W, … of each: the ranks' shares of a step together are exactly the batch of
    one process, and every rank has the same number of batches (a share may be empty when a batch
    holds fewer than W rows). Lightning calls ``set_epoch`` at the start of every training epoch
    (also after a resume); ``use_distributed_sampler`` must stay off (see probes.fitting).
    """

    def __init__(
        self,
        n: int,
        seed: int,
        batch_size: int = 1,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.n, self.seed, self.epoch = int(n), int(seed), 0
        self.batch_size, self.shuffle = int(batch_size), bool(shuffle)
        self.rank, self.world_size = int(rank), int(world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def order(self) -> list[int]:
        """The epoch's order of range(n) over all ranks."""
        if not self.shuffle:
            return list(range(self.n))
        seed = int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0])
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(seed)).tolist()

    def __iter__(self):
        order = self.order()
        for start in range(0, self.n, self.batch_size):
            yield order[start : start + self.batch_size][self.rank :: self.world_size]


class SegmentationDataModule(pl.LightningDataModule):
    """Train: train images with ≥ 1 pixel-level concept, shuffled (seeded); val: val images."""

    def __init__(
        self,
        concept_store,
        activation_store,
        batch_size: int = 64,
        in_memory: bool | str = "auto",
        num_workers: int = 0,
        seed: int = 0,
        memory_budget: int = MEMORY_BUDGET,
        device: str | None = None,
        memory_gib: float | None = None,
        device_batches: bool | str = False,
        accelerator: str = "cpu",
        devices=1,
    ) -> None:
        super().__init__()
        if in_memory not in (True, False, "auto"):
            raise ValueError(f"in_memory={in_memory!r}: expected true, false or 'auto'")
        if concept_store.num_images != activation_store.num_images:
            raise ValueError(
                f"concept store has {concept_store.num_images} images, "
                f"activation store {activation_store.num_images}"
            )
        self.concepts, self.activations = concept_store, activation_store
        self.batch_size, self.num_workers, self.seed = int(batch_size), int(num_workers), int(seed)
        offsets = np.asarray(concept_store.pair_offsets)
        self.pair_count = np.diff(offsets)
        self.rows = {
            split: np.flatnonzero(
                (np.asarray(concept_store.split) == split) & (self.pair_count > 0)
            )
            for split in (0, 1)
        }
        if memory_gib is not None:
            memory_budget = int(float(memory_gib) * 2**30)
        self.in_memory = self._fits(memory_budget) if in_memory == "auto" else bool(in_memory)
        if device is None:
            device = batch_device(device_batches, accelerator, devices)
        self._maps = self._map_pos = self._packed = None
        # device: assemble batches on this device from in-memory data held there (DeviceBatches)
        self.device, self._device_batches = (device if self.in_memory else None), None

    def _fits(self, budget: int) -> bool:
        rows = len(self.rows[0]) + len(self.rows[1])
        h, w = self.activations.map_size
        sh, sw = self.concepts.mask_size
        size = rows * self.activations.num_filters * h * w + len(self.concepts.pair_image) * -(
            -sh * sw // 8
        )
        log.info(
            "segmentation data: %.2f GiB in memory (budget %.2f GiB)", size / 2**30, budget / 2**30
        )
        return size <= budget

    def setup(self, stage: str | None = None) -> None:
        if self.in_memory and self._maps is None:
            self._load()

    def _load(self) -> None:
        """Read every thresholded map (bool) and every mask (bit-packed) once."""
        rows = np.sort(np.concatenate([self.rows[0], self.rows[1]]))
        self._map_pos = np.full(self.concepts.num_images, -1, dtype=np.int64)
        self._map_pos[rows] = np.arange(len(rows))
        parts = [
            torch.from_numpy(
                np.asarray(self.activations.thresholded(rows[i : i + READ_CHUNK]), dtype=bool)
            )
            for i in tqdm(range(0, len(rows), READ_CHUNK), desc="thresholded maps", leave=False)
        ]
        self._maps = torch.cat(parts)
        num_pairs, step = len(self.concepts.pair_image), 16 * READ_CHUNK
        packed = [
            np.packbits(
                self.concepts.masks(np.arange(i, min(i + step, num_pairs))).reshape(
                    min(step, num_pairs - i), -1
                ),
                axis=1,
            )
            for i in tqdm(range(0, num_pairs, step), desc="concept masks", leave=False)
        ]
        self._packed = np.concatenate(packed) if packed else np.zeros((0, 0), dtype=np.uint8)
        if self.device is not None:
            self._device_batches = DeviceBatches(
                self._maps,
                self._map_pos,
                self._packed,
                self.concepts.pair_offsets,
                self.concepts.pair_concept,
                self.concepts.mask_size,
                self.device,
            )

    def _read_maps(self, rows: np.ndarray) -> torch.Tensor:
        if self.in_memory:
            return self._maps[torch.from_numpy(self._map_pos[rows])].float()
        return torch.from_numpy(np.asarray(self.activations.thresholded(rows))).float()

    def _read_masks(self, pair_idx: np.ndarray) -> torch.Tensor:
        sh, sw = self.concepts.mask_size
        if self.in_memory:
            bits = np.unpackbits(self._packed[pair_idx], axis=1, count=sh * sw)
            return torch.from_numpy(bits.reshape(-1, sh, sw)).float()
        return torch.from_numpy(np.asarray(self.concepts.masks(pair_idx))).float()

    def collate(self, rows: list, raw: bool = False) -> dict:
        """Segmentation batch dict for dataset rows (any order; sorted here)."""
        if self.in_memory and self._maps is None:
            self._load()
        if self._device_batches is not None and not raw:
            return self._device_batches.collate(rows)
        rows = np.sort(np.asarray(rows, dtype=np.int64))
        counts = self.pair_count[rows]
        pair_idx, slot, width = pair_rows(np.asarray(self.concepts.pair_offsets, np.int64), rows)
        if raw:
            key, maps = (
                "activations",
                torch.from_numpy(np.asarray(self.activations.activations(rows))).float(),
            )
        else:
            key, maps = "maps", self._read_maps(rows)
        return {
            key: maps,
            "pair_image": torch.from_numpy(np.repeat(np.arange(len(rows)), counts)).long(),
            "pair_concept": torch.from_numpy(
                np.asarray(self.concepts.pair_concept)[pair_idx]
            ).long(),
            "masks": self._read_masks(pair_idx),
            "image_index": torch.from_numpy(rows).long(),
            "pair_slot": torch.from_numpy(slot),
            "pair_width": width,
        }

    def _loader(
        self, rows: np.ndarray, shuffle: bool, raw: bool = False, shard: tuple[int, int] = (0, 1)
    ) -> DataLoader:
        sampler = EpochShuffle(len(rows), self.seed, self.batch_size, shuffle, *shard)
        return DataLoader(
            rows.tolist(),
            batch_sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=functools.partial(self.collate, raw=raw),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.rows[0], shuffle=True, shard=shard_of(self))

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.rows[1], shuffle=False, shard=shard_of(self))

    def probe_dataloader(
        self, split: int | None = None, raw: bool = False, rows: np.ndarray | None = None
    ) -> DataLoader:
        """Unshuffled batches over the images with pairs of one split (None: both), e.g. for the
        single-filter probe, or over the given dataset ``rows`` (sorted); ``raw`` puts raw
        ``activations`` in place of ``maps`` (NetDissect)."""
        if rows is None:
            rows = (
                np.sort(np.concatenate([self.rows[0], self.rows[1]]))
                if split is None
                else self.rows[split]
            )
        rows = np.asarray(rows, dtype=np.int64)
        return self._loader(rows, shuffle=False, raw=raw)
