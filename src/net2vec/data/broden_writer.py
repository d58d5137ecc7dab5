"""Writing a BRODEN-format probe set one image at a time (the converters' common end).

`write_broden(out, items, table, size, mask_size, image_labels)` streams `SourceImage` items
(name, file, split, label planes) into ``out``: each image resized to ``size`` square, its label
planes nearest-neighbour to ``mask_size`` and saved as BRODEN RGB PNGs (R + 256 G), one
index.csv row per image written as it comes, and label.csv / category.csv / c_<category>.csv
from the tallies at the end (data.broden describes the format). Memory is flat in the number of
images. What a converter hands the writer (`SourceImage`, `LabelTable`, stacked label planes,
splits) is in ``data.converter_inputs``.
"""

from __future__ import annotations

import csv
import os
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from net2vec.data.broden import IMAGE_COLUMNS, INDEX_COLUMNS, PIXEL_COLUMNS, DatasetError
from net2vec.data.converter_inputs import SPLITS, LabelTable, SourceImage

LABEL_COLUMNS = ("number", "name", "category", "frequency", "coverage", "syns")


def output_names(name: str) -> tuple[str, str]:
    """(stem of the mask files, image file name) under ``images/`` for the input image `name`.

    ``a/b.jpg`` -> (``a/b``, ``a/b.jpg``), BRODEN's layout; any other suffix joins the stem
    (``b.png`` -> (``b_png``, ``b.png``), ``b.jpeg`` -> (``b_jpeg``, ``b_jpeg.jpg``), ``b.bmp`` ->
    (``b_bmp``, ``b_bmp.png``)), so inputs that differ only in their suffix never share an
    output. A name that would leave ``images/`` (absolute, ``..``) is refused."""
    parts = name.replace("\\", "/").split("/")
    if not name or os.path.isabs(name) or ".." in parts or "" in parts:
        raise DatasetError(
            f"image name {name!r}: expected a relative path without '..' (outputs stay "
            "inside --out)"
        )
    base, suffix = os.path.splitext(name)
    stem = base if suffix == ".jpg" else f"{base}_{suffix.lstrip('.')}" if suffix else base
    if suffix in (".jpg", ".png"):
        return stem, name
    return stem, stem + (".jpg" if suffix.lower() in (".jpg", ".jpeg") else ".png")


def image_column(table: LabelTable, number: int) -> str:
    """The image-level column (scene, texture) of label `number`: its first such category."""
    return next((c for c in table.categories[number] if c in IMAGE_COLUMNS), "scene")


