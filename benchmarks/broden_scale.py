"""The whole segmentation run at BRODEN-like shape, at reduced N on a CPU; projected to BRODEN.

Store: the synthetic set with a BRODEN-size catalogue (``data.concepts=1197``) at 226 px
(113×113 masks) and the planted network at 13×13 maps with K = 256 filters (AlexNet conv5's
shape). The run is the pipeline's own ``train(cfg)``: single-filter set IoU, the all-filter probe
over every concept, then the top-F probes for the paper's F list (one head per F), ``--epochs``
epochs each with validation. Stage timings come from summary.json; the projection to BRODEN
scales the per-epoch probe time and the single-filter pass linearly in N (pairs per image
similar) and multiplies the probes by 30 epochs. ``--images 63305`` runs the full size (GPU).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from common import compose, emit, machine, parser, planted_stores, setup, synthetic_overrides

BRODEN_IMAGES = 63305
F_LIST = [1, 2, 4, 8, 16, 32, 64, 128, 160, 192, 224]


def vm_hwm_mib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=None)
    p.add_argument("--epochs", type=int, default=1)
    args = p.parse_args()
    setup(args)
    images = args.images or (120 if args.small else 400)
    subsets = F_LIST[:4] if args.small else F_LIST
    work = Path(args.work)
    cfg = compose(
        work,
        "network=planted",
        "network.map_size=13",
        "network.filters=256",
        "network.channels.conv5=256",
        "network.input_size=227",
        f"task.epochs={args.epochs}",
        f"probe.subsets=[{','.join(map(str, subsets))}]",
        f"trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}",
        "trainer.enable_progress_bar=true",
        f"paths.output_dir={work}/run-broden-{images}",
        *synthetic_overrides(images, 226, 1197),
    )
    started = time.perf_counter()
    concepts, acts = planted_stores(cfg)  # built (or reused) outside the timed run
    stores_s = time.perf_counter() - started
    shutil.rmtree(Path(cfg.paths.cache_dir) / "probes", ignore_errors=True)  # train, do not load
    shutil.rmtree(cfg.paths.output_dir, ignore_errors=True)  # no checkpoint to resume

    from net2vec.run.pipeline import train

    timings = train(cfg)["timings_s"]
    seg = int(concepts.pixel_level.sum())
    per_epoch = {
        k: timings.get(k, 0.0) / args.epochs for k in ("probe_all_filters", "probe_subsets")
    }
    scale = BRODEN_IMAGES / images
    projected = (timings.get("single_filter", 0.0) + 30 * sum(per_epoch.values())) * scale
    record = {
        "machine": machine(),
        "device": args.device,
        "images": images,
        "pairs": int(len(concepts.pair_image)),
        "concepts": int(concepts.num_concepts),
        "seg_concepts": seg,
        "mask_size": list(concepts.mask_size),
        "map_size": list(acts.map_size),
        "filters": acts.num_filters,
        "subsets": subsets,
        "epochs": args.epochs,
        "stores_build_or_reuse_s": round(stores_s, 1),
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "epochs_per_s_all_filters": round(1 / per_epoch["probe_all_filters"], 4),
        "epochs_per_s_subsets": round(1 / per_epoch["probe_subsets"], 4)
        if per_epoch["probe_subsets"]
        else None,
        "projected_broden_30_epochs_h": round(projected / 3600, 2),
        "peak_rss_mib": round(vm_hwm_mib()),
    }
    emit(
        "broden_scale",
        record,
        [
            f"{images} images, {len(concepts.pair_image)} pairs, {seg} seg concepts, masks {concepts.mask_size}, "
            f"maps {acts.map_size}, K={acts.num_filters}, F list {subsets}",
            f"per epoch (incl. validation): all filters {per_epoch['probe_all_filters']:.1f} s, "
            f"{len(subsets)} top-F heads {per_epoch['probe_subsets']:.1f} s",
            f"projected BRODEN ({BRODEN_IMAGES} images, 30 epochs) on this machine: {projected / 3600:.1f} h",
        ],
    )


if __name__ == "__main__":
    main()
