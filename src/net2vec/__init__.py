"""net2vec: how a vision network's filters encode concepts (Net2Vec, Fong & Vedaldi 2018, and
Network Dissection), as a PyTorch Lightning + Hydra framework.

The command line is ``python train.py`` / ``python evaluate.py`` (docs/architecture.md); from
Python, the parts below compose the same way the configs do::

    from net2vec import train                      # train(cfg) with a composed Hydra config
    from net2vec import TorchvisionNetwork, SegmentationTask, SetIoU

Names are imported on first use, so ``import net2vec`` stays light (no torch import).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"
_PUBLIC = {
    "train": "net2vec.run.pipeline",
    "TorchvisionNetwork": "net2vec.features.networks",
    "SynthNetNetwork": "net2vec.features.synthnet",
    "TimmNetwork": "net2vec.features.timm_network",
    "ModuleNetwork": "net2vec.features.module_network",
    "PlantedSource": "net2vec.features.planted",
    "ActivationStore": "net2vec.features.store",
    "Extraction": "net2vec.features.extract",
    "ConceptStore": "net2vec.data.concept_store",
    "BrodenSource": "net2vec.data.sources",
    "SyntheticSource": "net2vec.data.sources",
    "SegmentationTask": "net2vec.probes.tasks",
    "ClassificationTask": "net2vec.probes.tasks",
    "SegmentationProbe": "net2vec.probes.segmentation",
    "ClassificationProbe": "net2vec.probes.classification",
    "SetIoU": "net2vec.statistics.iou",
    "BalancedAccuracy": "net2vec.statistics.accuracy",
    "evaluate": "net2vec.analysis",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'net2vec' has no attribute {name!r}")
