"""What a converter hands the BRODEN writer (``data.broden_writer``): source images with their
label planes, the label table (numbers, names, categories, tallies), splits by hash, image-level
labels from a CSV, and label masks stacked into planes (a pixel with several labels lies on
several planes)."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from net2vec.data.broden import IMAGE_COLUMNS, DatasetError

SPLITS = ("train", "val")


@dataclass
class SourceImage:
    """One image to convert: its output name, file, split, and a function giving its label planes
    (int arrays of global label numbers, 0 = unlabelled, at any resolution)."""

    name: str
    path: Path
    split: str
    planes: Callable[[], list[np.ndarray]]


@dataclass
class LabelTable:
    """Global label numbers -> name and categories (primary first), with their tallies."""

    names: dict[int, str] = field(default_factory=dict)
    categories: dict[int, list[str]] = field(default_factory=dict)
    images: Counter = field(default_factory=Counter)  # (number, category) -> images
    coverage: Counter = field(default_factory=Counter)  # number -> summed pixel fraction

    def add(self, number: int, name: str, category: str) -> int:
        """Register label `number` (a name seen again under another category gains it)."""
        if not 0 < int(number) < 1 << 16:
            raise DatasetError(f"label {name!r}: number {number} outside 1..65535")
        if number in self.names and self.names[number] != name:
            raise DatasetError(
                f"label number {number} names both {self.names[number]!r} and {name!r}"
            )
        self.names[number] = name
        cats = self.categories.setdefault(number, [])
        if category not in cats:
            cats.append(category)
        return number

    def number_of(self, name: str, category: str) -> int:
        """The label called `name` (adding `category` to it), or a new number for it."""
        found = next((n for n, known in self.names.items() if known == name), None)
        return self.add(found or max(self.names, default=0) + 1, name, category)


def split_argument(text: str) -> tuple[str | None, str]:
    """``train=PATH`` -> ('train', PATH); a plain PATH -> (None, PATH)."""
    head, sep, tail = text.partition("=")
    return (head, tail) if sep and head in SPLITS else (None, text)


def val_names(names: Iterable[str], fraction: float) -> set[str]:
    """The round(fraction * N) names with the smallest SHA-256 (at least one when 0 < fraction)."""
    if not 0.0 <= fraction < 1.0:
        raise DatasetError(f"--val-fraction={fraction}: expected a value in [0, 1)")
    names = sorted(set(names), key=lambda name: hashlib.sha256(name.encode()).hexdigest())
    count = min(len(names) - 1, max(1 if fraction > 0 else 0, round(fraction * len(names))))
    return set(names[: max(count, 0)])


def read_image_labels(path: Path | None, table: LabelTable) -> dict[str, list[int]]:
    """``--image-labels`` CSV (image,label[,category]; label may be ';'-separated) -> {image: numbers}."""
    if path is None:
        return {}
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    labels: dict[str, list[int]] = defaultdict(list)
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not {"image", "label"} <= set(reader.fieldnames or []):
            raise DatasetError(f"{path}: expected columns image,label[,category]")
        for line, row in enumerate(reader, start=2):
            category = (row.get("category") or "scene").strip()
            if category not in IMAGE_COLUMNS:
                raise DatasetError(
                    f"{path} line {line}: category {category!r}: an image-level label is "
                    f"{' or '.join(IMAGE_COLUMNS)} (the image-level columns of index.csv)"
                )
            for name in filter(None, (item.strip() for item in (row["label"] or "").split(";"))):
                if not row["image"]:
                    raise DatasetError(f"{path} line {line}: empty image cell")
                labels[row["image"].strip()].append(table.number_of(name, category))
    return dict(labels)


def stack_planes(
    masks: Iterable[tuple[int, np.ndarray]], shape: tuple[int, int]
) -> list[np.ndarray]:
    """(label, bool mask) pairs as label planes: a pixel holding another label already goes to
    the next plane, so every label's mask is exactly the union of its pixels over the planes."""
    planes: list[np.ndarray] = []
    for number, mask in masks:
        left = mask.astype(bool)
        for plane in planes:
            free = left & ((plane == 0) | (plane == number))
            plane[free] = number
            left &= ~free
        if left.any():
            planes.append(np.where(left, number, 0).astype(np.int32))
    return planes or [np.zeros(shape, np.int32)]