def resize_nearest(plane: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """(h, w) -> (size, size) or ``size`` = (H, W), nearest neighbour at pixel centres."""
    height, width = (size, size) if isinstance(size, int) else size
    rows = ((np.arange(height) + 0.5) * plane.shape[0] / height).astype(np.int64)
    cols = ((np.arange(width) + 0.5) * plane.shape[1] / width).astype(np.int64)
    return plane[rows][:, cols]


def save_plane(plane: np.ndarray, path: Path, compress_level: int = 6) -> None:
    """Label numbers as BRODEN's RGB PNG: R = n mod 256, G = n div 256."""
    encoded = np.zeros((*plane.shape, 3), np.uint8)
    encoded[..., 0], encoded[..., 1] = plane & 255, plane >> 8
    Image.fromarray(encoded).save(path, compress_level=compress_level)


class BrodenWriter:
    """Writes images and mask planes one at a time and index.csv rows as they come."""

    def __init__(self, folder: Path, size: int, mask_size: int, table: LabelTable) -> None:
        self.folder, self.size, self.mask_size, self.table = folder, size, mask_size, table
        (folder / "images").mkdir(parents=True)
        self.handle = open(folder / "index.csv", "w", newline="")
        self.rows = csv.writer(self.handle)
        self.rows.writerow(INDEX_COLUMNS)
        self.splits: Counter = Counter()
        self.seen: set[str] = set()
        self.written: set[str] = set()  # output files under images/

    def add(self, item: SourceImage, image_labels: list[int]) -> None:
        """Convert one image: resized image, mask planes, one index.csv row, tallies."""
        if item.name in self.seen:
            raise DatasetError(f"{item.path}: a second image named {item.name!r}")
        self.seen.add(item.name)
        stem, out_name = output_names(item.name)
        try:
            with Image.open(item.path) as image:
                image = image.convert("RGB").resize((self.size, self.size), Image.BILINEAR)
        except (OSError, ValueError) as error:
            raise DatasetError(f"{item.path}: cannot read image ({type(error).__name__})") from None
        self._claim(item.path, out_name)
        (self.folder / "images" / out_name).parent.mkdir(parents=True, exist_ok=True)
        image.save(self.folder / "images" / out_name, quality=95)
        files, pixels = defaultdict(list), Counter()
        for plane in item.planes():
            plane = resize_nearest(plane, self.mask_size)
            numbers, counts = np.unique(plane[plane > 0], return_counts=True)
            if not len(numbers):
                continue
            pixels.update(dict(zip(numbers.tolist(), counts.tolist())))
            for column, part in self._by_column(item.path, plane, numbers):
                k = len(files[column])
                files[column].append(f"{stem}_{column}{'' if k == 0 else f'_{k + 1}'}.png")
                self._claim(item.path, files[column][-1])
                save_plane(part, self.folder / "images" / files[column][-1])
        for number, count in pixels.items():
            self.table.coverage[number] += count / self.mask_size**2
        for number in set(pixels) | set(image_labels):
            self.table.images[number] += 1
        self.table.coverage.update(dict.fromkeys(image_labels, 1.0))
        self.rows.writerow(self._row(out_name, item.split, files, image_labels))
        self.splits[item.split] += 1

    def _claim(self, source: Path, name: str) -> None:
        """Refuse a second output file of the same name (two inputs never share one output)."""
        if name in self.written:
            raise DatasetError(
                f"{source}: its output {name!r} is already written for another input; "
                "rename one of them"
            )
        self.written.add(name)

    def _by_column(self, path: Path, plane: np.ndarray, numbers: np.ndarray) -> list:
        """(index.csv column, plane) per pixel-level category of the plane's labels: each label
        goes to the column of its first pixel-level category (object, part, material, color)."""
        unknown = [int(n) for n in numbers if int(n) not in self.table.names]
        if unknown:
            raise DatasetError(f"{path}: label {unknown[0]} is not in the label list")
        columns = defaultdict(list)
        for number in numbers.tolist():
            cats = [c for c in self.table.categories[number] if c in PIXEL_COLUMNS]
            if not cats:
                raise DatasetError(
                    f"{path}: label {number} ({self.table.names[number]!r}) has category "
                    f"{self.table.categories[number][0]!r}; a mask label needs one of "
                    f"{', '.join(PIXEL_COLUMNS)}"
                )
            columns[cats[0]].append(number)
        return [
            (column, np.where(np.isin(plane, columns[column]), plane, 0))
            for column in PIXEL_COLUMNS
            if column in columns
        ]

    def _row(
        self, name: str, split: str, files: dict[str, list[str]], image_labels: list[int]
    ) -> list:
        cells = {"image": name, "split": split, "ih": self.size, "iw": self.size}
        cells.update(sh=self.mask_size, sw=self.mask_size)
        cells.update({column: ";".join(names) for column, names in files.items()})
        for column in IMAGE_COLUMNS:  # each label in the column of its first image-level category
            chosen = [n for n in image_labels if image_column(self.table, n) == column]
            cells[column] = ";".join(map(str, chosen))
        return [cells.get(column, "") for column in INDEX_COLUMNS]

    def finish(self) -> None:
        """label.csv, category.csv and c_<category>.csv from the tallies; closes index.csv."""
        self.handle.close()
        if not self.seen:
            raise DatasetError("no images to convert")
        table, labels, frequency = self.table, [], Counter()
        for number in sorted(table.names):
            count, cover = table.images[number], round(float(table.coverage[number]), 4)
            per_category = dict.fromkeys(table.categories[number], count)
            labels.append((number, table.names[number], per_category, count, cover))
            for c in per_category:
                frequency[c] += count > 0  # labels of the category seen in some image
        write_label_tables(self.folder, labels, dict(frequency))


def write_csv(path: Path, header: list[str] | tuple[str, ...], rows: list) -> None:
    """One CSV table: a header line, then the rows."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def write_label_tables(
    folder: Path,
    labels: list[tuple[int, str, dict[str, int], int, float]],
    category_frequency: dict[str, int],
) -> None:
    """label.csv, c_<category>.csv and category.csv (data.broden describes the format).

    labels: (number, name, images per category (primary first), images, coverage) in label
    order; category_frequency: category -> its category.csv frequency, in category.csv order."""
    label_rows, members = [], defaultdict(list)
    for number, name, per_category, images, coverage in labels:
        cats = ";".join(f"{c}({n})" for c, n in per_category.items())
        label_rows.append([number, name, cats, images, coverage, ""])
        for c, n in per_category.items():
            members[c].append([number, name, n, coverage])
    write_csv(folder / "label.csv", LABEL_COLUMNS, label_rows)
    rows = []
    for c, frequency in category_frequency.items():
        coded = [[code, *row] for code, row in enumerate(members[c], start=1)]
        write_csv(folder / f"c_{c}.csv", ["code", "number", "name", "frequency", "coverage"], coded)
        rows.append([c, 1, len(coded), len(coded), frequency])
    write_csv(folder / "category.csv", ["name", "first", "last", "count", "frequency"], rows)


def write_broden(
    out: Path,
    items: Iterable[SourceImage],
    table: LabelTable,
    size: int,
    mask_size: int,
    image_labels: dict[str, list[int]],
    total: int | None = None,
) -> Path:
    """Stream `items` into a BRODEN-format set at `out` (built beside it, renamed when complete)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DatasetError(f"--out {out}: exists and is not a folder; choose another folder")
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"--out {out}: exists and is not empty; choose another folder")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        writer = BrodenWriter(tmp, int(size), int(mask_size), table)
        try:
            for item in tqdm(items, total=total, desc="converting", mininterval=1):
                writer.add(item, image_labels.pop(item.name, []))
        finally:
            writer.handle.close()
        if image_labels:
            raise DatasetError(
                f"--image-labels: image {next(iter(image_labels))!r} is not "
                f"among the converted images"
            )
        writer.finish()
        for split in SPLITS:
            if not writer.splits[split]:
                raise DatasetError(
                    f"no {split} images: give a {split} source or change --val-fraction"
                )
        if out.exists():
            out.rmdir()
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
