"""Compositional explanations: net2vec's counts-based beam search vs the package
``compositional-explanations`` on the same bitmaps and masks (docs/compexp.md).

Inputs: random label masks (blobs, some image-level labels) and unit maps mixing them
(``tests/compexp_fixtures.random_maps``), N images at S×S mask pixels, C labels, K units.

* net2vec: ``probes.compexp.explain_units`` over all K units at once (length 3, beam 5);
* package beam: ``beam.compute_beam_explanations`` unit by unit on a sample of units, given the
  same bitmaps A_k (N, S·S) and masks; the ratio is package seconds per unit / net2vec seconds
  per unit; the sampled units' best IoUs must agree (1e-6);
* package optimal: ``optimal.compute_optimal_explanations`` on a smaller sample: how often
  net2vec's beam formula is below the optimum (the suboptimality rate);
* a projection, from the measured net2vec rate (unit·formula·pixel per second, the work of the
  passes), of ResNet-18 layer4 (512 units) on BRODEN (63,305 images, 112×112 masks) at
  length 3, beam 5: passes of 1, 2·beam and beam formulas per unit.

``compexp_stage(concepts, activations, …)`` runs ``task=compexp`` on stores (for scale.py).
"""

from __future__ import annotations

import contextlib
import io
import time
from functools import partial

import numpy as np
import torch
from common import emit, machine, parser, setup
from compexp_fixtures import random_maps

from net2vec.data.datamodules import SegmentationDataModule
from net2vec.probes.compexp import explain_units
from net2vec.probes.compexp_task import CompExpTask
from net2vec.probes.formulas import evaluate, parse
from net2vec.run.pipeline import StageTimer

BRODEN = {"images": 63305, "pixels": 112 * 112, "units": 512}


def compexp_stage(concepts, activations, length=3, beam=5, batch_size=64, num_workers=0) -> dict:
    """``task=compexp`` on a concept store and an activation store: seconds and figures."""
    datamodule = partial(
        SegmentationDataModule, batch_size=batch_size, in_memory=False, num_workers=num_workers
    )
    task = CompExpTask("compexp", datamodule, length=length, beam=beam)
    timer = StageTimer()
    outcome = task.run(concepts, activations, None, None, timer)
    figures = outcome.counts()
    seconds = timer.seconds["compexp"]
    return {
        "compexp_s": round(seconds, 3),
        "units": figures["units"],
        "s_per_unit": seconds / max(figures["units"], 1),
        "mean_iou": figures["mean_iou"],
        "share_longer": figures["share_longer"],
    }


def package_text(node, names) -> str:
    """A package formula in net2vec's grammar."""
    kind = type(node).__name__
    if kind == "Leaf":
        return f'"{names[node.val]}"'
    if kind == "Not":
        raise ValueError("a negation outside AND NOT")
    if type(node.right).__name__ == "Not":
        return f"({package_text(node.left, names)} AND NOT {package_text(node.right.val, names)})"
    return f"({package_text(node.left, names)} {kind.upper()} {package_text(node.right, names)})"


def brute_iou(data, active, node) -> float:
    mask = evaluate(parse(package_text(node, data.names), data.names), data.label_mask)
    return float((active & mask).sum() / max((active | mask).sum(), 1))


