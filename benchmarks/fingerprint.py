"""Cost of the dataset fingerprint that keys every store (net2vec.data.fingerprint).

Generates a BRODEN-size tree (default 63,305 images, each with one object mask: 126,610 files
of ``--bytes`` bytes each, plus index.csv and label.csv) once under ``--work``, then times
``dataset_fingerprint(root, "stat")`` (relative path + size + mtime_ns of every file: the
default) cold and warm, and ``dataset_fingerprint(root, "hash")`` (full content,
``data.verify=hash``). "Cold" drops nothing from the OS page cache (that needs root): it is the
first call in this process right after the tree was generated or reopened.
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

from common import Clock, emit, machine, parser

from net2vec.data.broden import INDEX_COLUMNS
from net2vec.data.fingerprint import dataset_fingerprint


def generate(root: Path, images: int, size: int) -> None:
    """The tree: images/<i // 1000>/<i>.jpg and <i>_object.png of `size` bytes, index.csv."""
    if (root / "index.csv").is_file():
        return
    payload = os.urandom(size)
    rows = []
    for i in range(images):
        folder = root / "images" / f"{i // 1000:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for name in (f"{i}.jpg", f"{i}_object.png"):
            (folder / name).write_bytes(payload)
        rows.append(
            {
                "image": f"{i // 1000:03d}/{i}.jpg",
                "split": "train" if i % 5 else "val",
                "ih": 224,
                "iw": 224,
                "sh": 112,
                "sw": 112,
                "object": f"{i // 1000:03d}/{i}_object.png",
            }
        )
    with open(root / "label.csv", "w") as handle:
        handle.write("number,name,category,frequency,coverage,syns\n1,thing,object(1),1,1,\n")
    with open(root / "index.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, INDEX_COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(rows)


def timed(root: Path, verify: str) -> tuple[float, dict]:
    with Clock() as clock:
        digest = dataset_fingerprint(root, verify)
    return clock.seconds, digest


def main() -> None:
    p = parser("Cost of the dataset fingerprint on a BRODEN-size tree.")
    p.add_argument("--images", type=int, default=63305)
    p.add_argument("--bytes", type=int, default=4096, help="size of each image/mask file")
    args = p.parse_args()
    images = 2000 if args.small else args.images
    root = Path(args.work) / f"fingerprint-{images}-{args.bytes}"
    start = time.perf_counter()
    generate(root, images, args.bytes)
    generated = time.perf_counter() - start
    cold, first = timed(root, "stat")
    warm, again = timed(root, "stat")
    hashed, _ = timed(root, "hash")
    assert first == again  # nothing changed between the two calls
    files = 2 * images
    record = {
        "images": images,
        "files": files,
        "bytes_per_file": args.bytes,
        "stat_first_s": round(cold, 3),
        "stat_warm_s": round(warm, 3),
        "hash_s": round(hashed, 3),
        "machine": machine(),
    }
    emit(
        "fingerprint",
        record,
        [
            f"fingerprint of {files:,} files ({images:,} images + masks, {args.bytes} B each; "
            f"tree generated in {generated:.0f} s):",
            f"  stat (size + mtime_ns + path, default): {cold:.2f} s first call, {warm:.2f} s again",
            f"  hash (full content, data.verify=hash):  {hashed:.2f} s "
            f"({files * args.bytes / max(hashed, 1e-9) / 2**20:.0f} MiB/s)",
        ],
    )


if __name__ == "__main__":
    main()
