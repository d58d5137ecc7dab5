"""Do the run's intervals cover and its tests hold their level? A simulation from a known model.

Each replicate draws segmentation evidence for C concepts from a model whose true set IoUs are
known (docs/statistics.md "Simulation"): concept c sits on n_c validation images (n in
``--sizes``); on each of its images the union |M ∪ L| ~ 1 + Poisson(m), m log-normal, and the
intersection ~ Binomial(union, q_c · g), g ~ U(0.4, 1.6) a per-image difficulty shared by the
single filter and the probe (so the comparison is paired). The true set IoU is E[I] / E[U] = q_c.
The real code (``Statistics.annotate`` on a ProbeOutcome) computes every interval and test.

- coverage: share of (replicate, concept) intervals that contain the true single, all and
  all − single value, per n, for the BCa interval the run writes and the percentile one it
  replaced; share of replicates whose interval of the % of concepts with all ≥ single contains
  the true % (true differences drawn around 0, many within noise), and whether the estimate lies
  inside its interval;
- false positives under a true null (q_all = q_single for every concept; predicted masks drawn
  independently of the true ones): per concept, how often p ≤ 0.05, and per family (all concepts
  of a replicate), how often at least one is called significant after Benjamini–Hochberg
  (the run's rule: q ≤ fdr, for all > single also the interval above 0).

Prints one JSON line and a summary; ``--small`` runs in seconds.
"""

from __future__ import annotations

import numpy as np
from common import Clock, emit, machine, parser

from net2vec.probes.outcome import ProbeOutcome
from net2vec.statistics import bootstrap as bs
from net2vec.statistics.scores import Statistics
from net2vec.statistics.sums import EvidenceSums

SIDE = 8  # mask side of the null replicates (bits per pair: 64)


def draw_evidence(rng, sizes, q_single, q_all, images: int, masks: bool) -> dict:
    """Per-pair counts (and, with ``masks``, independent random masks) for the concepts."""
    image, concept = [], []
    for c, n in enumerate(sizes):
        image.append(rng.choice(images, n, replace=False))
        concept.append(np.full(n, c))
    image, concept = np.concatenate(image), np.concatenate(concept)
    if masks:  # prediction and true mask independent: every score is at its null
        shape = (len(image), SIDE * SIDE)
        truth = rng.random(shape) < rng.uniform(0.1, 0.5, (len(image), 1))
        preds = {n: rng.random(shape) < rng.uniform(0.1, 0.5, (len(image), 1)) for n in ("s", "a")}
        counts = {n: ((p & truth).sum(1), (p | truth).sum(1)) for n, p in preds.items()}
        bits = {n: np.packbits(p, axis=1) for n, p in preds.items()}
    else:
        mean = rng.lognormal(np.log(200), 0.8, len(image))
        difficulty = rng.uniform(0.4, 1.6, len(image))
        counts = {}
        for name, q in (("s", q_single), ("a", q_all)):
            union = 1 + rng.poisson(mean)
            counts[name] = (rng.binomial(union, np.clip(q[concept] * difficulty, 0, 1)), union)
        bits, truth = {}, None
    evidence = {"image": image, "concept": concept}
    evidence["counts"] = {"single_iou_val": counts["s"], "iou_val": counts["a"]}
    if masks:
        evidence["bits"] = {"single_iou_val": bits["s"], "iou_val": bits["a"]}
        evidence["mask_bits"] = np.packbits(truth, axis=1)
    else:
        evidence["bits"], evidence["mask_bits"] = {}, np.zeros((len(image), 1), np.uint8)
    return evidence


def outcome_of(evidence: dict, sizes) -> ProbeOutcome:
    """A seg ProbeOutcome around simulated evidence (scores: set IoU of the counts)."""
    c = len(sizes)
    zeros = np.zeros(c)
    return ProbeOutcome(
        task="seg",
        names=np.array([f"c{i}" for i in range(c)]),
        categories=np.array(["object"] * c),
        label_numbers=np.arange(c),
        n_train=np.asarray(sizes),
        n_val=np.asarray(sizes),
        single_filter=np.zeros(c, int),
        single_scores={"single_iou_val": zeros},
        score_val=zeros,
        weights=np.zeros((c, 1), np.float32),
        bias=np.zeros(c, np.float32),
        evidence=evidence,
    )


def percentile(outcome: ProbeOutcome, stats: Statistics) -> dict:
    """The percentile intervals (what the run wrote before BCa) of single, all and all − single."""
    samples = EvidenceSums("seg", outcome.evidence, len(outcome.names)).resamples(
        stats.resamples, stats.seed
    )
    samples["diff_val"] = samples["iou_val"] - samples["single_iou_val"]
    return {name: bs.interval(values, stats.level) for name, values in samples.items()}


