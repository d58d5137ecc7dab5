"""Dataset sources: what `conf/data/*.yaml` builds by ``_target_``; ``prepare()`` returns the root
of a BRODEN-format dataset, generating or downloading it first when the config asks for it.

A new data format is either a converter to BRODEN format or one source class with ``name``,
``root`` and ``prepare()`` plus one yaml file (docs/architecture.md).
"""
from __future__ import annotations

from pathlib import Path

from net2vec.cache import file_lock
from net2vec.data.broden import DatasetError
from net2vec.data.download import BASE_URL, download_broden
from net2vec.data.synthetic import generate_synthetic


class BrodenSource:
    """BRODEN (or any dataset in its format) at ``root``; ``download: true`` fetches ``release``."""

    def __init__(self, root: str | Path, name: str = "broden", release: str | None = None,
                 download: bool = False, base_url: str = BASE_URL) -> None:
        self.name, self.root = str(name), Path(str(root)).expanduser()
        self.release, self.download, self.base_url = release, bool(download), str(base_url)

    def prepare(self) -> Path:
        """The dataset root; a missing ``index.csv`` is a one-line DatasetError saying how to get it."""
        if (self.root / "index.csv").is_file():
            return self.root
        if self.download and self.release:
            return download_broden(str(self.release), self.root.parent, base_url=self.base_url, target=self.root)
        how = (f"set data.download=true, or run `python -m net2vec.data.download {self.release} "
               f"--dest {self.root.parent}`" if self.release else "generate or copy one there")
        raise DatasetError(f"no dataset at {self.root} (index.csv missing): {how}, or set data.root=DIR")


class SyntheticSource:
    """The embedded synthetic probe set, generated once (locked) into ``root``
    (``generate: false``: an existing set only); an existing set with other parameters is an error."""

    def __init__(self, root: str | Path, name: str = "synthetic", images: int = 2000, size: int = 128,
                 seed: int = 0, concepts: int | None = None, generate: bool = True) -> None:
        self.name, self.root = str(name), Path(str(root)).expanduser()
        self.images, self.size, self.seed = int(images), int(size), int(seed)
        self.concepts, self.generate = concepts, bool(generate)

    def prepare(self) -> Path:
        if not self.generate:
            return BrodenSource(self.root, self.name).prepare()
        with file_lock(self.root):
            try:
                return generate_synthetic(self.root, images=self.images, size=self.size, seed=self.seed,
                                          concepts=self.concepts)
            except ValueError as error:
                raise DatasetError(str(error)) from None
