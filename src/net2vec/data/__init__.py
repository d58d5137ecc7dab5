"""Probe data: BRODEN-format reader, dataset sources, synthetic probe set, download, concept store.

The pipeline builds a dataset source from ``conf/data`` (``BrodenSource``, ``SyntheticSource``)
and calls its ``prepare()`` for the dataset root. Submodules with a command line (download,
synthetic) are imported on first use, so that ``python -m net2vec.data.<module>`` runs cleanly.
"""

from __future__ import annotations

import importlib

from net2vec.data.broden import BrodenDataset, DatasetError

__all__ = [
    "BrodenDataset",
    "DatasetError",
    "BrodenSource",
    "SyntheticSource",
    "download_broden",
    "generate_synthetic",
]
_LAZY = {
    "BrodenSource": "sources",
    "SyntheticSource": "sources",
    "download_broden": "download",
    "generate_synthetic": "synthetic",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"net2vec.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