def package_search(data, units, pixels, search) -> tuple[list[float], float]:
    """IoU of the package's formula for each unit and the seconds per unit."""
    masks = [
        torch.from_numpy(data.label_mask(c).reshape(-1, pixels)) for c in range(len(data.names))
    ]
    bitmaps, ious = data.bitmaps(), []
    start = time.perf_counter()
    for unit in units:
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints its progress
            best = search(bitmaps=torch.from_numpy(bitmaps[unit].reshape(-1, pixels)), masks=masks)
        best = best[0] if isinstance(best, tuple) else best
        ious.append(0.0 if best is None else brute_iou(data, bitmaps[unit], best))
    return ious, (time.perf_counter() - start) / len(units)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--sample", type=int, default=8, help="units given to the package's beam")
    p.add_argument("--optimal", type=int, default=4, help="units given to the optimal search")
    args = p.parse_args()
    setup(args)
    from compositional_explanations import beam as package_beam
    from compositional_explanations import optimal as package_optimal

    small = dict(images=60, labels=30, whole=5, units=16, mask_size=(28, 28), map_size=(7, 7))
    size = small if args.small else dict(
        images=150, labels=400, whole=40, units=64, mask_size=(32, 32), map_size=(7, 7),
        per_image=12,
    )  # fmt: skip
    data = random_maps(seed=0, **size)
    pixels = int(np.prod(data.mask_size))
    batches = [{k: v.to(args.device) for k, v in b.items()} for b in data.batches(32)]
    start = time.perf_counter()
    result = explain_units(lambda _: batches, data.thresholds, data.labels(), data.mask_size)
    ours = (time.perf_counter() - start) / size["units"]
    work = size["images"] * pixels * size["units"] * (1 + 10 + 5)  # unit·formula·pixels
    rate = work / (ours * size["units"])
    sample = list(range(min(args.sample, size["units"])))
    beam_search = partial(
        package_beam.compute_beam_explanations, disjoint_info=None, length=3, beam_size=5,
        device=torch.device(args.device),
    )  # fmt: skip
    theirs, package_s = package_search(data, sample, pixels, beam_search)
    mine = [result.best(k)[1] for k in sample]
    agree = int(np.sum(np.abs(np.array(mine) - np.array(theirs)) <= 1e-6))
    optimal = partial(
        package_optimal.compute_optimal_explanations, disjoint_info=None, length=3,
        device=torch.device(args.device),
    )  # fmt: skip
    # the optimal search on the small inputs (it is too slow here for the larger ones)
    data = random_maps(seed=1, **small)
    pixels = int(np.prod(data.mask_size))
    result = explain_units(lambda _: data.batches(), data.thresholds, data.labels(), data.mask_size)
    few = list(range(min(args.optimal, small["units"])))
    best, optimal_s = package_search(data, few, pixels, optimal) if few else ([], float("nan"))
    below = int(sum(result.best(k)[1] < b - 1e-9 for k, b in zip(few, best)))
    projected = BRODEN["images"] * BRODEN["pixels"] * BRODEN["units"] * 16 / rate
    record = {
        "machine": machine(),
        "inputs": {k: list(v) if isinstance(v, tuple) else v for k, v in size.items()},
        "net2vec_s_per_unit": ours,
        "package_beam_s_per_unit": package_s,
        "speedup": package_s / ours,
        "same_best_iou": f"{agree}/{len(sample)}",
        "package_optimal_s_per_unit": optimal_s,
        "below_optimal": f"{below}/{len(few)}",
        "optimal_inputs": {k: list(v) if isinstance(v, tuple) else v for k, v in small.items()},
        "rate_unit_formula_pixels_per_s": rate,
        "projected_broden_resnet18_layer4_s": projected,
    }
    emit(
        "compexp",
        record,
        [
            f"net2vec {ours * 1e3:.1f} ms/unit (all {size['units']} units at once), package beam "
            f"{package_s * 1e3:.1f} ms/unit ({len(sample)} units): {package_s / ours:.1f}x; "
            f"same best IoU on {agree}/{len(sample)} units",
            f"suboptimality vs the package's optimal search: {below}/{len(few)} units below the "
            f"optimum (small inputs {small['images']} images, {small['labels']} labels; "
            f"{optimal_s:.1f} s/unit for the optimal search)",
            f"PROJECTION (not measured): ResNet-18 layer4, 512 units, BRODEN 63,305 images at "
            f"112x112, length 3, beam 5 = {BRODEN['images'] * BRODEN['pixels'] * 512 * 16:.2e} "
            f"unit·formula·pixels at the rate measured here ({rate:.2e}/s on {args.device}): "
            f"{projected / 3600:.1f} h",
            machine(),
        ],
    )


if __name__ == "__main__":
    main()
