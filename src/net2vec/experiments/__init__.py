"""Network Dissection follow-up experiments on the concept and activation stores.

`python experiments.py network=synthnet experiments.run=[alignment,robustness]` calls `run(cfg)`,
which writes, per experiment, CSV tables and a PNG figure into the run directory, plus
``experiments.json`` (the headline numbers):

- ``alignment``  axis alignment: random rotations of the filter space, PCA loadings
  (alignment_rotation.csv, alignment_rotation_summary.csv, alignment_pca.csv, alignment.png);
- ``robustness`` detectors under input noise, rotation and patch shuffling
  (robustness.csv, robustness.png); needs a real network;
- ``ablation``   unit ablation on SynthNet's scene head (ablation.csv, ablation.png);
- ``summaries``  top concepts per unit / units per concept for every layer
  (layer_units.csv, layer_concepts.csv, layer_detectors.csv, layer_detectors.png).

Each module's functions also work from a notebook on a concept store and an activation store.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from net2vec.experiments.ablation import ablation_test, run_ablation
from net2vec.experiments.alignment import concept_loadings, pca_test, random_rotation, rotate, rotation_test, run_alignment
from net2vec.experiments.common import ExperimentError, TransformedActivations, detector_counts, dissect
from net2vec.experiments.robustness import perturbed_store, robustness_test, run_robustness
from net2vec.experiments.summaries import layer_summaries, run_summaries

log = logging.getLogger(__name__)
EXPERIMENTS = ("alignment", "robustness", "ablation", "summaries")
__all__ = ["run", "EXPERIMENTS", "ExperimentError", "TransformedActivations", "dissect", "detector_counts",
           "random_rotation", "rotate", "rotation_test", "pca_test", "concept_loadings", "robustness_test",
           "perturbed_store", "ablation_test", "layer_summaries"]


def _selected(cfg: DictConfig) -> list[str]:
    chosen = [str(e) for e in cfg.experiments.run]
    for name in chosen:
        if name not in EXPERIMENTS:
            raise ExperimentError(f"experiments.run contains {name!r}: expected some of {', '.join(EXPERIMENTS)}")
    return chosen


def run(cfg: DictConfig) -> dict:
    """Run the experiments listed in ``cfg.experiments.run``; return (and write) their summary."""
    from net2vec.config import check_config
    from net2vec.data import ensure_dataset
    from net2vec.data.concept_store import prepare_concept_store
    from net2vec.features.extract import prepare_activation_store
    from net2vec.pipeline import run_dir_of

    check_config(cfg)
    chosen = _selected(cfg)
    out_dir = run_dir_of(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    concepts = prepare_concept_store(ensure_dataset(cfg.data), Path(cfg.paths.cache_dir))
    store = prepare_activation_store(cfg, concepts)
    params = cfg.experiments
    summary: dict = {"network": str(cfg.network.name), "layer": str(cfg.layer)}
    planted = str(cfg.network.arch) == "planted"
    for name in chosen:
        if planted and name in ("robustness", "ablation"):
            log.warning("experiments: %s skipped (network=planted has no images or model)", name)
            summary[name] = "skipped: network=planted"
            continue
        log.info("experiment %s ...", name)
        if name == "alignment":
            summary[name] = run_alignment(cfg, concepts, store, out_dir, params.alignment)
        elif name == "robustness":
            summary[name] = run_robustness(cfg, concepts, store, out_dir, params.robustness)
        elif name == "ablation":
            summary[name] = _ablation(cfg, concepts, out_dir, params.ablation)
        else:
            summary[name] = run_summaries(cfg, concepts, out_dir, params.summaries)
    (out_dir / "experiments.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"experiments written to {out_dir}")
    return summary


def _ablation(cfg: DictConfig, concepts, out_dir: Path, params) -> dict:
    """NetDissect of the ablated layer (its own store), then the ablation sweep."""
    from net2vec.experiments.common import at_quantile, dissect_kwargs
    from net2vec.features.extract import prepare_activation_store

    layer = str(params.get("layer") or cfg.layer)
    quantile = float(params.get("quantile") or cfg.probe.quantile)
    store = prepare_activation_store(OmegaConf.merge(cfg, {"layer": layer}), concepts)
    result = dissect(concepts, at_quantile(store, quantile), **dissect_kwargs(cfg))
    return run_ablation(cfg, concepts, result, out_dir, {**OmegaConf.to_container(params, resolve=True), "layer": layer})
