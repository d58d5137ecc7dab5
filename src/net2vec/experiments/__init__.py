"""Network Dissection follow-up experiments on the concept and activation stores.

`python experiments.py network=synthnet experiments.run=[alignment,robustness]` calls `run(cfg)`,
which writes, per experiment, CSV tables and a PNG figure into the run directory, plus
``experiments.json`` (the headline numbers):

- ``alignment``  axis alignment: random rotations of the filter space, PCA loadings
  (alignment_rotation.csv, alignment_rotation_summary.csv, alignment_pca.csv, alignment.png);
- ``robustness`` detectors under input noise, rotation and patch shuffling
  (robustness.csv, robustness.png); needs a real network;
- ``ablation``   unit ablation of any classifier: agreement with its own top-1 and the drop of
  its top class's probability as a concept's units are zeroed; scene accuracy too where the
  network's classes are the dataset's scenes (SynthNet) (ablation.csv, ablation.png);
- ``summaries``  top concepts per unit / units per concept for every layer
  (layer_units.csv, layer_concepts.csv, layer_detectors.csv, layer_detectors.png).

Each module's functions also work from a notebook on a concept store and an activation store.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from net2vec.data.datamodules import SegmentationDataModule
from net2vec.experiments.ablation import ablation_test, run_ablation
from net2vec.experiments.alignment import (
    concept_loadings,
    pca_test,
    random_rotation,
    rotate,
    rotation_test,
    run_alignment,
)
from net2vec.experiments.common import (
    ExperimentError,
    TransformedActivations,
    at_quantile,
    detector_counts,
    dissect,
    dissect_kwargs,
)
from net2vec.experiments.context import ExperimentContext
from net2vec.experiments.robustness import perturbed_store, robustness_test, run_robustness
from net2vec.experiments.summaries import layer_summaries, run_summaries
from net2vec.run.config import check_config
from net2vec.run.folders import run_dir_of
from net2vec.run.pipeline import prepare_activation_store, prepare_stores

log = logging.getLogger(__name__)
EXPERIMENTS = ("alignment", "robustness", "ablation", "summaries")
__all__ = [
    "run",
    "context",
    "ExperimentContext",
    "EXPERIMENTS",
    "ExperimentError",
    "TransformedActivations",
    "dissect",
    "detector_counts",
    "random_rotation",
    "rotate",
    "rotation_test",
    "pca_test",
    "concept_loadings",
    "robustness_test",
    "perturbed_store",
    "ablation_test",
    "layer_summaries",
]


def _selected(cfg: DictConfig) -> list[str]:
    chosen = [str(e) for e in cfg.experiments.run]
    for name in chosen:
        if name not in EXPERIMENTS:
            raise ExperimentError(
                f"experiments.run contains {name!r}: expected some of {', '.join(EXPERIMENTS)}"
            )
    return chosen


def context(cfg: DictConfig) -> ExperimentContext:
    """The experiments' view of the config: network adapter, τ, NetDissect settings, store factory,
    and the all-filter segmentation probe trainer (``task``, ``trainer``)."""
    task = hydra.utils.instantiate(cfg.task)

    def store(concepts, layer: str | None = None, transform=None):
        return prepare_activation_store(cfg, concepts, layer, transform)

    def train_probe(concepts, source):
        datamodule = SegmentationDataModule(
            concepts,
            source,
            batch_size=int(cfg.task.batch_size),
            in_memory=True,
            seed=int(cfg.seed),
        )
        module = task.probe(datamodule, source.num_filters, [])
        trainer = hydra.utils.instantiate(
            cfg.trainer, logger=False, enable_checkpointing=False, use_distributed_sampler=False
        )
        trainer.fit(module, datamodule=datamodule)
        trainer.validate(module, datamodule=datamodule, verbose=False)
        return module

    network = hydra.utils.instantiate(cfg.network)
    section = (cfg.get("experiments") or {}).get("dissect")
    return ExperimentContext(
        network,
        str(cfg.layer),
        float(cfg.probe.quantile),
        dissect_kwargs(section),
        Path(cfg.paths.cache_dir),
        store,
        train_probe,
        list(network.layers),
    )


def run(cfg: DictConfig) -> dict:
    """Run the experiments listed in ``cfg.experiments.run``; return (and write) their summary."""
    check_config(cfg)
    chosen = _selected(cfg)
    out_dir = run_dir_of(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    stores = prepare_stores(cfg)
    concepts, store = stores.concepts, stores.activations
    ctx = context(cfg)
    params = cfg.experiments
    summary: dict = {"network": str(cfg.network.name), "layer": str(cfg.layer)}
    planted = not hasattr(ctx.network, "build")
    for name in chosen:
        if planted and name in ("robustness", "ablation"):
            log.warning("experiments: %s skipped (network=planted has no images or model)", name)
            summary[name] = "skipped: network=planted"
            continue
        log.info("experiment %s ...", name)
        if name == "alignment":
            summary[name] = run_alignment(ctx, concepts, store, out_dir, params.alignment)
        elif name == "robustness":
            summary[name] = run_robustness(ctx, concepts, store, out_dir, params.robustness)
        elif name == "ablation":
            summary[name] = _ablation(
                ctx, concepts, out_dir, OmegaConf.to_container(params.ablation, resolve=True)
            )
        else:
            summary[name] = run_summaries(ctx, concepts, out_dir, params.summaries)
    (out_dir / "experiments.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"experiments written to {out_dir}")
    return summary


def _ablation(ctx: ExperimentContext, concepts, out_dir: Path, params: dict) -> dict:
    """NetDissect of the ablated layer (its own store), then the ablation sweep."""
    layer = str(params.get("layer") or ctx.layer)
    quantile = float(params.get("quantile") or ctx.quantile)
    store = ctx.store(concepts, layer)
    result = dissect(concepts, at_quantile(store, quantile), **ctx.dissect)
    return run_ablation(ctx, concepts, result, out_dir, {**params, "layer": layer})