def coverage_replicate(rng, sizes, stats: Statistics, images: int) -> dict:
    """Per score: (concepts, 2) hits [BCa, percentile]; the share's hit and estimate-inside."""
    q_single = rng.uniform(0.1, 0.4, len(sizes))
    q_all = np.clip(q_single + rng.normal(0.02, 0.03, len(sizes)), 0.02, 0.6)
    outcome = outcome_of(draw_evidence(rng, sizes, q_single, q_all, images, False), sizes)
    stats.annotate(outcome)
    truth = {"single_iou_val": q_single, "iou_val": q_all, "diff_val": q_all - q_single}
    bca = dict(outcome.intervals)
    bca["diff_val"] = (outcome.columns["diff_val_lo"], outcome.columns["diff_val_hi"])
    old = percentile(outcome, stats)
    hits = {
        name: np.stack([(lo <= value) & (value <= hi) for lo, hi in (bca[name], old[name])], axis=1)
        for name, value in truth.items()
    }
    info = outcome.statistics
    share = 100.0 * np.mean(q_all >= q_single)
    lo, hi = info["percent_all_ge_single_lo"], info["percent_all_ge_single_hi"]
    hits["share"] = np.array([[lo <= share <= hi, lo <= info["percent_all_ge_single"] <= hi]])
    return hits


def null_replicate(rng, sizes, stats: Statistics, images: int) -> dict:
    """Per concept p ≤ 0.05 and per family "any significant" under a true null, per test."""
    outcome = outcome_of(draw_evidence(rng, sizes, None, None, images, True), sizes)
    stats.annotate(outcome)
    col, fdr = outcome.columns, stats.fdr
    tested = np.isfinite(col["p_all_gt_single"])
    return {
        "per_concept": {
            "all_gt_single": np.mean(col["p_all_gt_single"][tested] <= 0.05),
            "single_gt_all": np.mean(col["p_single_gt_all"][tested] <= 0.05),
            "null": np.mean(col["p_null"][tested] <= 0.05),
            "single_null": np.mean(col["single_p_null"][tested] <= 0.05),
        },
        "family": {
            "all_gt_single": bool(
                ((col["q_all_gt_single"] <= fdr) & (col["diff_val_lo"] > 0)).any()
            ),
            "single_gt_all": bool(
                ((col["q_single_gt_all"] <= fdr) & (col["diff_val_hi"] < 0)).any()
            ),
            "null": bool((col["q_null"] <= fdr).any()),
            "single_null": bool((col["single_q_null"] <= fdr).any()),
        },
    }


def run(args) -> dict:
    """Every replicate of both simulations; the figures of the JSON line."""
    rng = np.random.default_rng(args.seed)
    sizes = np.repeat(args.sizes, args.per_size)
    stats = Statistics(resamples=args.resamples, null_draws=0)
    cover = [coverage_replicate(rng, sizes, stats, args.images) for _ in range(args.replicates)]
    record: dict = {"coverage": {}}
    for name in ("single_iou_val", "iou_val", "diff_val"):
        hits = np.stack([c[name] for c in cover])  # (R, C, 2)
        record["coverage"][name] = {
            f"n={n}": {
                "bca": round(float(hits[:, sizes == n, 0].mean()), 3),
                "percentile": round(float(hits[:, sizes == n, 1].mean()), 3),
            }
            for n in args.sizes
        }
    share = np.concatenate([c["share"] for c in cover])
    record["coverage"]["percent_all_ge_single"] = {
        "bca": round(float(share[:, 0].mean()), 3),
        "estimate_inside": round(float(share[:, 1].mean()), 3),
    }
    stats = Statistics(resamples=args.resamples, null_draws=args.draws)
    nulls = [null_replicate(rng, sizes, stats, args.images) for _ in range(args.replicates)]
    record["false_positive"] = {
        level: {
            test: round(float(np.mean([n[level][test] for n in nulls])), 3)
            for test in nulls[0][level]
        }
        for level in ("per_concept", "family")
    }
    return record


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--replicates", type=int, default=200)
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 50, 200])
    p.add_argument("--per-size", type=int, default=40, help="concepts per n")
    p.add_argument("--images", type=int, default=400, help="validation images")
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--draws", type=int, default=99, help="shuffled-mask null draws")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.small:
        args.replicates, args.resamples, args.per_size = 12, 400, 20
    clock = Clock()
    with clock:
        record = run(args)
    record.update(
        machine=machine(),
        replicates=args.replicates,
        concepts=len(args.sizes) * args.per_size,
        resamples=args.resamples,
        null_draws=args.draws,
        seconds=round(clock.seconds, 1),
    )
    lines = [f"{args.replicates} replicates x {record['concepts']} concepts, {clock.seconds:.0f} s"]
    for name, by_n in record["coverage"].items():
        lines.append(f"coverage {name}: {by_n}")
    for level, rates in record["false_positive"].items():
        lines.append(f"false positives under the null, {level}: {rates}")
    emit("coverage", record, lines)


if __name__ == "__main__":
    main()
