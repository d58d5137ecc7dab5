"""Segmentation batches assembled on the GPU from data held there.

At BRODEN size the CPU cannot feed a GPU probe: unpacking one batch's masks (64 images × ~15
pairs × 113² bits) and copying them as floats costs more than the probe's whole step. With
``loader.device_batches`` the in-memory data (thresholded maps as bool, masks bit-packed as
uint8: ~4 GiB for BRODEN at 13×13 / 113×113) are moved to the GPU once, and every batch is
gathered and unpacked there; the DataLoader only hands out row numbers.
"""

from __future__ import annotations

import numpy as np
import torch

BITS = torch.arange(7, -1, -1, dtype=torch.uint8)  # np.packbits order: most significant bit first


def pair_rows(pair_offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Of sorted dataset ``rows``: the store's pair numbers (row by row), each pair's rank among its
    row's pairs (``pair_slot``), and the largest number of pairs of a row (``pair_width``)."""
    starts = pair_offsets[rows]
    counts = pair_offsets[rows + 1] - starts
    slot = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    width = int(counts.max()) if len(counts) else 0
    return np.repeat(starts, counts) + slot, slot, width


def batch_device(device_batches: bool | str, accelerator: str, devices) -> str | None:
    """'cuda' when the probes train on one GPU and ``device_batches`` (true | auto) allows it:
    the in-memory data then sit on the GPU and batches are assembled there; else None."""
    accelerator = str(accelerator)
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    single = devices in (1, "1") or (devices == "auto" and torch.cuda.device_count() == 1)
    if device_batches is False or not (on_gpu and single and torch.cuda.is_available()):
        return None
    return "cuda"


class DeviceBatches:
    """The in-memory maps (N', K, h, w) bool and packed masks (P, B) uint8 of a datamodule, on `device`."""

    def __init__(
        self,
        maps: torch.Tensor,
        map_pos: np.ndarray,
        packed: np.ndarray,
        pair_offsets: np.ndarray,
        pair_concept: np.ndarray,
        mask_size: tuple[int, int],
        device: str | torch.device,
    ) -> None:
        self.device = torch.device(device)
        self.maps = maps.to(self.device)
        self.map_pos = torch.from_numpy(np.asarray(map_pos)).to(self.device)
        self.packed = torch.from_numpy(np.asarray(packed)).to(self.device)
        self.pair_offsets = np.asarray(pair_offsets, dtype=np.int64)
        self.pair_concept = torch.from_numpy(np.asarray(pair_concept, dtype=np.int64)).to(
            self.device
        )
        self.mask_size = tuple(int(v) for v in mask_size)
        self.bits = BITS.to(self.device)

    def masks(self, pair_idx: torch.Tensor) -> torch.Tensor:
        """(P', sh, sw) float masks of the pairs `pair_idx` (a device tensor), unpacked here."""
        sh, sw = self.mask_size
        packed = self.packed[pair_idx]
        bits = (packed[:, :, None] >> self.bits) & 1
        return bits.flatten(1)[:, : sh * sw].reshape(-1, sh, sw).float()

    def _upload(self, values: np.ndarray) -> torch.Tensor:
        """int64 indices to the device without a host-device sync (pinned, non-blocking copy)."""
        host = torch.from_numpy(np.ascontiguousarray(values, dtype=np.int64))
        if self.device.type == "cuda":
            host = host.pin_memory()
        return host.to(self.device, non_blocking=True)

    def collate(self, rows: list) -> dict:
        """The segmentation batch dict (docs/architecture.md) for dataset rows, on the device.

        Only the row and pair numbers cross to the device (one pinned, asynchronous copy each), so
        the CPU can prepare the next batch while the GPU works on this one.
        """
        rows = np.sort(np.asarray(rows, dtype=np.int64))
        pair_idx, slot, width = pair_rows(self.pair_offsets, rows)
        pair_image = np.repeat(np.arange(len(rows)), np.diff(self.pair_offsets)[rows])
        values = (rows, pair_idx, pair_image, slot)
        rows_t, pair_idx_t, pair_image_t, slot_t = (self._upload(v) for v in values)
        return {
            "maps": self.maps[self.map_pos[rows_t]].float(),
            "pair_image": pair_image_t,
            "pair_concept": self.pair_concept[pair_idx_t],
            "masks": self.masks(pair_idx_t),
            "image_index": rows_t,
            "pair_slot": slot_t,
            "pair_width": width,
        }
