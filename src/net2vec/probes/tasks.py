"""Tasks: the probes of one run in the paper's order — single filter, all filters, top-F subsets.

A task is built by ``_target_`` from ``conf/task/<name>.yaml`` with plain values and two
factories (Hydra ``_partial_``): ``datamodule(concepts, activations)`` and ``module(num_concepts,
num_filters, …, mask=, subsets=, all_filters_head=)``. :meth:`ProbeTask.run` is the skeleton both
tasks share (docs/method.md §3–5): build the data, score the single filter, fit the all-filter
probe (cached), then every top-F subset at once (one head per F, masks from the all-filter |w|),
and gather a :class:`net2vec.run.outputs.ProbeOutcome`. Subclasses fill in the steps that differ.
Every validation score of the outcome is recomputed in float64 from the per-image evidence
(``evidence_scores``), the sums its intervals, tests and nulls use (docs/statistics.md).
A new task is one subclass (or any class with ``name``, ``metric`` and ``run``) and one yaml file.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tqdm.auto import tqdm

from net2vec.probes.evidence import cls_evidence, pair_ious, restrict_pairs, seg_evidence
from net2vec.probes.fitting import Fitter
from net2vec.probes.outcome import ProbeOutcome
from net2vec.probes.single_filter import single_filter_seg
from net2vec.probes.subsets import check_subsets, subset_masks, top_filters
from net2vec.statistics.sums import EvidenceSums


class ProbeTask:
    """The shared skeleton of the segmentation and classification tasks (module docstring)."""

    metric = "score"

    def __init__(self, name: str, datamodule: Callable, module: Callable, **settings) -> None:
        self.name, self.datamodule, self.module = str(name), datamodule, module
        self.settings = settings

    def run(self, concepts, activations, subsets: list[int], fitter: Fitter, timer) -> ProbeOutcome:
        """Single filter, all filters (cached) and the top-F subsets of this task's concepts."""
        num_filters = activations.num_filters
        listed = check_subsets(list(subsets), num_filters)
        datamodule = self.datamodule(concepts, activations)
        datamodule.setup()
        single = self.single_filter(datamodule, concepts, num_filters, timer)
        with timer("probe_all_filters"):
            probe = fitter.fit_all_filters(self.probe(datamodule, num_filters, []), datamodule)
            self.decide(probe, datamodule, fitter)
        weights = probe.effective_weights()[0].detach().cpu().numpy()
        sizes = self.subset_sizes(listed)
        parts, heads = {}, [(probe, [f"{self.metric}_val"])]
        if sizes:
            with timer("probe_subsets"):
                subset_probe = self.probe(
                    datamodule, num_filters, sizes, mask=subset_masks(weights, sizes)[1:]
                )
                fitter.fit(subset_probe, datamodule, "subsets", subsets=sizes)
                self.decide(subset_probe, datamodule, fitter)
            parts = subset_parts(subset_probe, weights, sizes)
            heads.append((subset_probe, [f"{self.metric}_val_F{size}" for size in sizes]))
        with timer("evidence"):
            evidence = self.evidence(datamodule, single, heads)
        return self.outcome(concepts, single, probe, weights, parts, listed, evidence)

    def single_filter(self, datamodule, concepts, num_filters: int, timer):
        """The best single filter per concept, where the task scores it before the probes."""
        return None

    def decide(self, probe, datamodule, fitter: Fitter) -> None:
        """After a fit: settle the probe's decision rule (σ = 0.5 needs nothing)."""

    def subset_sizes(self, listed: list[int]) -> list[int]:
        """The F values to train (the listed ones; classification adds F = 1)."""
        return listed

    def probe(self, datamodule, num_filters: int, subsets: list[int], mask=None):
        """The all-filter probe (no subsets) or the top-F probes (one head per F, no all-filter head)."""
        raise NotImplementedError

    def evidence(self, datamodule, single, heads: list[tuple]) -> dict:
        """Per-image validation terms of every score (probes.evidence); heads: [(module, columns)]."""
        return {}

    def outcome(
        self,
        concepts,
        single,
        probe,
        weights: np.ndarray,
        parts: dict,
        listed: list[int],
        evidence: dict,
    ) -> ProbeOutcome:
        raise NotImplementedError


def subset_parts(module, weights_all: np.ndarray, subsets: list[int]) -> dict:
    """Per F: validation score, weights (zero outside the subset), bias and the kept filters.

    ``module`` holds one head per F (in ``subsets`` order) and no all-filter head."""
    weights = module.effective_weights().detach().cpu().numpy()
    bias = (
        module.bias.detach().cpu().numpy()
        if module.bias is not None
        else np.zeros(weights.shape[:2])
    )
    score_val = module.val_score()
    return {
        size: {
            "score_val": score_val[head],
            "weights": weights[head].astype(np.float32),
            "bias": bias[head].astype(np.float32),
            "filters": top_filters(weights_all, size),
        }
        for head, size in enumerate(subsets)
    }


def evidence_scores(task: str, evidence: dict, num_concepts: int, parts: dict) -> dict:
    """Validation scores (C,) float64 of every evidence column, from the per-image sums; the
    subsets' ``score_val`` are replaced in ``parts`` (the probes' float32 metrics agree to ~1e-6)."""
    observed = EvidenceSums(task, evidence, num_concepts).observed()
    metric = "iou" if task == "seg" else "acc"
    for size, part in parts.items():
        part["score_val"] = observed.get(f"{metric}_val_F{size}", part["score_val"])
    return observed


