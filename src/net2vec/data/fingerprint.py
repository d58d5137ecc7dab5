"""The fingerprint of a BRODEN-format dataset: what keys its concept store (and every store after).

`dataset_fingerprint(root, verify)` returns one digest per input group, so a rebuild can say
what changed: ``root`` (the resolved folder: two same-named sets elsewhere are two datasets),
``index.csv``, ``label.csv``, ``category.csv``, ``c_csv`` (every ``c_*.csv``; these CSVs are
always hashed in full), ``images`` and ``masks`` (every file index.csv names). For images and
masks ``verify="stat"`` (the default) hashes each file's path relative to ``images/``, its size
and its ``mtime_ns``: an in-place edit changes the mtime, and 126k files cost about 3 s on a
busy 2-core machine (benchmarks/fingerprint.py). ``verify="hash"`` hashes their full content
instead (every byte read on every run, ~1 GB for BRODEN), for copies that keep mtimes
(``cp -p``, ``rsync -t``) or clocks that lie.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from net2vec.common.cache import fingerprint_file
from net2vec.data.broden import (
    PIXEL_COLUMNS,
    DatasetError,
    check_row_paths,
    read_csv,
    split_cell,
)

VERIFY = ("stat", "hash")


def _files_digest(folder: Path, names: list[str], verify: str) -> str:
    """Digest of (relative path, size, mtime_ns) — or of full content — of `names` in `folder`."""
    base, lines = str(folder), []
    for name in sorted(set(names)):
        path = os.path.join(base, name)
        try:
            if verify == "hash":
                lines.append(f"{name}\0{fingerprint_file(path, 64)}")
            else:
                stat = os.stat(path)
                lines.append(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}")
        except OSError:
            lines.append(f"{name}\0missing")  # the store build then names the missing file
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def _csv_digest(paths: list[Path]) -> str:
    return ",".join(f"{p.name}:{fingerprint_file(p)}" for p in sorted(paths)) or "absent"


def dataset_fingerprint(root: str | Path, verify: str = "stat") -> dict[str, str]:
    """{input group: digest} of the dataset at `root` (module docstring)."""
    if verify not in VERIFY:
        raise DatasetError(f"data.verify={verify!r}: expected one of {', '.join(VERIFY)}")
    root = Path(root).resolve()
    _, rows = read_csv(root / "index.csv")
    check_row_paths(root, rows)  # nothing outside the root is read, not even its size
    images = [row.get("image") or "" for row in rows]
    masks = [
        name for row in rows for column in PIXEL_COLUMNS for name in split_cell(row.get(column))
    ]
    return {
        "root": str(root),
        "verify": verify,
        "index.csv": fingerprint_file(root / "index.csv"),
        "label.csv": _csv_digest([root / "label.csv"] if (root / "label.csv").is_file() else []),
        "category.csv": _csv_digest([p for p in [root / "category.csv"] if p.is_file()]),
        "c_csv": _csv_digest(list(root.glob("c_*.csv"))),
        "images": _files_digest(root / "images", images, verify),
        "masks": _files_digest(root / "images", masks, verify),
    }
