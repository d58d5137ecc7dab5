"""Classification probes of one run (PROTOCOL §4–5): all filters (cached), then F = 1 (the
single filter for classification) and every listed F, all subsets trained at once."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from net2vec.config import check_subsets
from net2vec.data.datamodules import ClassificationDataModule
from net2vec.outputs import ProbeOutcome
from net2vec.probes.classification import ClassificationProbe
from net2vec.probes.fitting import checkpoint_dir, fit, fit_all_filter_probe
from net2vec.probes.runner import optimiser_factories, subset_parts
from net2vec.probes.subsets import subset_masks


def cls_module(cfg: DictConfig, datamodule, num_filters: int, subsets: list[int], mask=None) -> ClassificationProbe:
    """The all-filter probe (no subsets) or the top-F probes (one head per F)."""
    optimizer, scheduler = optimiser_factories(cfg)
    return ClassificationProbe(datamodule.concepts.num_concepts, num_filters, n_pos=datamodule.n_pos,
                               n_neg=datamodule.n_neg, mask=mask, subsets=subsets, balance=cfg.task.balance,
                               ref_batch_size=cfg.task.ref_batch_size, optimizer=optimizer,
                               scheduler=scheduler if scheduler is not None else False, seed=cfg.seed,
                               all_filters_head=not subsets)


def run_classification(cfg: DictConfig, concepts, activations, logger, timer, run_dir: Path) -> ProbeOutcome:
    """All concepts, scene and texture included; F = 1 is always trained (single filter)."""
    num_filters = activations.num_filters
    listed = check_subsets(list(cfg.probe.subsets), num_filters)
    subsets = sorted(set(listed) | {1})
    datamodule = ClassificationDataModule(concepts, activations, batch_size=cfg.task.batch_size, seed=cfg.seed,
                                          balance=cfg.task.balance, thresholded=cfg.task.thresholded)
    datamodule.setup()
    stores = {"concepts": concepts.path.name, "activations": activations.path.name}
    with timer("probe_all_filters"):
        probe = fit_all_filter_probe(cfg, cls_module(cfg, datamodule, num_filters, []), datamodule,
                                     logger, run_dir, stores)
    weights = probe.effective_weights()[0].detach().cpu().numpy()
    with timer("probe_subsets"):
        subset_probe = cls_module(cfg, datamodule, num_filters, subsets, mask=subset_masks(weights, subsets)[1:])
        fit(cfg, subset_probe, datamodule, logger, checkpoint_dir(cfg, run_dir, "subsets", stores, subsets=subsets))
    parts = subset_parts(subset_probe, weights, subsets, subset_probe.val_acc)
    single = parts[1] if 1 in listed else parts.pop(1)
    return ProbeOutcome(
        task="cls", names=concepts.names, categories=concepts.categories,
        label_numbers=concepts.label_numbers, n_train=concepts.n_train, n_val=concepts.n_val,
        single_filter=single["filters"][:, 0], single_scores={"single_acc_val": single["score_val"]},
        score_val=probe.val_acc[0], weights=weights.astype(np.float32),
        bias=probe.bias[0].detach().cpu().numpy().astype(np.float32), subsets=parts)
