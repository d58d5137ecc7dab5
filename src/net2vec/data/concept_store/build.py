"""Building the concept store from a BRODEN-format dataset: decode every index.csv row's masks
(in worker processes), keep the labels with images, write the HDF5 layout of
``net2vec.data.concept_store`` once per content key (common.cache).

One algorithm in one place (decode, tally, keep, write: ~330 lines); its steps are small
functions that only this build calls."""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from net2vec.common.cache import COMPLETE_ATTR, Artifact, cached_build, fingerprint_file
from net2vec.data.broden import (
    IMAGE_COLUMNS,
    PIXEL_COLUMNS,
    BrodenDataset,
    DatasetError,
    planes_to_masks,
)
from net2vec.data.broden_writer import resize_nearest
from net2vec.data.concept_store.read import COVERAGE_COLUMNS, ConceptStore
from net2vec.data.fingerprint import dataset_fingerprint

log = logging.getLogger(__name__)

_STR = h5py.string_dtype("utf-8")
_DATASET: BrodenDataset | None = None  # the dataset being decoded (set in worker processes)
LAYOUT = 2  # bumped when the file layout changes (part of the name)


def concept_artifact(root: str | Path, cache_dir: str | Path, verify: str = "stat") -> Artifact:
    """The concept store of `root` as a cached artifact keyed by the dataset's fingerprint."""
    root = Path(root)
    if not (root / "index.csv").is_file():
        raise DatasetError(f"{root / 'index.csv'}: file not found")
    inputs = {"data": dataset_fingerprint(root, verify), "layout": LAYOUT}
    return Artifact(Path(cache_dir) / "concepts", root.resolve().name, ".h5", inputs)


def store_path(root: str | Path, cache_dir: str | Path, verify: str = "stat") -> Path:
    """Where the concept store of the dataset at `root` (as it is now) lives."""
    return concept_artifact(root, cache_dir, verify).path


def prepare_concept_store(
    root: str | Path,
    cache_dir: str | Path,
    workers: int | None = None,
    progress: bool = True,
    verify: str = "stat",
) -> ConceptStore:
    """The concept store of `root`: reused when its key matches the data, else built (common.cache)."""
    return cached_build(
        concept_artifact(root, cache_dir, verify),
        lambda tmp: build_concept_store(root, tmp, workers, progress),
        ConceptStore,
        "concept store",
    )


