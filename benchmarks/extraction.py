"""Activation extraction into the store (with exact thresholds) vs the bare forward pass.

Network: synthnet (or alexnet) with random weights, on the synthetic probe set. Three timings:

* store: ``prepare_activation_store`` from scratch (image decoding, Lightning predict loop,
  HDF5 writes, pooled means, exact streaming top-τ thresholds);
* forward+load: the same DataLoader over the same images (decoding included) and the same
  ``LayerExtractor`` forward, results discarded;
* forward only: the same forward on images already decoded into memory.

Then several layers (``--layers``, default every alias): all their stores from one pass
(``features.layers``) against one pass per layer, each from an empty cache.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from common import Clock, compose, emit, machine, parser, setup, synthetic_overrides
from omegaconf import open_dict


def bare_passes(cfg, concepts, batch_size: int) -> tuple[float, float]:
    """(seconds of forward+load, seconds of forward on preloaded images)."""
    import hydra
    from torch.utils.data import DataLoader

    from net2vec.features.extract import ProbeImages, normalise
    from net2vec.features.hooks import LayerExtractor

    network = hydra.utils.instantiate(cfg.network)
    images = ProbeImages(concepts.attrs["dataset_root"], concepts.images, int(network.input_size))
    extractor = LayerExtractor(network.build(), network.resolve_layer(str(cfg.layer)))
    loader = DataLoader(images, batch_size=batch_size, shuffle=False)
    with torch.inference_mode(), Clock() as with_load:
        for _, batch in loader:
            extractor(normalise(batch))
    preloaded = [batch for _, batch in loader]
    with torch.inference_mode(), Clock() as forward:
        for batch in preloaded:
            extractor(normalise(batch))
    return with_load.seconds, forward.seconds


def layer_passes(cfg, concepts, layers: list[str]) -> tuple[float, float]:
    """(seconds for the stores of `layers` in one pass, seconds with one pass per layer)."""
    from net2vec.run.pipeline import prepare_activation_store

    activations = Path(cfg.paths.cache_dir) / "activations"
    shutil.rmtree(activations, ignore_errors=True)
    with open_dict(cfg):
        cfg.features.layers = list(layers)
    with Clock() as together:
        prepare_activation_store(cfg, concepts, layers[0])
    shutil.rmtree(activations, ignore_errors=True)
    with open_dict(cfg):
        cfg.features.layers = []
    with Clock() as apart:
        for layer in layers:
            prepare_activation_store(cfg, concepts, layer)
    return together.seconds, apart.seconds


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--network", default="synthnet", choices=["synthnet", "alexnet"])
    p.add_argument("--images", type=int, default=None)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--layers", default=None, help="comma-separated; default: every alias")
    args = p.parse_args()
    setup(args)
    images = args.images or (120 if args.small else 600)
    overrides = [
        f"network={args.network}",
        "network.weights=null",
        f"network.input_size={args.size}",
        "data=synthetic",
        *synthetic_overrides(images, args.size, None),
    ]
    cfg = compose(args.work, *overrides)
    from net2vec.data.concept_store import prepare_concept_store
    from net2vec.run.pipeline import ensure_dataset, prepare_activation_store

    concepts = prepare_concept_store(
        ensure_dataset(cfg.data), Path(cfg.paths.cache_dir), progress=False
    )
    with open_dict(cfg):
        cfg.features.progress = False
    shutil.rmtree(
        Path(cfg.paths.cache_dir) / "activations", ignore_errors=True
    )  # time a fresh build
    bare_passes(cfg, concepts, int(cfg.features.batch_size))  # warm-up (page cache, allocator)
    with Clock() as store_clock:
        acts = prepare_activation_store(cfg, concepts)
    load_s, forward_s = bare_passes(cfg, concepts, int(cfg.features.batch_size))
    n = concepts.num_images
    ratio = store_clock.seconds / load_s
    layers = args.layers.split(",") if args.layers else list(cfg.network.layers)
    one_pass_s, per_layer_s = layer_passes(cfg, concepts, layers)
    record = {
        "machine": machine(),
        "network": args.network,
        "layer": str(cfg.layer),
        "images": n,
        "input_size": args.size,
        "filters": acts.num_filters,
        "map_size": list(acts.map_size),
        "store_images_per_s": round(n / store_clock.seconds, 1),
        "forward_with_loading_images_per_s": round(n / load_s, 1),
        "forward_only_images_per_s": round(n / forward_s, 1),
        "ratio_vs_forward_with_loading": round(ratio, 3),
        "ratio_vs_forward_only": round(store_clock.seconds / forward_s, 3),
        "layers": layers,
        "layers_one_pass_s": round(one_pass_s, 2),
        "layers_pass_per_layer_s": round(per_layer_s, 2),
        "layers_speedup": round(per_layer_s / one_pass_s, 2),
        "targets": {"ratio<=1.3": bool(ratio <= 1.3)},
    }
    emit(
        "extraction",
        record,
        [
            f"{args.network} {cfg.layer} random weights, {n} images at {args.size} px -> "
            f"{acts.num_filters}x{acts.map_size[0]}x{acts.map_size[1]}",
            f"store {n / store_clock.seconds:.1f} img/s vs forward+load {n / load_s:.1f} img/s "
            f"(ratio {ratio:.2f}x) vs forward only {n / forward_s:.1f} img/s",
            f"{len(layers)} layers ({','.join(layers)}): one pass {one_pass_s:.1f} s vs one pass "
            f"per layer {per_layer_s:.1f} s ({per_layer_s / one_pass_s:.2f}x)",
        ],
    )


if __name__ == "__main__":
    main()
