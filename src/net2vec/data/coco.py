"""COCO instance and panoptic annotations as `SourceImage` items for the BRODEN writer.

Every COCO category becomes one ``object`` label (numbered 1.. in category-id order, the
union over all annotation files). Instance JSON: each annotation's polygon or RLE is decoded
with pycocotools; overlapping instances of different categories lie on separate planes.
Panoptic JSON: the segment PNGs (``--panoptic-masks DIR``, by default the JSON's path without
``.json``, COCO's layout) give id = R + 256 G + 256² B per pixel, mapped through
``segments_info`` to categories.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from net2vec.data.broden import DatasetError
from net2vec.data.converter_inputs import LabelTable, SourceImage, stack_planes, val_names


def read_json(path: Path) -> dict:
    """A COCO annotation file, checked for the keys the conversion reads."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (ValueError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: not a JSON file ({error})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: not a COCO annotation file (a JSON {type(data).__name__})")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list) or not all(isinstance(x, dict) for x in data[key]):
            raise DatasetError(f"{path}: not a COCO annotation file ({key!r}: no list of objects)")
    check_entries(data, path)
    return data


def check_entries(data: dict, path: Path) -> None:
    """Every category has an id and a name, every image an id and a file_name (a string)."""
    for category in data["categories"]:
        if "id" not in category or "name" not in category:
            raise DatasetError(f"{path}: category {category!r} lacks an 'id' or a 'name'")
    for image in data["images"]:
        if "id" not in image or not isinstance(image.get("file_name"), str):
            raise DatasetError(
                f"{path}: image {image.get('id')!r} lacks an 'id' or a 'file_name' (a string)"
            )


def image_size(image: dict, path: Path) -> tuple[int, int]:
    """(height, width) of an image entry (instance masks are decoded at that size)."""
    try:
        height, width = int(image["height"]), int(image["width"])
    except (KeyError, TypeError, ValueError):
        height = width = 0
    if height < 1 or width < 1:
        raise DatasetError(
            f"{path}: image {image['file_name']!r} needs a positive 'height' and 'width'"
        )
    return height, width


def add_categories(data: dict, path: Path, table: LabelTable, ids: dict[int, int]) -> None:
    """Number the file's categories: COCO id -> global label (consistent across files)."""
    for category in sorted(data["categories"], key=lambda c: c["id"]):
        name = str(category["name"])
        if category["id"] in ids and table.names[ids[category["id"]]] != name:
            raise DatasetError(
                f"{path}: category id {category['id']} is {name!r}, another file "
                f"calls it {table.names[ids[category['id']]]!r}"
            )
        ids[category["id"]] = table.number_of(name, "object")


def instance_planes(anns: list, height: int, width: int, ids: dict, path: Path) -> list:
    """Label planes of one image's instance annotations (polygons, RLE, compressed RLE)."""
    masks = []
    for ann in anns:
        segmentation = ann.get("segmentation")
        if ann.get("category_id") not in ids or not segmentation:
            raise DatasetError(
                f"{path}: annotation {ann.get('id')} has an unknown category "
                f"{ann.get('category_id')!r} or no segmentation"
            )
        masks.append((ids[ann["category_id"]], decode_segmentation(ann, height, width, path)))
    return stack_planes(masks, (height, width))


def decode_segmentation(ann: dict, height: int, width: int, path: Path) -> np.ndarray:
    """One annotation's polygons, RLE or compressed RLE as an (height, width) uint8 mask."""
    segmentation = ann["segmentation"]
    try:
        if isinstance(segmentation, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), str):
            rle = {**segmentation, "counts": segmentation["counts"].encode()}
        else:
            rle = None
        mask = None if rle is None else mask_utils.decode(rle)
    except (TypeError, ValueError, KeyError, IndexError, OverflowError):
        mask = None
    if mask is None or mask.shape[:2] != (height, width):
        raise DatasetError(
            f"{path}: annotation {ann.get('id')!r} has a segmentation that is neither polygons "
            f"nor an RLE of its image's {height}x{width} pixels"
        )
    return mask


def panoptic_planes(ann: dict | None, folder: Path, ids: dict, path: Path) -> list:
    """The label plane of one panoptic annotation: segment ids -> category labels."""
    if ann is None:
        return []
    name = ann.get("file_name")
    if not isinstance(name, str) or Path(name).is_absolute() or ".." in Path(name).parts:
        raise DatasetError(f"{path}: panoptic annotation {name!r}: expected a relative file_name")
    png = folder / name
    try:
        with Image.open(png) as image:
            rgb = np.asarray(image.convert("RGB")).astype(np.int64)
    except (OSError, ValueError) as error:
        raise DatasetError(f"{png}: cannot read panoptic PNG ({type(error).__name__})") from None
    segment = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
    plane = np.zeros(segment.shape, np.int32)
    for info in ann.get("segments_info", []):
        if info.get("category_id") not in ids:
            raise DatasetError(
                f"{path}: segment {info.get('id')} of {ann['file_name']} has an "
                f"unknown category {info.get('category_id')!r}"
            )
        plane[segment == info["id"]] = ids[info["category_id"]]
    return [plane]


def coco_images(
    path: Path,
    images: Path,
    split: str | None,
    val_fraction: float,
    table: LabelTable,
    ids: dict,
    panoptic: Path | None = None,
) -> tuple[int, Iterator[SourceImage]]:
    """(number of images, the images) of one COCO annotation file, instance or panoptic; its
    categories are numbered now, its images are read as the iterator is consumed."""
    data = read_json(path)
    add_categories(data, path, table, ids)
    by_image = defaultdict(list)
    for ann in data["annotations"]:
        by_image[ann.get("image_id")].append(ann)
    is_panoptic = any("segments_info" in ann for ann in data["annotations"])
    folder = panoptic or path.with_suffix("")
    if is_panoptic and not folder.is_dir():
        raise DatasetError(
            f"{path}: panoptic masks folder {folder} not found; pass --panoptic-masks DIR"
        )
    names = [str(image["file_name"]) for image in data["images"]]
    val = set() if split else val_names(names, val_fraction)

    def items() -> Iterator[SourceImage]:
        for image in data["images"]:
            anns, name = by_image.pop(image["id"], []), str(image["file_name"])
            file = images / name
            if not file.is_file():
                raise DatasetError(f"{path}: image {name!r} not found in {images}")
            if is_panoptic:
                planes = partial(panoptic_planes, anns[0] if anns else None, folder, ids, path)
            else:
                size = image_size(image, path)
                planes = partial(instance_planes, anns, *size, ids, path)
            yield SourceImage(name, file, split or ("val" if name in val else "train"), planes)
        if by_image:
            raise DatasetError(
                f"{path}: annotations refer to image id "
                f"{next(iter(by_image))!r}, absent from its images list"
            )

    return len(names), items()
