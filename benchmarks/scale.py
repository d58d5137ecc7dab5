"""Every stage at BRODEN shapes over growing N: time, peak RSS, growth in N, projection to BRODEN.

Data: ``scale_scene.Scene``, a BRODEN-shaped set (113² masks, 1,197 labels with BRODEN-like
frequencies, a scene per image) with planted activations, regenerated batch by batch (``read``
times that generation alone; every other stage includes it, as a store read would be). Shapes:
``--filters/--map-size`` (default both: K = 256 at 13², AlexNet conv5; K = 2,048 at 7², ResNet-50
layer4), N = ``--images`` (default 1k 2k 4k 8k; ``--small``: a seconds-long check).

Each (shape, N) runs in a fresh child process; each stage is timed and its peak RSS read from
``VmHWM`` after a reset (``/proc/self/clear_refs``), so a stage's figure is its own (plus what
earlier stages left in the context, e.g. the evidence). Growth and the projection to 63,305 images:
``scale_measure.fit``. One JSON line per shape is appended to ``benchmarks/results/<device>.jsonl``;
``--merge LOG…`` joins the records of runs at different N made side by side.

A stage is a function ``stage(context) -> None`` in ``STAGES``; it reads and leaves what it needs
in ``context`` (a dict). Adding a stage: write the function, append it to ``STAGES``.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time

import numpy as np
from common import machine, parser, setup
from scale_measure import fit, merged, print_table, record_line, vm

F_LIST = [1, 2, 4, 8, 16, 32, 64, 128, 160, 192, 224]  # the top-F heads (≤ K)


# ---------------------------------------------------------------- stages


def read(ctx: dict) -> None:
    """Generating every image's labels, masks and activations (the cost inside every stage)."""
    for _ in ctx["scene"].batches():
        pass


def thresholds(ctx: dict) -> None:
    from net2vec.features.thresholds import TopQuantile

    scene = ctx["scene"]
    top = TopQuantile(scene.filters, scene.images * scene.map_size**2, 0.005)
    for batch in scene.batches():
        top.update(batch["activations"])
    ctx["thresholds"] = top.compute()


def single_filter(ctx: dict) -> None:
    from net2vec.probes.single_filter import single_filter_seg

    scene = ctx["scene"]
    batches = scene.batches(thresholds=ctx["thresholds"])
    size = (scene.mask_size, scene.mask_size)
    result = single_filter_seg(
        batches, scene.labels, scene.filters, size, scene.split, per_image=False
    )
    ctx["ranking"] = np.argsort(-result.iou_train, axis=1, kind="stable")  # (C, K)
    ctx["best"] = result.best


def probe_epoch(ctx: dict) -> None:
    """One epoch of the all-filter probe and the top-F heads (one module), SGD, batch 64."""
    import torch

    from net2vec.probes.segmentation import SegmentationProbe

    scene, subsets = ctx["scene"], [f for f in F_LIST if f <= ctx["scene"].filters]
    mask = torch.ones(1 + len(subsets), scene.labels, scene.filters)
    for s, size in enumerate(subsets, start=1):
        mask[s] = 0
        mask[s].scatter_(1, torch.from_numpy(ctx["ranking"][:, :size]), 1.0)
    probe = SegmentationProbe(
        scene.labels, scene.filters, np.full(scene.labels, 0.9), mask, subsets
    )
    optimizer = probe.configure_optimizers()
    for batch in scene.batches(np.flatnonzero(scene.split == 0), ctx["thresholds"]):
        loss = probe.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    ctx["probe"] = probe


def calibrated_decision(ctx: dict) -> None:
    scene = ctx["scene"]
    ctx["probe"].calibrate(scene.batches(np.flatnonzero(scene.split == 0), ctx["thresholds"]))


def evidence(ctx: dict) -> None:
    """Per-pair counts and packed predictions of the best filter and every head on val."""
    from net2vec.probes.evidence import seg_evidence

    scene, probe = ctx["scene"], ctx["probe"]
    batches = scene.batches(np.flatnonzero(scene.split == 1), ctx["thresholds"])
    heads = [(probe, [f"h{s}" for s in range(probe.heads)])]
    size = (scene.mask_size, scene.mask_size)
    ctx["evidence"] = seg_evidence(batches, ctx["best"], heads, size, True)


def bootstrap(ctx: dict) -> None:
    """1,000 resamples of the val images: set IoU of the best filter and the all-filter probe."""
    from net2vec.statistics import bootstrap as bs

    ev, scene = ctx["evidence"], ctx["scene"]
    matrices = {
        f"{name}/{part}": bs.count_matrix(
            ev["image"], ev["concept"], values, scene.images, scene.labels
        )
        for name in ("single_iou_val", "h0")
        for part, values in zip(("inter", "union"), ev["counts"][name])
    }
    scores = {n: bs.iou_of(f"{n}/inter", f"{n}/union") for n in ("single_iou_val", "h0")}
    bs.bootstrap(matrices, scores, scene.images, 1000)


def shuffled_null(ctx: dict) -> None:
    """The probes' shuffled-mask null: 5 draws of the best filter's and the probe's val IoU."""
    from net2vec.statistics import bootstrap as bs

    ev, scene = ctx["evidence"], ctx["scene"]
    for bits in ev["bits"].values():
        bs.shuffled_null_iou(bits, ev["mask_bits"], ev["concept"], scene.labels, 5)