class SegmentationTask(ProbeTask):
    """Segmentation (docs/method.md §3): concepts with pixel-level annotation, set IoU."""

    metric = "iou"

    def __init__(
        self,
        name: str,
        datamodule: Callable,
        module: Callable,
        align_corners: bool = True,
        **settings,
    ) -> None:
        super().__init__(name, datamodule, module, **settings)
        self.align_corners = bool(align_corners)

    def single_filter(self, datamodule, concepts, num_filters: int, timer):
        with timer("single_filter"):
            batches = tqdm(
                datamodule.probe_dataloader(), desc="single-filter IoU", mininterval=1, leave=False
            )
            return single_filter_seg(
                batches,
                concepts.num_concepts,
                num_filters,
                concepts.mask_size,
                concepts.split,
                align_corners=self.align_corners,
                per_image=False,  # from the evidence pass instead
            )

    def decide(self, probe, datamodule, fitter: Fitter) -> None:
        """``probe.decision=calibrated``: thresholds from the train split, then validate again."""
        if probe.hparams.decision == "calibrated":
            batches = tqdm(
                datamodule.probe_dataloader(split=0), desc="calibrating", mininterval=1, leave=False
            )
            probe.calibrate(batches)
            fitter.validate(probe, datamodule)

    def evidence(self, datamodule, single, heads: list[tuple]) -> dict:
        batches = tqdm(
            datamodule.probe_dataloader(split=1), desc="val evidence", mininterval=1, leave=False
        )
        concepts = datamodule.concepts
        return seg_evidence(batches, single.best, heads, concepts.mask_size, self.align_corners)

    def probe(self, datamodule, num_filters: int, subsets: list[int], mask=None):
        concepts = datamodule.concepts
        return self.module(
            concepts.num_concepts,
            num_filters,
            concepts.alpha(),
            mask=mask,
            subsets=subsets,
            all_filters_head=not subsets,
        )

    def outcome(
        self,
        concepts,
        single,
        probe,
        weights: np.ndarray,
        parts: dict,
        listed: list[int],
        evidence: dict,
    ) -> ProbeOutcome:
        """Restrict everything to pixel-level concepts and gather the per-image IoUs of val pairs."""
        keep = np.flatnonzero(concepts.pixel_level)
        remap = np.full(concepts.num_concepts, -1)
        remap[keep] = np.arange(len(keep))
        evidence = restrict_pairs(evidence, remap)
        for part in parts.values():
            for key in ("score_val", "weights", "bias", "filters"):
                part[key] = part[key][keep]
        if probe.hparams.head != "linear":  # concept vectors are defined for the linear head only
            weights = np.zeros_like(weights)
        observed = evidence_scores("seg", evidence, len(keep), parts)
        return ProbeOutcome(
            task="seg",
            names=concepts.names[keep],
            categories=concepts.categories[keep],
            label_numbers=concepts.label_numbers[keep],
            n_train=concepts.n_train[keep],
            n_val=concepts.n_val[keep],
            single_filter=single.best[keep],
            single_scores={
                "single_iou_train": single.best_iou_train[keep],
                "single_iou_val": observed["single_iou_val"],
            },
            score_val=observed["iou_val"],
            weights=weights[keep].astype(np.float32),
            bias=np.zeros(len(keep), np.float32),
            subsets=parts,
            filter_scores={"train": single.iou_train[keep], "val": single.iou_val[keep]},
            per_image=pair_ious(evidence),
            evidence=evidence,
            variant={k: probe.hparams[k] for k in ("head", "hidden", "loss", "decision")},
            probe_columns=probe_columns(probe, keep),
        )


def probe_columns(probe, keep: np.ndarray) -> dict[str, np.ndarray]:
    """results.csv columns a variant adds: the calibrated logit threshold of the all-filter head."""
    if probe.hparams.decision != "calibrated":
        return {}
    return {"logit_threshold": probe.threshold[0].detach().cpu().numpy()[keep]}


class ClassificationTask(ProbeTask):
    """Classification (docs/method.md §4): every concept, scene and texture included, balanced
    accuracy; F = 1 is always trained and is the single filter (§5)."""

    metric = "acc"

    def subset_sizes(self, listed: list[int]) -> list[int]:
        return sorted(set(listed) | {1})

    def probe(self, datamodule, num_filters: int, subsets: list[int], mask=None):
        return self.module(
            datamodule.concepts.num_concepts,
            num_filters,
            n_pos=datamodule.n_pos,
            n_neg=datamodule.n_neg,
            mask=mask,
            subsets=subsets,
            all_filters_head=not subsets,
        )

    def evidence(self, datamodule, single, heads: list[tuple]) -> dict:
        evidence = cls_evidence(datamodule.batch(datamodule.rows[1]), heads)
        preds = evidence["preds"]
        preds["single_acc_val"] = preds["acc_val_F1"]  # F = 1 is the single filter (§5)
        return evidence

    def outcome(
        self,
        concepts,
        single,
        probe,
        weights: np.ndarray,
        parts: dict,
        listed: list[int],
        evidence: dict,
    ) -> ProbeOutcome:
        observed = evidence_scores("cls", evidence, concepts.num_concepts, parts)
        single = parts[1] if 1 in listed else parts.pop(1)
        if 1 not in listed:
            evidence["preds"].pop("acc_val_F1")
        return ProbeOutcome(
            task="cls",
            names=concepts.names,
            categories=concepts.categories,
            label_numbers=concepts.label_numbers,
            n_train=concepts.n_train,
            n_val=concepts.n_val,
            single_filter=single["filters"][:, 0],
            single_scores={"single_acc_val": observed["single_acc_val"]},
            score_val=observed["acc_val"],
            weights=weights.astype(np.float32),
            bias=probe.bias[0].detach().cpu().numpy().astype(np.float32),
            subsets=parts,
            evidence=evidence,
        )
