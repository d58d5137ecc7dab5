"""Convert labelled images into a BRODEN-format probe set that every task reads (+ CLI).

    python -m net2vec.data.convert coco --images DIR --annotations FILE --out DIR
    python -m net2vec.data.convert masks --images DIR --masks DIR --labels FILE --out DIR

``coco`` reads COCO instance or panoptic JSON (``data.coco``); ``masks`` (alias ``ade``) reads
ADE20K-style folders: images, one per-pixel label PNG per image and a label list
(``data.labelmaps``). Both write through ``data.broden_writer``: images resized to ``--size``
square, mask planes at ``--mask-size`` (default size / 2, as BRODEN), index.csv, label.csv,
category.csv, c_<category>.csv. ``--image-labels CSV`` (``image,label[,category]``) adds
image-level labels (category ``scene`` unless given).

Splits: ``--annotations train=FILE`` / ``--images val=DIR`` gives a source its split; a source
without one is split by image, deterministically (``--val-fraction``, default 0.2: the images
with the smallest SHA-256 of their name go to val). Several sources: repeat ``--annotations``
(with one ``--images`` for all or one per file) or the ``--images``/``--masks`` pairs.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

from net2vec.common.errors import one_line_errors
from net2vec.data.broden import DatasetError
from net2vec.data.broden_writer import write_broden
from net2vec.data.coco import coco_images
from net2vec.data.converter_inputs import LabelTable, read_image_labels, split_argument
from net2vec.data.labelmaps import labelmap_images, read_label_list


def paired(name: str, values: list[str], count: int) -> list[str]:
    """One value for every source, or exactly one per source."""
    if len(values) == 1:
        return values * count
    if len(values) != count:
        raise DatasetError(f"{name}: give one for all sources or one per source ({count})")
    return values


def convert_coco(args: argparse.Namespace, table: LabelTable) -> tuple[int, list]:
    """The images of every COCO annotation file, with their splits."""
    sources, ids, total = [], {}, 0
    images = paired("--images", args.images, len(args.annotations))
    panoptic = paired("--panoptic-masks", args.panoptic_masks or [None], len(args.annotations))
    for text, folder, masks in zip(args.annotations, images, panoptic):
        split, path = split_argument(text)
        count, items = coco_images(
            Path(path),
            Path(split_argument(folder)[1]),
            split,
            args.val_fraction,
            table,
            ids,
            masks and Path(masks),
        )
        sources.append(items)
        total += count
    return total, sources


def convert_masks(args: argparse.Namespace, table: LabelTable) -> tuple[int, list]:
    """The images of every --images/--masks pair, with their splits."""
    read_label_list(Path(args.labels), table)
    masks = paired("--masks", args.masks, len(args.images))
    sources, total = [], 0
    for text, mask in zip(args.images, masks):
        split, folder = split_argument(text)
        prefix = f"{Path(folder).name}/" if len(args.images) > 1 else ""
        count, items = labelmap_images(Path(folder), Path(mask), split, args.val_fraction, prefix)
        sources.append(items)
        total += count
    return total, sources


def check_options(args: argparse.Namespace) -> None:
    """Sizes and the validation fraction before any file is read (one line each)."""
    if args.size < 8:
        raise DatasetError(f"--size={args.size}: expected at least 8 pixels")
    if args.mask_size is not None and not 1 <= args.mask_size <= args.size:
        raise DatasetError(f"--mask-size={args.mask_size}: expected 1..--size ({args.size}) pixels")
    if not 0.0 <= args.val_fraction < 1.0:
        raise DatasetError(f"--val-fraction={args.val_fraction}: expected a value in [0, 1)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise DatasetError(f"--out {out}: exists and is not a folder; choose another folder")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Convert labelled images to a BRODEN-format set.")
    kinds = parser.add_subparsers(dest="kind", required=True)
    coco = kinds.add_parser("coco", help="COCO instance or panoptic JSON")
    coco.add_argument(
        "--annotations", action="append", required=True, help="[train=|val=]FILE, repeatable"
    )
    coco.add_argument("--panoptic-masks", action="append", help="panoptic PNG folder(s)")
    masks = kinds.add_parser("masks", aliases=["ade"], help="images + label PNGs + label list")
    masks.add_argument("--masks", action="append", required=True, help="label PNG folder(s)")
    masks.add_argument(
        "--labels",
        required=True,
        help="label list: CSV with name[,number,category] or one name per line",
    )
    for sub in (coco, masks):
        sub.add_argument(
            "--images", action="append", required=True, help="[train=|val=]DIR, repeatable"
        )
        sub.add_argument("--out", required=True, help="output folder (must not exist)")
        sub.add_argument("--val-fraction", type=float, default=0.2)
        sub.add_argument("--image-labels", help="CSV image,label[,category] of image-level labels")
        sub.add_argument("--size", type=int, default=224, help="image size in pixels")
        sub.add_argument("--mask-size", type=int, default=None, help="default: size / 2")
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; a bad input ends it with one `error:` line (exit 2)."""
    args = parser().parse_args(argv)
    with one_line_errors():
        check_options(args)
        table = LabelTable()
        convert = convert_coco if args.kind == "coco" else convert_masks
        total, sources = convert(args, table)
        image_labels = read_image_labels(args.image_labels and Path(args.image_labels), table)
        out = write_broden(
            Path(args.out),
            itertools.chain(*sources),
            table,
            args.size,
            args.size // 2 if args.mask_size is None else args.mask_size,
            image_labels,
            total,
        )
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
