"""Features: networks and their layers, activation stores (extracted or planted), thresholds."""
from net2vec.features.extract import ActivationStore, ActivationStoreError, prepare_activation_store
from net2vec.features.networks import LayerExtractor, NetworkError, build_network, resolve_layer
from net2vec.features.thresholds import TopQuantile

__all__ = ["ActivationStore", "ActivationStoreError", "prepare_activation_store", "LayerExtractor",
           "NetworkError", "build_network", "resolve_layer", "TopQuantile"]
