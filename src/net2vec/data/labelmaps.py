"""ADE20K-style label maps as `SourceImage` items: images, one label PNG per image, a label list.

The mask of ``IMAGES/a/b.jpg`` is ``MASKS/a/b.png``; a pixel's value (grayscale: the value; RGB:
R + 256 G, BRODEN's encoding; palette: the index) is a label number of the list, 0 = unlabelled. The label list is a
CSV with a ``name`` column and optionally ``number`` (also read as ``idx``/``id``) and
``category`` (default ``object``) columns, e.g. ADE20K's ``objectInfo150.csv`` (``Idx``, ``Name``;
``wall;building`` keeps the first name); or a text file with one name per line, numbered from 1.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from net2vec.data.broden import DatasetError, decode_plane
from net2vec.data.converter_inputs import LabelTable, SourceImage, val_names

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
NUMBER_COLUMNS = ("number", "idx", "id", "index")


def read_label_list(path: Path, table: LabelTable) -> None:
    """Add the labels of a label list (CSV with a name column, or one name per line)."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        lines = handle.read().splitlines()
    header = [cell.strip().lower() for cell in next(csv.reader(lines[:1]), [])]
    if "name" not in header:
        for number, name in enumerate((line.strip() for line in lines), start=1):
            if name:
                table.add(number, name, "object")
        return
    number_column = next((c for c in NUMBER_COLUMNS if c in header), None)
    for line, cells in enumerate(csv.reader(lines[1:]), start=2):
        if not any(cells):
            continue
        row = dict(zip(header, (cell.strip() for cell in cells)))
        try:
            number = int(row[number_column]) if number_column else line - 1
        except ValueError:
            raise DatasetError(
                f"{path} line {line}: bad label number {row[number_column]!r}"
            ) from None
        name = row.get("name", "").split(";")[0].strip()
        if not name:
            raise DatasetError(f"{path} line {line}: empty name")
        table.add(number, name, row.get("category") or "object")


def labelmap_images(
    images: Path, masks: Path, split: str | None, val_fraction: float, prefix: str = ""
) -> tuple[int, Iterator[SourceImage]]:
    """(number of images, the images) of one images folder and its masks folder, sorted by path."""
    for folder, what in ((images, "--images"), (masks, "--masks")):
        if not folder.is_dir():
            raise DatasetError(f"{what} {folder}: not a folder")
    files = sorted(p for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"--images {images}: no images ({', '.join(IMAGE_SUFFIXES)})")
    names = [prefix + p.relative_to(images).as_posix() for p in files]
    val = set() if split else val_names(names, val_fraction)

    def items() -> Iterator[SourceImage]:
        for file, name in zip(files, names):
            mask = masks / file.relative_to(images).with_suffix(".png")
            if not mask.is_file():
                raise DatasetError(f"{file}: no label map {mask}")
            yield SourceImage(
                name, file, split or ("val" if name in val else "train"), partial(read_plane, mask)
            )

    return len(files), items()


def read_plane(path: Path) -> list[np.ndarray]:
    """A label PNG as one plane of int32 label numbers (palette PNGs: the index; one-line error)."""
    try:
        with Image.open(path) as image:
            if image.mode == "P":
                return [np.asarray(image).astype(np.int32)]
        return [decode_plane(path)]
    except (OSError, ValueError) as error:
        raise DatasetError(f"{path}: cannot read label map ({type(error).__name__})") from None