def _decode_row(job: tuple[int, tuple[int, int]]) -> tuple:
    """Row i -> (labels, packed masks, areas, per-column areas, image-level labels by column,
    resized?) at the common size."""
    i, size = job
    dataset = _DATASET
    dataset.check_image(i)
    planes = dataset.column_planes(i)
    resized = dataset.mask_size(i) != size
    if resized:
        planes = [(column, resize_nearest(plane, size)) for column, plane in planes]
    masks = planes_to_masks([plane for _, plane in planes])
    labels = np.array(sorted(masks), np.int64)
    packed = np.zeros((len(labels), (size[0] * size[1] + 7) // 8), np.uint8)
    areas = np.zeros(len(labels), np.int64)
    for k, number in enumerate(labels):
        packed[k] = np.packbits(masks[int(number)].reshape(-1))
        areas[k] = masks[int(number)].sum()
    columns = np.zeros((len(labels), len(PIXEL_COLUMNS)), np.int64)
    for j, column in enumerate(PIXEL_COLUMNS):  # pixels of each label within one column's planes
        union = planes_to_masks([plane for name, plane in planes if name == column])
        for number, mask in union.items():
            columns[np.searchsorted(labels, number), j] = mask.sum()
    return labels, packed, areas, columns, dataset.column_image_labels(i), resized


def _init_worker(dataset: BrodenDataset) -> None:
    global _DATASET
    _DATASET = dataset


def _decoded_rows(dataset: BrodenDataset, size: tuple[int, int], workers: int, progress: bool):
    """Decoded rows in index order, with a progress bar; several processes when workers > 1."""
    jobs = [(i, size) for i in range(len(dataset))]
    bar = dict(total=len(jobs), desc="decoding masks", disable=not progress, mininterval=1)
    if workers <= 1:
        _init_worker(dataset)
        yield from tqdm(map(_decode_row, jobs), **bar)
        return
    context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=(dataset,)) as pool:
        yield from tqdm(pool.imap(_decode_row, jobs, chunksize=32), **bar)


def _chunk_rows(row_bytes: int, rows: int) -> int:
    return max(1, min(rows, (64 << 10) // max(row_bytes, 1)))


def _first_pass(
    dataset: BrodenDataset, size: tuple[int, int], scratch: h5py.File, workers: int, progress: bool
) -> dict:
    """Decode every row; masks go to the scratch file, the small arrays stay in memory."""
    row_bytes = (size[0] * size[1] + 7) // 8
    masks = scratch.create_dataset(
        "masks",
        (0, row_bytes),
        np.uint8,
        maxshape=(None, row_bytes),
        chunks=(_chunk_rows(row_bytes, 1 << 20), row_bytes),
    )
    images, labels, areas, columns, image_labels, buffer = [], [], [], [], [], []
    resized = 0
    for i, (row_labels, packed, row_areas, row_columns, level, was_resized) in enumerate(
        _decoded_rows(dataset, size, workers, progress)
    ):
        images.append(np.full(len(row_labels), i, np.int64))
        labels.append(row_labels)
        areas.append(row_areas)
        columns.append(row_columns)
        image_labels.append(level)
        buffer.append(packed)
        resized += was_resized
        if sum(len(b) for b in buffer) >= 4096 or i == len(dataset) - 1:
            block = np.concatenate(buffer) if buffer else np.zeros((0, row_bytes), np.uint8)
            masks.resize(len(masks) + len(block), axis=0)
            masks[len(masks) - len(block) :] = block
            buffer = []
    join = lambda arrays: np.concatenate(arrays) if arrays else np.zeros(0, np.int64)  # noqa: E731
    columns = np.concatenate(columns) if columns else np.zeros((0, len(PIXEL_COLUMNS)), np.int64)
    return {
        "image": join(images),
        "label": join(labels),
        "area": join(areas),
        "columns": columns,
        "image_labels": image_labels,
        "resized": resized,
        "masks": masks,
    }


def _presence_by_label(dataset: BrodenDataset, first: dict) -> tuple[np.ndarray, np.ndarray]:
    """(label numbers of label.csv, N x L presence over all of them)."""
    numbers = np.array(sorted(dataset.labels), np.int64)
    presence = np.zeros((len(dataset), len(numbers)), bool)
    presence[first["image"], np.searchsorted(numbers, first["label"])] = True
    for i, level in enumerate(first["image_labels"]):
        every = sorted(set().union(*level.values()))
        presence[i, np.searchsorted(numbers, np.array(every, np.int64))] = True
    return numbers, presence


def _coverage(first: dict, numbers: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(L, len(COVERAGE_COLUMNS)) pixels each label covers in each column, over all images
    (an image-level label covers the whole sh x sw mask)."""
    coverage = np.zeros((len(numbers), len(COVERAGE_COLUMNS)), np.float64)
    np.add.at(
        coverage[:, : len(PIXEL_COLUMNS)],
        np.searchsorted(numbers, first["label"]),
        first["columns"],
    )
    for level in first["image_labels"]:
        for j, column in enumerate(IMAGE_COLUMNS, start=len(PIXEL_COLUMNS)):
            coverage[np.searchsorted(numbers, np.array(level[column], np.int64)), j] += (
                size[0] * size[1]
            )
    return coverage


def _write_whole(out: h5py.File, first: dict, numbers: np.ndarray, kept: np.ndarray) -> None:
    """CSR image-level labels: those of image i are whole/concept[whole/offsets[i]:offsets[i+1]]."""
    position = np.full(len(numbers), -1, np.int64)
    position[np.searchsorted(numbers, kept)] = np.arange(len(kept))
    rows = [
        position[np.searchsorted(numbers, np.array(sorted(set().union(*level.values())), np.int64))]
        for level in first["image_labels"]
    ]
    rows = [row[row >= 0] for row in rows]
    group = out.create_group("whole")
    group["concept"] = (np.concatenate(rows) if rows else np.zeros(0, np.int64)).astype(np.int32)
    group["offsets"] = np.concatenate([[0], np.cumsum([len(row) for row in rows])]).astype(np.int64)


def _common_size(dataset: BrodenDataset) -> tuple[int, int]:
    sizes = Counter(dataset.mask_size(i) for i in range(len(dataset)))
    if not sizes:
        raise DatasetError(f"{dataset.index_path}: no rows")
    return sizes.most_common(1)[0][0]


def _write_concepts(
    out: h5py.File,
    dataset: BrodenDataset,
    kept: np.ndarray,
    pixel: np.ndarray,
    coverage: np.ndarray,
) -> None:
    labels = [dataset.labels[int(n)] for n in kept]
    group = out.create_group("concepts")
    group["name"] = np.array([label.name for label in labels], dtype=object).astype(_STR)
    group["category"] = np.array([label.category for label in labels], dtype=object).astype(_STR)
    group["categories"] = np.array(
        [";".join(label.categories) for label in labels], dtype=object
    ).astype(_STR)
    group["label_number"] = kept.astype(np.int32)
    group["pixel_level"] = pixel
    group["coverage"] = coverage
    group["coverage"].attrs["columns"] = list(COVERAGE_COLUMNS)


def _write_pairs(
    out: h5py.File, first: dict, keep: np.ndarray, concept: np.ndarray, num_images: int
) -> None:
    """CSR pairs of the kept concepts; masks copied block-wise from the scratch file."""
    group = out.create_group("pairs")
    image = first["image"][keep]
    group["image"] = image.astype(np.int32)
    group["concept"] = concept.astype(np.int32)
    group["area"] = first["area"][keep].astype(np.int32)
    group["offsets"] = np.concatenate(
        [[0], np.cumsum(np.bincount(image, minlength=num_images))]
    ).astype(np.int64)
    source = first["masks"]
    row_bytes = source.shape[1]
    masks = group.create_dataset(
        "masks",
        (int(keep.sum()), row_bytes),
        np.uint8,
        compression="gzip",
        compression_opts=4,
        chunks=(_chunk_rows(row_bytes, max(int(keep.sum()), 1)), row_bytes),
    )
    written, block = 0, 1 << 14
    for start in range(0, len(keep), block):
        rows = source[start : start + block][keep[start : start + block]]
        masks[written : written + len(rows)] = rows
        written += len(rows)


def _splits(dataset: BrodenDataset) -> np.ndarray:
    """(N,) uint8 split, 1 = val; a dataset without train or without val rows is a DatasetError."""
    split = np.array([dataset.split(i) == "val" for i in range(len(dataset))], np.uint8)
    for value, name in ((0, "train"), (1, "val")):
        if not (split == value).any():
            raise DatasetError(
                f"{dataset.index_path}: no row has split={name}; the probes need train and val "
                "images: mark some rows of index.csv as " + name
            )
    return split


def build_concept_store(
    root: str | Path, path: str | Path, workers: int | None = None, progress: bool = True
) -> Path:
    """Decode the dataset at `root` into a concept store at `path` (prepare_concept_store makes
    the write atomic and stamps the record)."""
    root, path = Path(root), Path(path)
    dataset = BrodenDataset(root)
    split = _splits(dataset)
    size = _common_size(dataset)
    if workers is None:
        workers = min(8, os.cpu_count() or 1) if len(dataset) > 4000 else 1
    scratch_path = Path(f"{path}.scratch")
    try:
        with h5py.File(scratch_path, "w") as scratch, h5py.File(path, "w") as out:
            first = _first_pass(dataset, size, scratch, workers, progress)
            numbers, presence = _presence_by_label(dataset, first)
            n_train = presence[split == 0].sum(0)
            n_val = presence[split == 1].sum(0)
            kept_mask = (n_train + n_val) > 0  # every label with an image; probes use fewer
            kept = numbers[kept_mask]
            keep = np.isin(first["label"], kept)
            concept = np.searchsorted(kept, first["label"][keep])
            pixel = np.bincount(concept, minlength=len(kept)) > 0
            coverage = _coverage(first, numbers, size)[kept_mask]
            _write_concepts(out, dataset, kept, pixel, coverage)
            _write_whole(out, first, numbers, kept)
            out["split"] = split
            out["image"] = np.array(
                [dataset.image_name(i) for i in range(len(dataset))], dtype=object
            ).astype(_STR)
            out.create_dataset(
                "presence", data=presence[:, kept_mask], compression="gzip", compression_opts=4
            )
            _write_pairs(out, first, keep, concept, len(dataset))
            n_excluded = int(((n_train == 0) | (n_val == 0)).sum())
            if n_excluded == len(numbers):
                raise DatasetError(
                    f"{dataset.index_path}: no label of label.csv occurs in both "
                    "train and val images; the probes need such concepts"
                )
            out.attrs.update(
                {
                    "mask_size": np.array(size, np.int64),
                    "dataset_root": str(root.resolve()),
                    "index_fingerprint": fingerprint_file(dataset.index_path),
                    "n_excluded": n_excluded,
                    "n_resized": int(first["resized"]),
                    "layout": LAYOUT,
                }
            )
            out.attrs[COMPLETE_ATTR] = True
    finally:
        scratch_path.unlink(missing_ok=True)
    log.info(
        "concept store: %d concepts kept for the probes, %d of %d labels excluded (%d without "
        "train images, %d without val images); %d labels with images for NetDissect",
        len(numbers) - n_excluded,
        n_excluded,
        len(numbers),
        int((n_train == 0).sum()),
        int((n_val == 0).sum()),
        len(kept),
    )
    if first["resized"]:
        log.info(
            "concept store: %d rows had masks other than %dx%d, resized nearest-neighbour",
            first["resized"],
            *size,
        )
    log.info("concept store: %d images, %d pairs -> %s", len(dataset), int(keep.sum()), path)
    return path
