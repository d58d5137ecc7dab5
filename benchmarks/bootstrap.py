"""Cost of the statistics stage (net2vec.statistics.scores) at BRODEN-like scale, on simulated evidence.

1,000 segmentation concepts, N validation images, about P validation pairs, scores for the single
filter, all filters and 11 top-F heads (13 scores, 26 sparse count matrices); B bootstrap
resamples (intervals, paired p) and D shuffled-mask null draws for two scores on bit-packed
sh × sw masks. Prints the wall time of each part: the bootstrap must take seconds, not minutes.
"""

from __future__ import annotations

import numpy as np
from common import Clock, emit, machine, parser, setup

from net2vec.probes.outcome import ProbeOutcome
from net2vec.statistics.scores import Statistics

SUBSETS = (1, 2, 4, 8, 16, 32, 64, 128, 160, 192, 224)


def simulated_outcome(rng, concepts: int, images: int, pairs: int, mask_side: int) -> ProbeOutcome:
    """A ProbeOutcome with random per-pair evidence (IoU around 0.1–0.3)."""
    keys = np.unique(rng.integers(0, images * concepts, pairs))
    image, concept = keys // concepts, keys % concepts
    union = rng.integers(20, 2000, len(keys))
    names = ["single_iou_val", "iou_val"] + [f"iou_val_F{f}" for f in SUBSETS]
    counts = {n: (rng.binomial(union, rng.uniform(0.1, 0.3)), union) for n in names}
    nbytes = -(-mask_side * mask_side // 8)
    bits = {n: rng.integers(0, 256, (len(keys), nbytes), dtype=np.uint8) for n in names[:2]}
    mask_bits = rng.integers(0, 256, (len(keys), nbytes), dtype=np.uint8)
    score = rng.random(concepts)
    return ProbeOutcome(
        task="seg",
        names=np.array([f"c{i}" for i in range(concepts)]),
        categories=np.array(["object", "part", "material", "color"])[np.arange(concepts) % 4],
        label_numbers=np.arange(concepts),
        n_train=np.ones(concepts, int),
        n_val=np.ones(concepts, int),
        single_filter=np.zeros(concepts, int),
        single_scores={"single_iou_val": score},
        score_val=score,
        weights=np.zeros((concepts, 1), np.float32),
        bias=np.zeros(concepts, np.float32),
        subsets={f: {"score_val": score} for f in SUBSETS},
        evidence={
            "image": image,
            "concept": concept,
            "counts": counts,
            "bits": bits,
            "mask_bits": mask_bits,
        },
    )


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--concepts", type=int, default=1000)
    p.add_argument("--images", type=int, default=12000)
    p.add_argument("--pairs", type=int, default=250_000)
    p.add_argument("--mask-side", type=int, default=113)
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--draws", type=int, default=99)
    args = p.parse_args()
    if args.small:
        args.images, args.pairs = 3000, 30_000
    setup(args)
    rng = np.random.default_rng(0)
    outcome = simulated_outcome(rng, args.concepts, args.images, args.pairs, args.mask_side)
    pairs = len(outcome.evidence["image"])
    boot, null = Clock(), Clock()
    with boot:
        Statistics(args.resamples, null_draws=0).annotate(outcome)
    with null:
        Statistics(0, null_draws=args.draws).annotate(outcome)
    record = {
        "machine": machine(),
        "concepts": args.concepts,
        "images": args.images,
        "pairs": pairs,
        "scores": 2 + len(SUBSETS),
        "resamples": args.resamples,
        "bootstrap_s": round(boot.seconds, 2),
        "null_draws": args.draws,
        "mask": [args.mask_side, args.mask_side],
        "null_s": round(null.seconds, 2),
    }
    emit(
        "bootstrap",
        record,
        [
            f"{args.concepts} concepts, {args.images} val images, {pairs} pairs, 13 scores: "
            f"{args.resamples} bootstrap resamples in {boot.seconds:.1f} s",
            f"{args.draws} shuffled-mask null draws x 2 scores on {args.mask_side}² masks: "
            f"{null.seconds:.1f} s",
        ],
    )


if __name__ == "__main__":
    main()
