"""Reader for datasets in the BRODEN on-disk format (Bau et al. 2017), real or synthetic.

Layout under the dataset root:

- ``index.csv``: one row per image, columns read by header name:
  ``image,split,ih,iw,sh,sw,color,object,part,material,scene,texture``. The four pixel-level
  columns hold mask PNG file names (``;``-separated planes; ``part`` often holds several); a mask
  pixel's value ``R + 256*G`` is a global label number of ``label.csv`` (0 = unlabelled). The
  ``scene``/``texture`` cells hold global label numbers directly (image-level, ``;``-separated).
- ``label.csv``: ``number,name,category,frequency,coverage,syns``; ``category`` reads like
  ``object(12);part(30)`` (several categories, the first is the primary one).
- ``category.csv`` lists the categories, ``c_<cat>.csv`` maps dense codes to global numbers.
- Images and masks live under ``images/``.

A concept's mask in one image is the union of its pixels over every plane of every pixel-level
column, so a pixel may carry several labels (e.g. a part and its sub-part on two planes).

The format and every check of it (one ``error:`` line per bad file, row or value) live here
together, ~330 lines: a reader split from its checks would let one drift from the other.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

INDEX_COLUMNS = (
    "image",
    "split",
    "ih",
    "iw",
    "sh",
    "sw",
    "color",
    "object",
    "part",
    "material",
    "scene",
    "texture",
)
PIXEL_COLUMNS = ("color", "object", "part", "material")
IMAGE_COLUMNS = ("scene", "texture")
PIXEL_CATEGORIES = frozenset(PIXEL_COLUMNS)
SPLITS = ("train", "val")
ABSOLUTE = re.compile(r"(^|;)\s*/")  # a ';'-separated item that starts at the filesystem root


class DatasetError(ValueError):
    """Bad probe dataset input; the one-line message names the file, the row and the value."""


@dataclass(frozen=True)
class Label:
    """One row of label.csv."""

    number: int
    name: str
    categories: tuple[str, ...]
    line: int = field(default=0, compare=False)  # line of label.csv, for messages

    @property
    def category(self) -> str:
        """Primary category: the first one listed."""
        return self.categories[0] if self.categories else ""


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows) of a UTF-8 CSV (a BOM and CRLF line ends are accepted); one-line errors."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            text = handle.read()
        if "\0" in text:
            line_no = text.count("\n", 0, text.index("\0")) + 1
            raise DatasetError(f"{path} line {line_no}: holds a NUL byte; save it as plain text")
        lines = list(csv.reader(io.StringIO(text, newline="")))
    except UnicodeDecodeError as error:
        raise DatasetError(
            f"{path}: not UTF-8 text (byte {error.start}); save it as a UTF-8 CSV"
        ) from None
    except csv.Error as error:
        raise DatasetError(f"{path}: not a readable CSV ({error})") from None
    header = [name.strip() for name in (lines[0] if lines else [])]
    doubled = next((name for i, name in enumerate(header) if name and name in header[:i]), None)
    if doubled:
        raise DatasetError(
            f"{path}: column {doubled!r} appears twice in the header; keep one of them"
        )
    for line_no, line in enumerate(lines[1:], start=2):
        if [cell.strip() for cell in line] == header:
            raise DatasetError(f"{path} line {line_no}: repeats the header line; delete that line")
    pad = [""] * len(header)
    rows = [dict(zip(header, line + pad)) for line in lines[1:] if any(c.strip() for c in line)]
    return header, rows


def check_row_paths(root: Path, rows: list[dict[str, str]]) -> None:
    """Every image and mask name of index.csv stays inside the dataset root (relative to its
    images/ folder; no absolute name, no ``..`` that leaves the root): one line naming the row."""
    base = os.path.normpath(os.path.abspath(root))
    columns = ("image", *PIXEL_COLUMNS)
    for row_no, row in enumerate(rows, start=2):
        cells = ";".join(row.get(column) or "" for column in columns)
        if ".." not in cells and not ABSOLUTE.search(cells):
            continue  # the common case, at BRODEN scale: nothing to resolve
        names = [("image", (row.get("image") or "").strip())]
        names += [(c, name) for c in PIXEL_COLUMNS for name in split_cell(row.get(c))]
        for column, name in names:
            path = os.path.normpath(os.path.join(base, "images", name))
            if os.path.isabs(name) or os.path.commonpath([base, path]) != base:
                raise DatasetError(
                    f"{Path(root) / 'index.csv'} row {row_no}: {column} {name!r} lies outside "
                    f"the dataset root {root}; name files relative to its images/ folder"
                )


def parse_categories(text: str) -> tuple[str, ...]:
    """``'object(12);part(30)'`` -> ``('object', 'part')``."""
    parts = [item.strip() for item in text.split(";") if item.strip()]
    return tuple(item.split("(", 1)[0].strip() for item in parts)


def read_labels(root: Path) -> dict[int, Label]:
    """label.csv as {number: Label}; label 0 (unlabelled) is skipped."""
    path = root / "label.csv"
    header, rows = read_csv(path)
    for column in ("number", "name", "category"):
        if column not in header:
            raise DatasetError(f"{path}: missing column {column!r}")
    labels: dict[int, Label] = {}
    for row_no, row in enumerate(rows, start=2):
        try:
            number = int(row["number"])
        except (TypeError, ValueError):
            raise DatasetError(
                f"{path} line {row_no}: bad label number {row['number']!r}"
            ) from None
        if number != 0:
            labels[number] = Label(
                number, row["name"], parse_categories(row["category"] or ""), row_no
            )
    return labels


def split_cell(cell: str | None) -> list[str]:
    """A ';'-separated cell as its non-empty items."""
    return [item.strip() for item in (cell or "").split(";") if item.strip()]


def decode_plane(path: Path) -> np.ndarray:
    """A mask PNG as int32 global label numbers, R + 256*G (grayscale PNGs: the value)."""
    with Image.open(path) as image:
        array = np.asarray(
            image.convert("RGB") if image.mode not in ("RGB", "RGBA", "L", "I", "I;16") else image
        )
    if array.ndim == 2:
        return array.astype(np.int32)
    return array[..., 0].astype(np.int32) + 256 * array[..., 1].astype(np.int32)


class BrodenDataset:
    """A BRODEN-format dataset on disk: index rows, labels, per-image masks and image labels."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.index_path = self.root / "index.csv"
        header, rows = read_csv(self.index_path)
        missing = [column for column in INDEX_COLUMNS if column not in header]
        if missing:
            raise DatasetError(f"{self.index_path}: missing column {missing[0]!r}")
        if not rows:
            raise DatasetError(f"{self.index_path}: no image rows, only a header")
        self.rows = rows
        check_row_paths(self.root, rows)
        self.labels = read_labels(self.root)
        self.category_names = self._read_categories()
        self._sizes = [self._row_size(i) for i in range(len(rows))]

    def _read_categories(self) -> list[str]:
        path = self.root / "category.csv"
        if not path.is_file():
            return sorted({c for label in self.labels.values() for c in label.categories})
        header, rows = read_csv(path)
        key = "name" if "name" in header else header[0]
        names = [row[key].strip() for row in rows]
        for label in self.labels.values():
            missing = [c for c in label.categories if c not in names]
            if missing:
                raise DatasetError(
                    f"{self.root / 'label.csv'} line {label.line}: category {missing[0]!r} is not "
                    f"in {path} ({', '.join(names)}); add it there or correct the label"
                )
        return names

    def category_codes(self, category: str) -> dict[int, int]:
        """c_<category>.csv as {dense code: global label number} (empty when the file is absent)."""
        path = self.root / f"c_{category}.csv"
        if not path.is_file():
            return {}
        _, rows = read_csv(path)
        return {int(row["code"]): int(row["number"]) for row in rows}

    def where(self, i: int) -> str:
        """'index.csv row N' (N counts the header as line 1, like an editor)."""
        return f"{self.index_path} row {i + 2}"

    def _row_size(self, i: int) -> tuple[int, int]:
        row = self.rows[i]
        try:
            return int(row["sh"]), int(row["sw"])
        except (TypeError, ValueError):
            raise DatasetError(
                f"{self.where(i)}: bad mask size sh={row['sh']!r} sw={row['sw']!r}"
            ) from None

    def __len__(self) -> int:
        return len(self.rows)

    def image_name(self, i: int) -> str:
        return self.rows[i]["image"]

    def image_path(self, i: int) -> Path:
        return self.root / "images" / self.rows[i]["image"]

    def split(self, i: int) -> str:
        split = (self.rows[i]["split"] or "").strip()
        if split not in SPLITS:
            raise DatasetError(f"{self.where(i)}: split {split!r} is not 'train' or 'val'")
        return split

    def mask_size(self, i: int) -> tuple[int, int]:
        """(sh, sw) as index.csv states it for row i."""
        return self._sizes[i]

    def check_image(self, i: int) -> None:
        """Raise DatasetError unless row i's image exists and its header reads as an image."""
        path = self.image_path(i)
        try:
            with Image.open(path):
                pass
        except (OSError, ValueError) as error:
            raise DatasetError(
                f"{self.where(i)}: cannot read image {path} ({type(error).__name__})"
            ) from None

    def load_image(self, i: int) -> Image.Image:
        """Row i's image as RGB."""
        self.check_image(i)
        with Image.open(self.image_path(i)) as image:
            return image.convert("RGB")

    def label_planes(self, i: int) -> list[np.ndarray]:
        """Every mask plane of row i (all pixel-level columns) as (sh, sw) int32 label numbers."""
        return [plane for _, plane in self.column_planes(i)]

    def column_planes(self, i: int) -> list[tuple[str, np.ndarray]]:
        """(column, plane) for every mask plane of row i, in PIXEL_COLUMNS order."""
        size = self.mask_size(i)
        planes = []
        for column in PIXEL_COLUMNS:
            for name in split_cell(self.rows[i][column]):
                path = self.root / "images" / name
                try:
                    plane = decode_plane(path)
                except (OSError, ValueError) as error:
                    raise DatasetError(
                        f"{self.where(i)}: cannot read {column} mask {path} "
                        f"({type(error).__name__})"
                    ) from None
                if plane.shape != size:
                    raise DatasetError(
                        f"{self.where(i)}: {column} mask {path} is "
                        f"{plane.shape[0]}x{plane.shape[1]}, index says sh x sw = "
                        f"{size[0]}x{size[1]}"
                    )
                self._check_numbers(i, np.unique(plane), f"{column} mask {path}")
                planes.append((column, plane))
        return planes

    def _check_numbers(self, i: int, numbers, what: str) -> None:
        for number in numbers:
            if number != 0 and int(number) not in self.labels:
                raise DatasetError(
                    f"{self.where(i)}: {what} holds label {int(number)}, "
                    f"absent from {self.root / 'label.csv'}"
                )

    def image_labels(self, i: int) -> list[int]:
        """Image-level labels of row i (scene and texture cells), sorted, unique."""
        return sorted(set().union(*self.column_image_labels(i).values()))

    def column_image_labels(self, i: int) -> dict[str, list[int]]:
        """{column: sorted unique label numbers} of row i's image-level (scene, texture) cells."""
        by_column = {}
        for column in IMAGE_COLUMNS:
            numbers = set()
            for item in split_cell(self.rows[i][column]):
                try:
                    numbers.add(int(item))
                except ValueError:
                    raise DatasetError(
                        f"{self.where(i)}: {column} cell holds {item!r}, not a label number"
                    ) from None
            numbers.discard(0)
            self._check_numbers(i, sorted(numbers), f"{'/'.join(IMAGE_COLUMNS)} cell")
            by_column[column] = sorted(numbers)
        return by_column

    def masks(self, i: int) -> dict[int, np.ndarray]:
        """{label number: (sh, sw) bool mask} of row i, each the union over all planes."""
        return planes_to_masks(self.label_planes(i))


def planes_to_masks(planes: list[np.ndarray]) -> dict[int, np.ndarray]:
    """Union, per label number, of its pixels over all planes (0 = unlabelled is dropped)."""
    masks: dict[int, np.ndarray] = {}
    for plane in planes:
        numbers, inverse = np.unique(plane, return_inverse=True)
        inverse = inverse.reshape(plane.shape)
        for code, number in enumerate(numbers):
            if number == 0:
                continue
            hit = inverse == code
            key = int(number)
            masks[key] = masks[key] | hit if key in masks else hit
    return masks