def netdissect_tally(ctx: dict) -> None:
    from net2vec.probes.netdissect import netdissect

    scene = ctx["scene"]
    ctx["labels"] = labels = scene.dissection_labels()
    size = (scene.mask_size, scene.mask_size)
    ctx["dissection"] = netdissect(scene.batches(), ctx["thresholds"].numpy(), labels, size)


def unit_null(ctx: dict) -> None:
    """NetDissect's unit null, 5 draws (the default): the masks pass, then the streamed draws."""
    from net2vec.probes.netdissect import image_chunks
    from net2vec.probes.single_filter import CHUNK_BYTES
    from net2vec.probes.unit_null import top_labels_from_chunks
    from net2vec.probes.unit_null import unit_null as null

    scene, labels, result = ctx["scene"], ctx["labels"], ctx["dissection"]

    def chunks():
        return image_chunks(scene.batches(), labels, scene.filters, CHUNK_BYTES)

    tops = top_labels_from_chunks(chunks(), result.top_concept, labels)
    size = (scene.mask_size, scene.mask_size)
    null(chunks(), result, tops, ctx["thresholds"].numpy(), size, False, 5, 0)


STAGES = [
    read,
    thresholds,
    single_filter,
    probe_epoch,
    calibrated_decision,
    evidence,
    bootstrap,
    shuffled_null,
    netdissect_tally,
    unit_null,
]


# ---------------------------------------------------------------- measuring


def child(args) -> None:
    """Run every stage at one (shape, N); print one JSON line {stage: {s, peak_rss_mib}}."""
    from scale_scene import Scene

    from net2vec.common.memory import return_large_buffers_to_os

    return_large_buffers_to_os()  # as train(cfg) does
    scene = Scene(args.child, args.filters[0], args.map_size[0], seed=args.seed)
    scene.pixel_labels_per_image = args.pairs_per_image
    scene.__post_init__()
    ctx = {"scene": scene}
    out = {}
    for stage in STAGES:
        gc.collect()
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM to the current RSS
        before, start = vm("VmRSS"), time.perf_counter()
        stage(ctx)
        out[stage.__name__] = {
            "s": round(time.perf_counter() - start, 2),
            "peak_rss_mib": round(vm("VmHWM"), 1),
            "rss_before_mib": round(before, 1),
        }
    print(json.dumps(out))


def shape_record(args, filters: int, map_size: int, images: list[int]) -> dict:
    """Run the children for one shape; the record with per-stage points and fits."""
    points, start = [], time.perf_counter()
    for n in images:
        if points and time.perf_counter() - start > args.budget_s:
            print(f"  K={filters}: --budget-s {args.budget_s} spent, N={n} and above left out")
            break
        command = [sys.executable, __file__, "--child", str(n), "--filters", str(filters)]
        command += ["--map-size", str(map_size), "--seed", str(args.seed)]
        command += ["--pairs-per-image", str(args.pairs_per_image)]
        if args.threads:
            command += ["--threads", str(args.threads)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"error: child N={n} K={filters} failed:\n{done.stderr[-3000:]}")
        points.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(
            f"  K={filters} {map_size}² N={n}: "
            + ", ".join(f"{k} {v['s']}s/{v['peak_rss_mib']:.0f}MiB" for k, v in points[-1].items()),
            flush=True,
        )
    images, stages = images[: len(points)], {}
    for name in points[0]:
        stage = {field: [p[name][field] for p in points] for field in points[0][name]}
        fitted = fit(images, stage["s"], stage["peak_rss_mib"], stage["rss_before_mib"])
        stages[name] = {**stage, **fitted}
    return {
        "filters": filters,
        "map_size": map_size,
        "mask_size": 113,
        "pixel_labels_per_image": args.pairs_per_image,
        "images": images,
        "stages": stages,
    }


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--filters", type=int, nargs="+", default=[256, 2048])
    p.add_argument("--map-size", type=int, nargs="+", default=[13, 7])
    p.add_argument("--images", type=int, nargs="+", default=[1000, 2000, 4000, 8000])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--pairs-per-image", type=float, default=17.5, help="pixel-level labels per image (BRODEN)"
    )
    p.add_argument("--budget-s", type=float, default=float("inf"), help="no larger N after this")
    p.add_argument("--no-record", action="store_true", help="do not append to benchmarks/results")
    p.add_argument("--merge", nargs="+", default=None, help="join the records printed by runs")
    p.add_argument("--child", type=int, default=None, help=argparse_hidden())
    args = p.parse_args()
    setup(args)
    if args.device != "cpu":
        sys.exit("error: --device cuda: the scale stages run on the CPU only so far")
    if len(args.filters) != len(args.map_size):
        sys.exit("error: --filters and --map-size must pair up (one map size per K)")
    if args.child is not None:
        return child(args)
    images = [120, 240] if args.small else sorted(args.images)
    shapes = [(64, 7)] if args.small else list(zip(args.filters, args.map_size))
    if args.merge:
        records = merged(args.merge)
    else:
        records = [
            {
                "benchmark": "scale",
                "date": time.strftime("%Y-%m-%d", time.gmtime()),
                "machine": machine(),
                "device": "cpu",
                **shape_record(args, filters, map_size, images),
            }
            for filters, map_size in shapes
        ]
    for record in records:
        print(json.dumps(record))
        if not args.small and not args.no_record:
            print(f"appended to {record_line(record)}")
        print_table(record)


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
