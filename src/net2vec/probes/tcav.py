"""``task=tcav``: does the network's decision depend on a concept vector? (docs/tcav.md)

1. CAVs (``probes.cavs``): every tested concept's ``repeats`` vectors and ``random_concepts``
   random controls, fitted as the heads of one classification probe on the layer's pooled
   activations (train split; the Fitter's checkpoints make it resumable).
2. One pass over the validation images: per image batch, one forward pass and one backward pass
   per class set give every directional derivative (``probes.directional``); a TCAV score is the
   share of a class's images with S > 0. The same batch is then run once more per chunk of
   ablation directions (each concept's mean vector and ``ablation_random`` controls, projected
   out and clamped to the concept-absent mean).
3. The test (``statistics.tcav``) and the ablation drops go into a :class:`TcavOutcome`.

Which images a class's score is taken over (``images``): ``labelled`` — the images whose scene
label is the class (the network's classes are the dataset's scene concepts, in store order, as
SynthNet's scene head); ``predicted`` — the images the network assigns to the class (any
classifier); ``all`` — every image for every class; ``auto`` — ``labelled`` when the class
count equals the dataset's scene concepts, else ``predicted``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from net2vec.common.errors import ConfigError
from net2vec.features.extract import ProbeImages, normalise
from net2vec.probes.cavs import CavDataModule, cav_plan, unit_vectors
from net2vec.probes.directional import ClassOutput
from net2vec.probes.tcav_outcome import TcavOutcome, ablation_results
from net2vec.probes.tcav_pass import ClassImages, TcavPass
from net2vec.statistics.tcav import tcav_test

log = logging.getLogger(__name__)
IMAGE_RULES = ("auto", "labelled", "predicted", "all")


class TcavTask:
    """TCAV of the run's layer against the network's classes (built from conf/task/tcav.yaml).

    ``network``: the run's network adapter (a node of the task, ``${network}``); ``module``: the
    classification probe factory (Hydra partial) the CAVs are fitted with."""

    metric = "tcav"

    def __init__(
        self,
        name: str,
        network,
        module: Callable,
        layer: str,
        cache_dir: str | Path,
        random_concepts: int = 100,
        repeats: int = 10,
        resample: str = "split",
        images: str = "auto",
        classes: list[int] | None = None,
        exclude_categories=("scene",),
        min_images: int = 10,
        min_class_images: int = 5,
        alpha: float = 0.05,
        image_batch: int = 32,
        class_batch: int = 16,
        ablation: bool = True,
        ablation_random: int = 20,
        ablation_batch: int = 128,
        batch_size: int = 64,
        seed: int = 0,
        **settings,
    ) -> None:
        if not hasattr(network, "build"):
            raise ConfigError(
                f"network={network.name}: it has no model, so no class scores; task=tcav needs a "
                "classifier (torchvision/timm classifiers, synthnet)"
            )
        if images not in IMAGE_RULES:
            raise ConfigError(f"task.images={images!r}: expected one of {', '.join(IMAGE_RULES)}")
        self.name, self.network, self.module, self.layer = str(name), network, module, str(layer)
        self.cache_dir, self.images = cache_dir, str(images)
        self.random_concepts, self.repeats, self.resample = random_concepts, repeats, resample
        self.classes = None if classes is None else [int(k) for k in classes]
        self.exclude = [str(c) for c in exclude_categories or ()]
        self.min_images, self.min_class_images = int(min_images), int(min_class_images)
        self.alpha, self.seed, self.batch_size = float(alpha), int(seed), int(batch_size)
        self.image_batch, self.class_batch = int(image_batch), int(class_batch)
        self.ablation, self.ablation_random = bool(ablation), int(ablation_random)
        self.ablation_batch = int(ablation_batch)

    def tested_concepts(self, concepts) -> np.ndarray:
        """Concepts outside ``exclude_categories`` with ≥ min_images train positives and negatives."""
        keep = ~np.isin(np.asarray(concepts.categories).astype(str), self.exclude)
        n_train = np.asarray(concepts.n_train)
        n_rest = int((np.asarray(concepts.split) == 0).sum()) - n_train
        tested = np.flatnonzero(keep & (n_train >= self.min_images) & (n_rest >= self.min_images))
        if len(tested) == 0:
            raise ConfigError(
                f"task=tcav: no concept outside {self.exclude} has {self.min_images} train images "
                "with and without it (task.min_images, task.exclude_categories)"
            )
        return tested

    def fit_cavs(self, concepts, activations, tested: np.ndarray, fitter):
        """The plan and its (M, K) unit vectors from one batched fit (probes.cavs)."""
        plan = cav_plan(
            np.asarray(concepts.presence),
            np.asarray(concepts.split),
            tested,
            int(self.repeats),
            int(self.random_concepts),
            self.resample,
            self.seed,
        )
        datamodule = CavDataModule(
            concepts, activations, plan, batch_size=self.batch_size, seed=self.seed
        )
        datamodule.setup()
        probe = self.module(len(plan.concept), activations.num_filters, balance="resample")
        own = copy.copy(fitter)  # the per-category curves (loggers.CategoryScores) read the
        own.callbacks = []  # store's C concepts, not the plan's M columns
        own.fit(probe, datamodule, "cavs")
        return plan, unit_vectors(probe.effective_weights()[0])

    def class_images(self, concepts, num_classes: int) -> ClassImages:
        """Class names and the rule that assigns validation images to classes (module docstring)."""
        scenes = np.flatnonzero(np.asarray(concepts.categories).astype(str) == "scene")
        rule = self.images
        if rule == "auto":
            rule = "labelled" if len(scenes) == num_classes else "predicted"
        if rule == "labelled" and len(scenes) != num_classes:
            raise ConfigError(
                f"task.images=labelled: the network has {num_classes} classes but the dataset "
                f"{len(scenes)} scene concepts; use task.images=predicted"
            )
        presence = np.asarray(concepts.presence)[:, scenes] if rule == "labelled" else None
        labels = None
        if presence is not None:
            labels = np.where(presence.any(1), presence.argmax(1), -1)
        names = (
            np.asarray(concepts.names)[scenes].astype(str)
            if rule == "labelled"
            else np.array([f"class {k}" for k in range(num_classes)])
        )
        return ClassImages(rule, names, labels, self.classes)

    def batches(self, concepts, rows: np.ndarray):
        """(rows, normalised images) of the validation images, in batches."""
        root = Path(str(concepts.attrs["dataset_root"]))
        images = ProbeImages(root, np.asarray(concepts.images)[rows], self.network.input_size)
        for index, batch in DataLoader(images, batch_size=self.image_batch):
            yield rows[index.numpy()], normalise(batch, self.network.mean, self.network.std)

    def run(self, concepts, activations, subsets, fitter, timer) -> TcavOutcome:
        """CAVs, the directional derivatives and ablations, and the test (module docstring)."""
        tested = self.tested_concepts(concepts)
        with timer("cavs"):
            plan, vectors = self.fit_cavs(concepts, activations, tested, fitter)
        root = str(concepts.attrs["dataset_root"])
        model = self.network.build(root, self.cache_dir)
        path = self.network.resolve_layer(self.layer, model)
        net = ClassOutput(model, path, self.network.to_maps).eval()
        rows = np.flatnonzero(np.asarray(concepts.split) == 1)
        with timer("tcav"):
            probe = next(self.batches(concepts, rows[:1]))[1]
            with torch.no_grad():
                num_classes = net(probe)[0].shape[1]
            classes = self.class_images(concepts, num_classes)
            train = np.flatnonzero(np.asarray(concepts.split) == 0)
            directions = None
            if self.ablation:
                directions = ablation_directions(
                    plan, vectors, activations.pooled(), train, self.ablation_random
                )
            tcav = TcavPass(
                net, vectors, classes, self.class_batch, directions, self.ablation_batch
            )
            for batch_rows, images in tqdm(self.batches(concepts, rows), desc="tcav", leave=False):
                tcav.update(batch_rows, images, ablate=self.ablation)
        return self.outcome(concepts, tested, plan, vectors, tcav)

    def ablation_outcome(self, tcav: TcavPass, concepts: int, enough: np.ndarray) -> dict | None:
        """The ablation drops and p (classes with too few images: p left empty)."""
        if tcav.directions is None:
            return None
        results = ablation_results(tcav, concepts)
        for part in results.values():
            part["p"][:, ~enough] = np.nan
        return results

    def outcome(self, concepts, tested, plan, vectors, tcav: TcavPass) -> TcavOutcome:
        scores = tcav.scores()  # (M, n_classes)
        real = ~plan.random
        repeat_scores = scores[real].reshape(len(tested), self.repeats, -1)
        enough = tcav.count >= self.min_class_images
        test = tcav_test(repeat_scores, scores[plan.random], enough, self.alpha)
        return TcavOutcome(
            names=np.asarray(concepts.names)[tested].astype(str),
            categories=np.asarray(concepts.categories)[tested].astype(str),
            classes=tcav.classes.selected_names(),
            n_images=tcav.count.astype(np.int64),
            test=test,
            repeat_scores=repeat_scores,
            random_scores=scores[plan.random],
            vectors=vectors.astype(np.float32),
            ablation=self.ablation_outcome(tcav, len(tested), enough),
            settings={
                "random_concepts": int(self.random_concepts),
                "repeats": int(self.repeats),
                "resample": self.resample,
                "images": tcav.classes.rule,
                "alpha": self.alpha,
                "layer": self.layer,
            },
        )


def ablation_directions(
    plan, vectors: np.ndarray, pooled: np.ndarray, train: np.ndarray, count: int
):
    """(D, K) ablation directions and (2, D) offsets (project out: 0; clamp: the absent mean).

    The directions: each concept's mean repeat vector (renormalised), then the first ``count``
    random controls; the absent mean of ⟨a, ŵ⟩ is taken over the train images without the
    column's labels, from the store's pooled activations (⟨a, ŵ⟩ is linear in a)."""
    repeats = int(plan.repeat.max() + 1)
    real = np.flatnonzero(~plan.random)
    means = unit_vectors(vectors[real].reshape(len(real) // repeats, repeats, -1).mean(1))
    random = np.flatnonzero(plan.random)[:count]
    directions = np.concatenate([means, vectors[random]])
    absent = ~plan.labels[train][:, np.concatenate([real[::repeats], random])]
    projections = np.asarray(pooled, np.float64)[train] @ directions.T  # (n_train, D)
    offsets = (projections * absent).sum(0) / np.maximum(absent.sum(0), 1)
    return torch.from_numpy(directions), torch.from_numpy(np.stack([0 * offsets, offsets]))
