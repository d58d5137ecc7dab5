"""The classification probes' LightningDataModule: pooled features and concept presence of every
image, held in memory (docs/method.md §4)."""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from tqdm.auto import tqdm

from net2vec.data.datamodules import READ_CHUNK, shard_of


def pooled_features(activations: torch.Tensor | np.ndarray, threshold=None) -> torch.Tensor:
    """(n, K) float32 spatial means of (n, K, h, w) activations; of I(A_k > T_k) if ``threshold`` (K,)."""
    acts = torch.as_tensor(
        np.asarray(activations) if isinstance(activations, np.ndarray) else activations
    )
    if threshold is not None:
        acts = acts > torch.as_tensor(np.asarray(threshold), dtype=acts.dtype).view(1, -1, 1, 1)
    return acts.float().mean((2, 3))


class EpochBatches:
    """A re-iterable of batch dicts: each pass over it is one epoch of ``make(epoch)``.

    A plain iterable rather than a DataLoader: the data already sit in memory, and the epoch
    number (the trainer's when attached, else a counter) seeds the shuffle and the resampling.
    """

    def __init__(self, make, count, epoch) -> None:
        self.make, self.count, self.epoch = make, count, epoch

    def __len__(self) -> int:
        return self.count()

    def __iter__(self):
        return iter(self.make(self.epoch()))


class ClassificationDataModule(pl.LightningDataModule):
    """Pooled features + concept presence of train (shuffled, seeded) and val images, in memory.

    Batches: ``{"features": (n, K) float32, "labels": (n, C) float32 presence, "image_index": (n,)}``
    and, for ``balance="resample"`` training batches, ``"include"`` (n, C) float32: each epoch,
    per concept, all train positives and min(n_pos, n_neg) negatives drawn without replacement
    (the original's balanced sampling).
    ``thresholded`` (or an explicit ``threshold`` (K,)): features are the fraction of positions
    with A_k > T_k (the store's thresholds unless ``threshold`` is given), not the raw means.
    """

    def __init__(
        self,
        concept_store,
        activation_store,
        batch_size: int = 64,
        seed: int = 0,
        balance: str = "weight",
        thresholded: bool = False,
        threshold=None,
    ) -> None:
        super().__init__()
        if balance not in ("weight", "resample"):
            raise ValueError(f"balance={balance!r}: expected 'weight' or 'resample'")
        if concept_store.num_images != activation_store.num_images:
            raise ValueError(
                f"concept store has {concept_store.num_images} images, "
                f"activation store {activation_store.num_images}"
            )
        self.concepts, self.activations = concept_store, activation_store
        self.batch_size, self.seed, self.balance = int(batch_size), int(seed), balance
        if threshold is None and thresholded:
            threshold = activation_store.thresholds
        self.threshold = threshold  # None: raw spatial means
        split = np.asarray(concept_store.split)
        self.rows = {s: np.flatnonzero(split == s) for s in (0, 1)}
        self.presence = torch.from_numpy(np.asarray(concept_store.presence, dtype=bool))
        self.n_pos = self.presence[torch.from_numpy(self.rows[0])].sum(0).numpy().astype(np.int64)
        self.n_neg = len(self.rows[0]) - self.n_pos
        self.features: torch.Tensor | None = None
        self._epochs_seen = 0
        self._include: tuple[int, torch.Tensor] | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.features is None:
            self.features = self._read_features()

    def _read_features(self) -> torch.Tensor:
        """(N, K) float32: the store's pooled means, or the thresholded fractions read in chunks."""
        if self.threshold is None:
            return torch.from_numpy(np.asarray(self.activations.pooled(), dtype=np.float32))
        rows = np.arange(self.activations.num_images)
        parts = [
            pooled_features(self.activations.activations(rows[i : i + READ_CHUNK]), self.threshold)
            for i in tqdm(range(0, len(rows), READ_CHUNK), desc="thresholded features", leave=False)
        ]
        return torch.cat(parts)

    def inclusion(self, epoch: int) -> torch.Tensor:
        """(n_train, C) bool: the epoch's balanced draw (all positives + as many random negatives)."""
        if self._include is not None and self._include[0] == epoch:
            return self._include[1]
        rng = np.random.default_rng([self.seed, epoch, 1])
        labels = self.presence[torch.from_numpy(self.rows[0])].numpy()
        include = labels.copy()
        for c in range(labels.shape[1]):
            negatives = np.flatnonzero(~labels[:, c])
            take = min(int(self.n_pos[c]), len(negatives))
            include[rng.choice(negatives, size=take, replace=False), c] = True
        self._include = (epoch, torch.from_numpy(include))
        return self._include[1]

    def batch(self, rows: np.ndarray, include: torch.Tensor | None = None) -> dict:
        """The classification batch dict for dataset rows (in the given order)."""
        self.setup()
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        out = {
            "features": self.features[index],
            "labels": self.presence[index].float(),
            "image_index": index,
        }
        if include is not None:
            out["include"] = include.float()
        return out

    def _epoch(self) -> int:
        if self.trainer is not None:
            return int(self.trainer.current_epoch)
        self._epochs_seen += 1
        return self._epochs_seen - 1

    def _train_batches(self, epoch: int, rank: int = 0, world_size: int = 1):
        """One epoch over every train image (a fixed batch count), shuffled with (seed, epoch);
        under DDP this rank's share of every batch (as ``EpochShuffle``)."""
        include = self.inclusion(epoch) if self.balance == "resample" else None
        positions = np.random.default_rng([self.seed, epoch, 0]).permutation(len(self.rows[0]))
        for start in range(0, len(positions), self.batch_size):
            chunk = positions[start : start + self.batch_size][rank::world_size]
            yield self.batch(
                self.rows[0][chunk], None if include is None else include[torch.from_numpy(chunk)]
            )

    def _val_batches(self, rank: int = 0, world_size: int = 1):
        """The val images in order, in batches; under DDP this rank's share of every batch."""
        rows = self.rows[1]
        for start in range(0, len(rows), self.batch_size):
            yield self.batch(rows[start : start + self.batch_size][rank::world_size])

    def train_dataloader(self) -> EpochBatches:
        shard = shard_of(self)
        return EpochBatches(
            lambda epoch: self._train_batches(epoch, *shard),
            lambda: -(-len(self.rows[0]) // self.batch_size),
            self._epoch,
        )

    def val_dataloader(self) -> EpochBatches:
        shard = shard_of(self)
        return EpochBatches(
            lambda epoch: self._val_batches(*shard),
            lambda: -(-len(self.rows[1]) // self.batch_size),
            lambda: 0,
        )
