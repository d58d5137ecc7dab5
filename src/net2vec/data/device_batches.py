"""Segmentation batches assembled on the GPU from data held there.

At BRODEN size the CPU cannot feed a GPU probe: unpacking one batch's masks (64 images × ~15
pairs × 113² bits) and copying them as floats costs more than the probe's whole step. With
``probe.device_batches`` the in-memory data (thresholded maps as bool, masks bit-packed as
uint8: ~4 GiB for BRODEN at 13×13 / 113×113) are moved to the GPU once, and every batch is
gathered and unpacked there; the DataLoader only hands out row numbers.
"""
from __future__ import annotations

import numpy as np
import torch

BITS = torch.arange(7, -1, -1, dtype=torch.uint8)   # np.packbits order: most significant bit first


class DeviceBatches:
    """The in-memory maps (N', K, h, w) bool and packed masks (P, B) uint8 of a datamodule, on `device`."""

    def __init__(self, maps: torch.Tensor, map_pos: np.ndarray, packed: np.ndarray, pair_offsets: np.ndarray,
                 pair_concept: np.ndarray, mask_size: tuple[int, int], device: str | torch.device) -> None:
        self.device = torch.device(device)
        self.maps = maps.to(self.device)
        self.map_pos = torch.from_numpy(np.asarray(map_pos)).to(self.device)
        self.packed = torch.from_numpy(np.asarray(packed)).to(self.device)
        self.pair_offsets = np.asarray(pair_offsets, dtype=np.int64)
        self.pair_concept = torch.from_numpy(np.asarray(pair_concept, dtype=np.int64)).to(self.device)
        self.mask_size = tuple(int(v) for v in mask_size)
        self.bits = BITS.to(self.device)

    def masks(self, pair_idx: torch.Tensor) -> torch.Tensor:
        """(P', sh, sw) float masks of the pairs `pair_idx` (a device tensor), unpacked here."""
        sh, sw = self.mask_size
        packed = self.packed[pair_idx]
        bits = (packed[:, :, None] >> self.bits) & 1
        return bits.flatten(1)[:, :sh * sw].reshape(-1, sh, sw).float()

    def collate(self, rows: list) -> dict:
        """The segmentation batch dict (docs/architecture.md) for dataset rows, on the device."""
        rows = np.sort(np.asarray(rows, dtype=np.int64))
        counts = self.pair_offsets[rows + 1] - self.pair_offsets[rows]
        pair_idx = np.concatenate([np.arange(self.pair_offsets[r], self.pair_offsets[r + 1]) for r in rows]) \
            if len(rows) else np.zeros(0, dtype=np.int64)
        pair_idx = torch.from_numpy(pair_idx).to(self.device, non_blocking=True)
        rows_t = torch.from_numpy(rows).to(self.device, non_blocking=True)
        return {"maps": self.maps[self.map_pos[rows_t]].float(),
                "pair_image": torch.repeat_interleave(torch.arange(len(rows), device=self.device),
                                                      torch.from_numpy(counts).to(self.device)),
                "pair_concept": self.pair_concept[pair_idx], "masks": self.masks(pair_idx),
                "image_index": rows_t}
