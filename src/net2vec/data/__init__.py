"""Probe data: BRODEN-format reader, synthetic probe set, BRODEN download, concept store.

`ensure_dataset(cfg.data)` is what the pipeline calls: it returns the root of a BRODEN-format
dataset, generating the synthetic set or downloading BRODEN first when the config asks for it.
(The CLI modules are imported lazily so that `python -m net2vec.data.<module>` runs cleanly.)
"""
from __future__ import annotations

from pathlib import Path

from net2vec.cache import file_lock
from net2vec.data.broden import BrodenDataset, DatasetError

__all__ = ["BrodenDataset", "DatasetError", "ensure_dataset", "download_broden", "generate_synthetic"]


def __getattr__(name: str):
    if name == "download_broden":
        from net2vec.data.download import download_broden
        return download_broden
    if name == "generate_synthetic":
        from net2vec.data.synthetic import generate_synthetic
        return generate_synthetic
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def ensure_dataset(data_cfg) -> Path:
    """Root of the dataset `data_cfg` names (config group `data`): generate/download if asked.

    synthetic (``generate: true``): written to ``data.root`` once (locked); an existing set with
    other parameters is an error. BRODEN (``download: true``): fetched into ``data.root``
    (``data.base_url`` optional, for a mirror). Otherwise a missing ``index.csv`` is a one-line
    DatasetError saying how to get the data.
    """
    root = Path(str(data_cfg.root)).expanduser()
    if data_cfg.get("generate", False):
        from net2vec.data.synthetic import generate_synthetic

        with file_lock(root):
            try:
                return generate_synthetic(root, images=int(data_cfg.images), size=int(data_cfg.size),
                                          seed=int(data_cfg.seed), concepts=data_cfg.get("concepts"))
            except ValueError as error:
                raise DatasetError(str(error)) from None
    if (root / "index.csv").is_file():
        return root
    release = data_cfg.get("release")
    if data_cfg.get("download", False) and release:
        from net2vec.data.download import BASE_URL, download_broden

        return download_broden(str(release), root.parent, base_url=str(data_cfg.get("base_url", BASE_URL)),
                               target=root)
    how = (f"set data.download=true, or run `python -m net2vec.data.download {release} --dest {root.parent}`"
           if release else "generate or copy one there")
    raise DatasetError(f"no dataset at {root} (index.csv missing): {how}, or set data.root=DIR")
