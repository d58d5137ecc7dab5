"""Concept activation vectors for TCAV, their repeats and random controls, in one batched fit.

A CAV is a concept classifier's weight vector on the layer's pooled activations: the
classification probe of docs/method.md §4 (``ClassificationProbe``, balanced BCE), whose (K,)
weights point from concept-absent to concept-present images. ``task=tcav`` fits, as the columns
of ONE probe of M = C·R + N heads (one GEMM per batch, docs/tcav.md):

- R = ``repeats`` vectors per tested concept c, each from its own share of the training images
  (``resample="split"``: the train images are dealt into R disjoint random parts, so that chance
  correlations of the sample do not repeat across the R vectors; ``"bootstrap"``: R draws with
  replacement, as multiplicities in the loss weights);
- N = ``random_concepts`` random controls: control j reads the labels of concept c_j (the tested
  concepts in turn) on a random permutation of the images — the shuffled-mask null's concepts,
  whose positive rate matches a real concept's but whose vector means nothing — on part j mod R.

Every column is balanced as in the cls task (negatives weigh n_pos/n_neg of that column's own
draw), and the pooled features are centred on their train mean. The training batches carry these weights as the probe's ``include`` (n, M) mask
(``balance="resample"``), so the probe code is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from net2vec.data.classification_data import ClassificationDataModule

RESAMPLES = ("split", "bootstrap")


@dataclass
class CavPlan:
    """Which labels each of the M probe columns is trained on, and with which image weights."""

    concept: np.ndarray  # (M,) concept index (a control: the concept whose labels it permutes)
    repeat: np.ndarray  # (M,) repeat number of a concept column, -1 for a random control
    labels: np.ndarray  # (N_images, M) bool: each column's labels on every image
    weights: np.ndarray  # (N_train, M) float32: loss weight of each train image (0: not drawn)

    @property
    def random(self) -> np.ndarray:
        """(M,) bool: the random-control columns."""
        return self.repeat < 0


def image_draws(n_train: int, repeats: int, resample: str, rng) -> np.ndarray:
    """(R, n_train) multiplicity of each train image in each repeat's sample."""
    if resample not in RESAMPLES:
        raise ValueError(f"task.resample={resample!r}: expected one of {', '.join(RESAMPLES)}")
    draws = np.zeros((repeats, n_train), np.float32)
    if resample == "split":
        draws[np.arange(n_train) % repeats, rng.permutation(n_train)] = 1.0
    else:
        for r in range(repeats):
            draws[r] = np.bincount(rng.integers(0, n_train, n_train), minlength=n_train)
    return draws


def balanced(labels: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """(n_train, M) loss weights: the draw's multiplicity, negatives × n_pos/n_neg of the draw."""
    n_pos = (labels * draws).sum(0)
    n_neg = ((~labels) * draws).sum(0)
    ratio = np.where(n_neg > 0, n_pos / np.maximum(n_neg, 1), 0.0)
    return (draws * np.where(labels, 1.0, ratio[None])).astype(np.float32)


def cav_plan(
    presence: np.ndarray,
    split: np.ndarray,
    concepts: np.ndarray,
    repeats: int,
    random_concepts: int,
    resample: str = "split",
    seed: int = 0,
) -> CavPlan:
    """The M = len(concepts)·repeats + random_concepts columns (module docstring), seeded."""
    if repeats < 2 or random_concepts < 2:
        raise ValueError(
            f"task.repeats={repeats}, task.random_concepts={random_concepts}: the test needs "
            "at least 2 of each"
        )
    rng = np.random.default_rng([int(seed), 29])
    presence = np.asarray(presence, bool)
    train = np.flatnonzero(np.asarray(split) == 0)
    draws = image_draws(len(train), repeats, resample, rng)
    concept = np.concatenate([np.repeat(concepts, repeats), np.resize(concepts, random_concepts)])
    repeat = np.concatenate([np.tile(np.arange(repeats), len(concepts)), -np.ones(random_concepts)])
    labels = presence[:, concept]
    for j in range(len(concepts) * repeats, len(concept)):
        labels[:, j] = labels[rng.permutation(len(labels)), j]
    part = np.where(repeat >= 0, repeat, np.arange(len(concept)) % repeats).astype(int)
    weights = balanced(labels[train], draws[part].T)
    return CavPlan(concept.astype(np.int64), repeat.astype(np.int64), labels, weights)


class CavDataModule(ClassificationDataModule):
    """The cls DataModule with the plan's M columns as its concepts and its weights as the
    ``include`` mask of every training batch (``balance="resample"``)."""

    def __init__(self, concept_store, activation_store, plan: CavPlan, **kwargs) -> None:
        super().__init__(concept_store, activation_store, balance="resample", **kwargs)
        self.plan = plan
        self.presence = torch.from_numpy(plan.labels)
        self.n_pos = (plan.weights * plan.labels[self.rows[0]] > 0).sum(0)
        self.n_neg = len(self.rows[0]) - self.n_pos
        self._weights = torch.from_numpy(plan.weights)

    def setup(self, stage: str | None = None) -> None:
        """The pooled features, centred on the train images' mean: the vectors are unchanged in
        meaning (only the bias absorbs the mean), and a fit that is stopped early does not tilt
        every vector along the mean activation."""
        if self.features is None:
            features = self._read_features()
            self.features = features - features[torch.from_numpy(self.rows[0])].mean(0)

    def inclusion(self, epoch: int) -> torch.Tensor:
        """The plan's fixed (n_train, M) loss weights (the same every epoch)."""
        return self._weights


def unit_vectors(weights: torch.Tensor | np.ndarray) -> np.ndarray:
    """(M, K) float64 rows scaled to unit length (a zero row stays zero)."""
    weights = np.asarray(torch.as_tensor(weights).detach().cpu(), np.float64)
    norm = np.linalg.norm(weights, axis=1, keepdims=True)
    return np.divide(weights, norm, out=np.zeros_like(weights), where=norm > 0)
