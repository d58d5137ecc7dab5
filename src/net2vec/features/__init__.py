"""Features: network adapters and their layers, activation stores (extracted or planted), thresholds."""

from net2vec.features.extract import Extraction, extracted_store
from net2vec.features.hooks import LayerExtractor, NetworkError
from net2vec.features.module_network import ModuleNetwork
from net2vec.features.networks import TorchvisionNetwork
from net2vec.features.planted import PlantedSource
from net2vec.features.store import ActivationStore, ActivationStoreError
from net2vec.features.thresholds import TopQuantile
from net2vec.features.tokens import spatial_maps

__all__ = [
    "ActivationStore",
    "ActivationStoreError",
    "Extraction",
    "extracted_store",
    "LayerExtractor",
    "NetworkError",
    "TorchvisionNetwork",
    "ModuleNetwork",
    "TimmNetwork",
    "spatial_maps",
    "SynthNetNetwork",
    "PlantedSource",
    "TopQuantile",
]


def __getattr__(name: str):
    if name == "TimmNetwork":  # imported on first use: timm's import is slow
        from net2vec.features.timm_network import TimmNetwork

        return TimmNetwork
    if (
        name == "SynthNetNetwork"
    ):  # imported on first use: `python -m net2vec.features.synthnet` runs cleanly
        from net2vec.features.synthnet import SynthNetNetwork

        return SynthNetNetwork
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
