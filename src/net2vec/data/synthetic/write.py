"""Writing a synthetic set to disk in BRODEN format (through ``data.broden_writer``), and its CLI."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from net2vec.data.broden import INDEX_COLUMNS
from net2vec.data.broden_writer import save_plane, write_csv, write_label_tables
from net2vec.data.synthetic.catalogue import Catalogue, build_catalogue
from net2vec.data.synthetic.concepts import VERSION
from net2vec.data.synthetic.render import PLANES, SyntheticImage, render


def _write_image(folder: Path, drawn: SyntheticImage, size: int, tally: dict) -> dict[str, str]:
    """Write one image and its mask planes; count label occurrences; return its index.csv row."""
    Image.fromarray(drawn.image).save(folder / f"{drawn.name}.png", compress_level=1)
    m = size // 2
    row = {
        "image": f"{drawn.name}.png",
        "split": drawn.split,
        "ih": size,
        "iw": size,
        "sh": m,
        "sw": m,
    }
    for column, planes in PLANES.items():
        files = []
        for plane in planes:
            numbers, counts = np.unique(drawn.maps[plane], return_counts=True)
            if numbers.max() == 0:
                continue
            file_name = f"{drawn.name}_{plane}.png"
            save_plane(drawn.maps[plane], folder / file_name, compress_level=1)
            files.append(file_name)
            for number, count in zip(numbers, counts):
                if number:
                    tally[(int(number), column)].add(drawn.name)
                    tally["coverage"][int(number)] += count / (m * m)
        row[column] = ";".join(files)
    for column, number in (("scene", drawn.scene), ("texture", drawn.texture)):
        row[column] = "" if number is None else str(number)
        if number is not None:
            tally[(number, column)].add(drawn.name)
            tally["coverage"][number] += 1.0
    return row


_JOB: dict = {}


def _draw_one(i: int) -> tuple[dict, dict]:
    """Render and write image i of the job set up by ``_drawn_images``; its row and own tally."""
    job = _JOB
    tally: dict = defaultdict(set)
    tally["coverage"] = Counter()
    return _write_image(
        job["folder"], render(job["cat"], job["seed"], i, job["size"]), job["size"], tally
    ), tally


def _merge_tally(total: dict, part: dict) -> None:
    """Add one image's tally into the total (image order, so sums do not depend on workers)."""
    for key, value in part.items():
        if key == "coverage":
            for number, amount in value.items():
                total["coverage"][number] += amount
        else:
            total[key] |= value


def _drawn_images(folder: Path, cat: Catalogue, seed: int, images: int, size: int):
    """(row, tally) per image in index order; images are drawn by several processes when the
    machine has cores to spare (each image depends on (seed, i) alone)."""
    _JOB.update(folder=folder, cat=cat, seed=seed, size=size)
    workers = min(os.cpu_count() or 1, 16, max(1, images // 200))
    if workers <= 1:
        yield from map(_draw_one, range(images))
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(_draw_one, range(images), chunksize=32)


def _write_tables(folder: Path, cat: Catalogue, tally: dict) -> None:
    """label.csv, category.csv and c_<category>.csv from the catalogue and the counts."""
    labels, seen = [], defaultdict(set)
    for name, number in sorted(cat.numbers.items(), key=lambda item: item[1]):
        images = set().union(*[tally[(number, c)] for c in cat.categories[name]])
        per_category = {c: len(tally[(number, c)]) for c in cat.categories[name]}
        coverage = round(float(tally["coverage"][number]), 4)
        labels.append((number, name, per_category, len(images), coverage))
        for c in cat.categories[name]:
            seen[c] |= tally[(number, c)]
    categories = ("color", "object", "part", "material", "scene", "texture")
    write_label_tables(folder, labels, {c: len(seen[c]) for c in categories})


def generate_synthetic(
    out: str | Path,
    images: int = 2000,
    size: int = 128,
    seed: int = 0,
    concepts: int | None = None,
    progress: bool = True,
) -> Path:
    """Write the synthetic set to `out` (built in a temporary folder, renamed when complete).

    An existing complete set with the same parameters is reused; one with other parameters is
    an error (choose another `out`)."""
    out = Path(out)
    params = {
        "images": int(images),
        "size": int(size),
        "seed": int(seed),
        "concepts": concepts,
        "version": VERSION,
    }
    if (out / "index.csv").is_file():
        found = (
            json.loads((out / "synthetic.json").read_text())
            if (out / "synthetic.json").is_file()
            else None
        )
        if found is not None and {k: found.get(k) for k in params} != params:
            raise ValueError(
                f"{out}: holds a synthetic set with {found}, not {params}; choose another directory"
            )
        return out
    cat = build_catalogue(concepts, seed)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    tally: dict = defaultdict(set)
    tally["coverage"] = Counter()
    try:
        rows = []
        for row, counts in tqdm(
            _drawn_images(tmp / "images", cat, seed, images, size),
            total=images,
            desc="synthetic images",
            disable=not progress,
            mininterval=1,
        ):
            rows.append(row)
            _merge_tally(tally, counts)
        _write_tables(tmp, cat, tally)
        (tmp / "synthetic.json").write_text(json.dumps(params, indent=1))
        write_csv(
            tmp / "index.csv", INDEX_COLUMNS, [[row[k] for k in INDEX_COLUMNS] for row in rows]
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI: python -m net2vec.data.synthetic --out DIR --images N --seed S [--size PX] [--concepts C]."""
    parser = argparse.ArgumentParser(description="Write a synthetic probe set in BRODEN format.")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=128, help="image size in pixels (masks: half)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--concepts", type=int, default=None, help="add procedural concepts up to this many labels"
    )
    args = parser.parse_args(argv)
    try:
        path = generate_synthetic(args.out, args.images, args.size, args.seed, args.concepts)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0
