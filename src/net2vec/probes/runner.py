"""The probes of one run, in the paper's order: single filter, all filters, top-F subsets.

``run_probes`` returns a :class:`net2vec.outputs.ProbeOutcome` restricted to the task's
concepts (pixel-level ones for segmentation, all for classification).
"""
from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm

from net2vec.config import check_subsets
from net2vec.data.datamodules import SegmentationDataModule
from net2vec.outputs import ProbeOutcome
from net2vec.probes.fitting import checkpoint_dir, fit, fit_all_filter_probe
from net2vec.probes.segmentation import SegmentationProbe
from net2vec.probes.single_filter import single_filter_seg
from net2vec.probes.subsets import subset_masks, top_filters


def optimiser_factories(cfg: DictConfig):
    task = cfg.task
    optimizer = hydra.utils.instantiate(task.optimizer)
    scheduler = hydra.utils.instantiate(task.scheduler) if task.get("scheduler") else None
    return optimizer, scheduler


def seg_module(cfg: DictConfig, concepts, num_filters: int, subsets: list[int], mask=None) -> SegmentationProbe:
    """The all-filter probe (no subsets) or the top-F probes (one head per F, no all-filter head)."""
    optimizer, scheduler = optimiser_factories(cfg)
    return SegmentationProbe(concepts.num_concepts, num_filters, concepts.alpha(), mask=mask,
                             subsets=subsets, loss=cfg.task.loss, bias=cfg.task.bias,
                             align_corners=cfg.task.align_corners, ref_batch_size=cfg.task.ref_batch_size,
                             optimizer=optimizer, scheduler=scheduler, seed=cfg.seed,
                             all_filters_head=not subsets)


def subset_parts(module, weights_all: np.ndarray, subsets: list[int], score_val: np.ndarray) -> dict:
    """Per F: validation score, weights (zero outside the subset), bias and the kept filters.

    ``module`` holds one head per F (in ``subsets`` order) and no all-filter head."""
    weights = module.effective_weights().detach().cpu().numpy()
    bias = module.bias.detach().cpu().numpy() if module.bias is not None else np.zeros(weights.shape[:2])
    return {size: {"score_val": score_val[head], "weights": weights[head].astype(np.float32),
                   "bias": bias[head].astype(np.float32), "filters": top_filters(weights_all, size)}
            for head, size in enumerate(subsets)}


def batch_device(cfg: DictConfig) -> str | None:
    """'cuda' when the probes train on one GPU and ``probe.device_batches`` allows it: the
    in-memory data then sit on the GPU and batches are assembled there (data.device_batches)."""
    choice = cfg.probe.get("device_batches", "auto")
    accelerator, devices = str(cfg.trainer.get("accelerator", "cpu")), cfg.trainer.get("devices", 1)
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    single = devices in (1, "1") or (devices == "auto" and torch.cuda.device_count() == 1)
    if choice is False or not (on_gpu and single and torch.cuda.is_available()):
        return None
    return "cuda"


def run_segmentation(cfg: DictConfig, concepts, activations, logger, timer, run_dir: Path) -> ProbeOutcome:
    """Single-filter set IoU, the all-filter probe (cached) and the top-F probes for seg concepts."""
    num_filters = activations.num_filters
    subsets = check_subsets(list(cfg.probe.subsets), num_filters)
    datamodule = SegmentationDataModule(concepts, activations, batch_size=cfg.task.batch_size,
                                        in_memory=cfg.probe.in_memory, num_workers=cfg.probe.num_workers,
                                        seed=cfg.seed, device=batch_device(cfg),
                                        memory_budget=int(float(cfg.probe.get("memory_gib", 2)) * 2**30))
    datamodule.setup()
    with timer("single_filter"):
        batches = tqdm(datamodule.probe_dataloader(), desc="single-filter IoU", mininterval=1, leave=False)
        single = single_filter_seg(batches, concepts.num_concepts, num_filters,
                                   concepts.mask_size, concepts.split, align_corners=cfg.task.align_corners)
    stores = {"concepts": concepts.path.name, "activations": activations.path.name}
    with timer("probe_all_filters"):
        probe = fit_all_filter_probe(cfg, seg_module(cfg, concepts, num_filters, []), datamodule,
                                     logger, run_dir, stores)
    weights = probe.effective_weights()[0].detach().cpu().numpy()
    parts = {}
    if subsets:
        with timer("probe_subsets"):
            masks = subset_masks(weights, subsets)[1:]
            subset_probe = seg_module(cfg, concepts, num_filters, subsets, mask=masks)
            fit(cfg, subset_probe, datamodule, logger,
                checkpoint_dir(cfg, run_dir, "subsets", stores, subsets=subsets))
        parts = subset_parts(subset_probe, weights, subsets, subset_probe.val_iou)
    return seg_outcome(concepts, single, probe, weights, parts)


def seg_outcome(concepts, single, probe, weights: np.ndarray, parts: dict) -> ProbeOutcome:
    """Restrict everything to pixel-level concepts and gather the per-image IoUs of val pairs."""
    keep = np.flatnonzero(concepts.pixel_level)
    remap = np.full(concepts.num_concepts, -1)
    remap[keep] = np.arange(len(keep))
    per_image = single_vs_learned_per_image(single.per_image, probe.val_per_image, remap)
    for part in parts.values():
        for key in ("score_val", "weights", "bias", "filters"):
            part[key] = part[key][keep]
    return ProbeOutcome(
        task="seg", names=concepts.names[keep], categories=concepts.categories[keep],
        label_numbers=concepts.label_numbers[keep], n_train=concepts.n_train[keep],
        n_val=concepts.n_val[keep], single_filter=single.best[keep],
        single_scores={"single_iou_train": single.best_iou_train[keep],
                       "single_iou_val": single.best_iou_val[keep]},
        score_val=probe.val_iou[0][keep], weights=weights[keep].astype(np.float32),
        bias=np.zeros(len(keep), np.float32), subsets=parts,
        filter_scores={"train": single.iou_train[keep], "val": single.iou_val[keep]},
        per_image=per_image)


def single_vs_learned_per_image(single: dict, learned: dict, remap: np.ndarray) -> dict:
    """Align IoU_ind of the best filter and of the learned weights on the same val pairs."""
    def keyed(part: dict) -> dict:
        return {(int(i), int(c)): float(v) for i, c, v in zip(part["image"], part["concept"], part["iou"])}

    best, all_filters = keyed(single), keyed(learned)
    pairs = sorted(set(best) & set(all_filters))
    image = np.array([p[0] for p in pairs], dtype=np.int64)
    concept = np.array([remap[p[1]] for p in pairs], dtype=np.int64)
    return {"image": image, "concept": concept,
            "single_iou": np.array([best[p] for p in pairs], dtype=np.float32),
            "all_iou": np.array([all_filters[p] for p in pairs], dtype=np.float32)}


def run_probes(cfg: DictConfig, concepts, activations, logger, timer, run_dir: Path) -> ProbeOutcome:
    """Dispatch on the task."""
    if cfg.task.name == "seg":
        return run_segmentation(cfg, concepts, activations, logger, timer, run_dir)
    from net2vec.probes.classification_runner import run_classification

    return run_classification(cfg, concepts, activations, logger, timer, run_dir)
