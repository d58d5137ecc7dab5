"""The paper's whole AlexNet study (Table 1, Fig. 2, Fig. 3) timed end to end.

Store: the synthetic set with a BRODEN-size catalogue (``data.concepts=1197``) at 226 px (113×113
masks) and, per layer, the planted network at Caffe AlexNet's shape for that layer (conv1 55×55
K=96, conv2 27×27 K=256, conv3/conv4 13×13 K=384, conv5 13×13 K=256). Per layer the study runs,
through the pipeline's own ``train(cfg)``: segmentation (single-filter pass, all-filter probe;
conv5 adds the paper's 11 top-F heads), classification (F = 1 everywhere, the paper's 16-value F
list on conv3–conv5) and the NetDissect tally. Stores are built
once, before the timed runs (their time is reported separately); probe caches are cleared so
every probe trains.

Prints one JSON line and appends it to ``benchmarks/results/<device>.jsonl`` with the device
name, torch version and date. ``--small`` is a CPU-sized run (few images, 2 epochs, conv3–conv5);
the full run is ``--images 63305 --epochs 30 --device cuda``.
"""

from __future__ import annotations

import datetime
import json
import shutil
import time
from pathlib import Path

from common import ROOT, compose, emit, machine, parser, planted_stores, setup, synthetic_overrides

# Caffe AlexNet (the paper's network): layer -> (map size, filters)
ALEXNET = {
    "conv1": (55, 96),
    "conv2": (27, 256),
    "conv3": (13, 384),
    "conv4": (13, 384),
    "conv5": (13, 256),
}
SEG_F = [1, 2, 4, 8, 16, 32, 64, 128, 160, 192, 224]
CLS_F = [1, 2, 3, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 80, 100, 128]


def jobs(layers: list[str]) -> list[tuple[str, str, list[int]]]:
    """(layer, task, F list) of the paper's study, with the NetDissect tally per layer."""
    out = []
    for layer in layers:
        filters = ALEXNET[layer][1]
        out.append((layer, "seg", [f for f in SEG_F if f <= filters] if layer == "conv5" else []))
        deep = layer in ("conv3", "conv4", "conv5")
        out.append((layer, "cls", [f for f in CLS_F if f <= filters] if deep else [1]))
        out.append((layer, "netdissect", []))
    return out


def layer_config(args, work: Path, layer: str, task: str, subsets: list[int], images: int):
    """The run config of one job: the planted network at `layer`'s AlexNet shape."""
    size, filters = ALEXNET[layer]
    return compose(
        work,
        "network=planted",
        f"network.map_size={size}",
        f"network.filters={filters}",
        f"network.channels.conv5={filters}",
        "network.input_size=227",
        f"task={task}",
        f"task.epochs={args.epochs}",
        f"probe.subsets=[{','.join(map(str, subsets))}]",
        f"trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}",
        f"paths.output_dir={work}/study-{images}/{layer}-{task}",
        *synthetic_overrides(images, 226, 1197),
    )


def record_line(record: dict, device: str) -> Path:
    """Append `record` to benchmarks/results/<device>.jsonl; returns the file."""
    import torch

    name = torch.cuda.get_device_name() if device == "cuda" else f"cpu-{machine().split(',')[0]}"
    path = ROOT / "benchmarks" / "results" / f"{name.replace(' ', '_').replace('/', '_')}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write(json.dumps({"device_name": name, **record}) + "\n")
    return path


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--layers", default=None, help="comma-separated subset of conv1..conv5")
    p.add_argument("--no-record", action="store_true", help="do not append to benchmarks/results")
    args = p.parse_args()
    setup(args)
    images = args.images or (150 if args.small else 2000)
    args.epochs = args.epochs or (2 if args.small else 30)
    layers = (
        args.layers.split(",")
        if args.layers
        else (["conv3", "conv4", "conv5"] if args.small else list(ALEXNET))
    )
    work = Path(args.work)
    from net2vec.run.pipeline import train  # after setup(): keeps --help fast

    stores_s, runs = 0.0, {}
    for layer, task, subsets in jobs(layers):
        cfg = layer_config(args, work, layer, task, subsets, images)
        started = time.perf_counter()
        concepts, _ = planted_stores(cfg)  # built once (cached), outside the timed runs
        stores_s += time.perf_counter() - started
        shutil.rmtree(Path(cfg.paths.cache_dir) / "probes", ignore_errors=True)
        shutil.rmtree(cfg.paths.output_dir, ignore_errors=True)
        started = time.perf_counter()
        timings = train(cfg)["timings_s"]
        runs[f"{layer}-{task}"] = {
            "s": round(time.perf_counter() - started, 2),
            "stages_s": {k: round(v, 2) for k, v in timings.items()},
            "subsets": len(subsets),
        }
    total = sum(run["s"] for run in runs.values())
    record = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "device": args.device,
        "images": images,
        "pairs": int(len(concepts.pair_image)),
        "concepts": int(concepts.num_concepts),
        "epochs": args.epochs,
        "layers": layers,
        "stores_build_or_reuse_s": round(stores_s, 1),
        "study_s": round(total, 1),
        "runs": runs,
    }
    path = None if args.no_record else record_line(record, args.device)
    slowest = max(runs, key=lambda name: runs[name]["s"])
    emit(
        "study",
        record,
        [
            f"{images} images, {len(concepts.pair_image)} pairs, {concepts.num_concepts} concepts, "
            f"layers {layers}, {args.epochs} epochs, {len(runs)} runs",
            f"whole study {total / 60:.1f} min (stores {stores_s:.0f} s, built once); "
            f"slowest run {slowest} {runs[slowest]['s']:.0f} s",
            f"recorded in {path}" if path else "not recorded (--no-record)",
        ],
    )


if __name__ == "__main__":
    main()
