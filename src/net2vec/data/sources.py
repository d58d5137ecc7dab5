"""Dataset sources: what `conf/data/*.yaml` builds by ``_target_``; ``prepare()`` returns the root
of a BRODEN-format dataset, generating or downloading it first when the config asks for it.

A new data format is either a converter to BRODEN format or one source class with ``name``,
``root`` and ``prepare()`` plus one yaml file (docs/architecture.md).
"""

from __future__ import annotations

import json
from pathlib import Path

from net2vec.common.cache import file_lock
from net2vec.data.broden import DatasetError
from net2vec.data.download import BASE_URL, download_broden
from net2vec.data.synthetic import generate_synthetic


class BrodenSource:
    """BRODEN (or any dataset in its format) at ``root``; ``download: true`` fetches ``release``."""

    def __init__(
        self,
        root: str | Path,
        name: str = "broden",
        release: str | None = None,
        download: bool = False,
        base_url: str = BASE_URL,
        verify: str = "stat",
    ) -> None:
        self.name, self.root = str(name), Path(str(root)).expanduser()
        self.verify = str(verify)  # how the stores fingerprint the images (data.fingerprint)
        self.release, self.download, self.base_url = release, bool(download), str(base_url)

    def prepare(self) -> Path:
        """The dataset root; a missing ``index.csv`` is a one-line DatasetError saying how to get it."""
        if (self.root / "index.csv").is_file():
            return self.root
        if self.download and self.release:
            return download_broden(
                str(self.release), self.root.parent, base_url=self.base_url, target=self.root
            )
        how = (
            f"set data.download=true, or run `python -m net2vec.data.download {self.release} "
            f"--dest {self.root.parent}`"
            if self.release
            else "generate or copy one there"
        )
        raise DatasetError(
            f"no dataset at {self.root} (index.csv missing): {how}, or set data.root=DIR"
        )


class SyntheticSource:
    """The embedded synthetic probe set, generated once (locked) into ``root``.

    ``generate: true`` generates it when ``root`` is missing or empty and named ``synthetic*``
    (the default roots are), so a mistyped ``data.root`` is an error rather than a new set;
    ``always`` generates into any missing or empty folder; ``false`` uses an existing set only.
    An existing set with other parameters is an error naming the data.* settings that fit it."""

    def __init__(
        self,
        root: str | Path,
        name: str = "synthetic",
        images: int = 2000,
        size: int = 128,
        seed: int = 0,
        concepts: int | None = None,
        generate: bool = True,
        verify: str = "stat",
    ) -> None:
        self.name, self.root = str(name), Path(str(root)).expanduser()
        self.verify = str(verify)
        self.images, self.size, self.seed = int(images), int(size), int(seed)
        mode = str(generate).lower()
        self.concepts = concepts
        self.generate = "always" if mode == "always" else mode not in ("false", "0", "none")

    def prepare(self) -> Path:
        """The set's root, generated first when missing (module docstring: where it may be)."""
        if not self.generate:
            return BrodenSource(self.root, self.name).prepare()
        self._check_existing()
        fresh = not self.root.exists() or (self.root.is_dir() and not any(self.root.iterdir()))
        if (
            not (self.root / "index.csv").is_file()
            and self.generate != "always"
            and not (fresh and self.root.name.startswith("synthetic"))
        ):
            raise DatasetError(
                f"data.root={self.root}: no dataset there (index.csv missing), and a new synthetic "
                "set is only generated into a missing or empty folder named synthetic*: check "
                "the path, or set data.generate=always to generate one there"
            )
        with file_lock(self.root):
            try:
                return generate_synthetic(
                    self.root,
                    images=self.images,
                    size=self.size,
                    seed=self.seed,
                    concepts=self.concepts,
                )
            except ValueError as error:
                raise DatasetError(str(error)) from None

    def _check_existing(self) -> None:
        """A synthetic set of other parameters at `root`: say which data.* settings would fit it."""
        recorded = self.root / "synthetic.json"
        if not recorded.is_file():
            return
        try:
            found = json.loads(recorded.read_text())
        except (OSError, ValueError):
            return
        wanted = {
            "images": self.images,
            "size": self.size,
            "seed": self.seed,
            "concepts": self.concepts,
        }
        other = {k: found.get(k) for k in wanted if k in found and found.get(k) != wanted[k]}
        if other:
            settings = " ".join(f"data.{k}={'null' if v is None else v}" for k, v in other.items())
            raise DatasetError(
                f"data.root={self.root} holds a synthetic set with other parameters: set "
                f"{settings} to use it, or choose another data.root for these settings"
            )
