"""Peak RSS of segmentation probe training (streaming, ``in_memory=False``) as N grows 4×.

For each N a fresh child process (this script with ``--child N``) opens the planted stores
(built beforehand by the parent, so store building is not in the figure), records its RSS
after imports and store opening, resets the kernel's high-water mark (``/proc/self/clear_refs``;
``ru_maxrss`` would carry the parent's peak over the fork), trains the all-filter probe with a
Lightning Trainer for one epoch with validation, and reads the peak (``VmHWM``).
Flat = the peak does not grow with N beyond the stores' small eager arrays.
"""

from __future__ import annotations

import json
import subprocess
import sys

from common import compose, emit, machine, parser, planted_stores, setup, synthetic_overrides


def config(args, images: int):
    return compose(
        args.work,
        "network=planted",
        f"network.filters={args.filters}",
        f"network.channels.conv5={args.filters}",
        *synthetic_overrides(images, args.size, None),
    )


def vm(field: str) -> float:
    """A /proc/self/status memory figure (VmRSS, VmHWM) in MiB."""
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"/proc/self/status has no {field}")


def child(args) -> None:
    """Train one epoch on N images streaming from the stores; print a JSON line of RSS figures."""
    import pytorch_lightning as pl
    import torch

    from net2vec.common.memory import return_large_buffers_to_os
    from net2vec.data.datamodules import SegmentationDataModule
    from net2vec.probes.segmentation import SegmentationProbe

    return_large_buffers_to_os()  # as train(cfg) does

    concepts, acts = planted_stores(config(args, args.child))
    before = vm("VmRSS")
    with open("/proc/self/clear_refs", "w") as handle:  # reset VmHWM to the current RSS
        handle.write("5")
    datamodule = SegmentationDataModule(concepts, acts, batch_size=64, in_memory=False, seed=0)
    probe = SegmentationProbe(concepts.num_concepts, acts.num_filters, concepts.alpha(), seed=0)
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="gpu" if args.device == "cuda" else "cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(probe, datamodule=datamodule)
    cuda = (
        {"peak_cuda_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1)}
        if args.device == "cuda"
        else {}
    )
    print(
        json.dumps(
            {
                "images": args.child,
                "pairs": int(len(concepts.pair_image)),
                "rss_before_mib": round(before, 1),
                "peak_rss_mib": round(vm("VmHWM"), 1),
                **cuda,
            }
        )
    )


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=None, help="smallest N (the largest is 4N)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--filters", type=int, default=128)
    p.add_argument("--child", type=int, default=None, help=argparse_hidden())
    args = p.parse_args()
    setup(args)
    if args.child:
        return child(args)
    base = args.images or (150 if args.small else 500)
    rows = []
    for images in (base, 2 * base, 4 * base):
        planted_stores(config(args, images))  # build the stores here, outside the measured child
        cmd = [
            sys.executable,
            __file__,
            "--child",
            str(images),
            "--work",
            args.work,
            "--size",
            str(args.size),
            "--filters",
            str(args.filters),
            "--device",
            args.device,
        ] + (["--threads", str(args.threads)] if args.threads else [])
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads([line for line in out.splitlines() if line.startswith("{")][-1]))
    growth = rows[-1]["peak_rss_mib"] - rows[0]["peak_rss_mib"]
    train_growth = (rows[-1]["peak_rss_mib"] - rows[-1]["rss_before_mib"]) - (
        rows[0]["peak_rss_mib"] - rows[0]["rss_before_mib"]
    )
    record = {
        "machine": machine(),
        "device": args.device,
        "mode": "in_memory=False (streaming from the stores)",
        "runs": rows,
        "peak_growth_mib_4x": round(growth, 1),
        "training_growth_mib_4x": round(train_growth, 1),
        "targets": {"flat (growth < 10% of peak)": bool(growth < 0.1 * rows[0]["peak_rss_mib"])},
    }
    emit(
        "memory",
        record,
        [
            f"N={r['images']:>6} pairs={r['pairs']:>7}: RSS after setup {r['rss_before_mib']:.0f} MiB, "
            f"peak {r['peak_rss_mib']:.0f} MiB"
            + (f", CUDA peak {r['peak_cuda_mib']:.0f} MiB" if "peak_cuda_mib" in r else "")
            for r in rows
        ]
        + [f"N x4: peak grows {growth:.1f} MiB (training part {train_growth:.1f} MiB)"],
    )


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
