"""Axis alignment (Bau et al. 2017, §3.2; docs/method.md §7): are concepts aligned with single units?

Rotation test: a seeded random orthogonal Q (QR of a K×K Gaussian, signs fixed so that Q is
Haar-distributed) maps each position's K-vector a to Q a. Rotated activations are signed, so
each rotated unit is thresholded at the top-τ quantile of its own rotated values; NetDissect is
then recounted, and the learned all-filter segmentation probe is retrained on the thresholded
rotated maps. A linear probe on raw maps would be exactly rotation-invariant; on thresholded
maps only up to what thresholding keeps, so both mean IoUs are reported.

PCA test: pooled activations of all images are standardised per unit; the rows of one
concept's images are decomposed by SVD (no re-centring, as in the CS 381V study), and the top
right-singular vector (loading) is compared with the unit axes: alignment = |l|_(1) / |l|_(2),
the largest over the second-largest absolute loading (≫ 1: one unit carries the concept).
The same ratio is reported for a rotated basis and for the concept's mean shift (standardised
mean of its images minus that of the others), which a global factor shared by all units (image
contrast, say) cannot dominate the way it can dominate the uncentred top loading.
"""

from __future__ import annotations

import logging

import numpy as np

from net2vec.experiments.common import (
    Table,
    TransformedActivations,
    at_quantile,
    detector_counts,
    dissect,
    pyplot,
    save_figure,
)

log = logging.getLogger(__name__)


def random_rotation(num_filters: int, seed: int) -> np.ndarray:
    """(K, K) float64 Haar-random orthogonal matrix from a seeded Gaussian's QR."""
    gaussian = np.random.default_rng(seed).standard_normal((num_filters, num_filters))
    q, r = np.linalg.qr(gaussian)
    return q * np.sign(np.diag(r))[None, :]


def rotate(acts: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """a' = Q a at every position: (n, K, h, w) -> (n, K, h, w) float32."""
    return np.einsum("jk,nkhw->njhw", rotation.astype(np.float32), np.asarray(acts, np.float32))


def rotated_source(store, seed: int, quantile: float) -> TransformedActivations:
    """The store seen through a random rotation of its filter space, with rotated thresholds."""
    rotation = random_rotation(store.num_filters, seed)
    return TransformedActivations(store, lambda acts: rotate(acts, rotation), quantile)


def all_filter_iou(ctx, concepts, source) -> float:
    """Mean validation set IoU of the all-filter segmentation probe trained on `source`'s maps."""
    module = ctx.train_probe(concepts, source)
    iou, union = module.val_iou[0], module.val_union[0]
    keep = np.asarray(concepts.pixel_level, bool) & (union > 0)
    return float(iou[keep].mean()) if keep.any() else float("nan")


def rotation_test(ctx, concepts, store, seeds, probe: bool = True, **dissect_kw) -> Table:
    """One row per basis (original, then each seed): unique detectors per category, mean IoUs."""
    quantile = ctx.quantile
    rows, header = [], None
    bases = [("original", None)] + [(f"rotation_{s}", int(s)) for s in seeds]
    for name, seed in bases:
        source = (
            at_quantile(store, quantile) if seed is None else rotated_source(store, seed, quantile)
        )
        result = dissect(concepts, source, **dissect_kw)
        counts = detector_counts(result, concepts)
        probe_iou = all_filter_iou(ctx, concepts, source) if probe else float("nan")
        header = header or ["basis", "seed", *counts, "mean_top_iou", "all_filter_iou"]
        rows.append(
            [
                name,
                -1 if seed is None else seed,
                *counts.values(),
                float(result.top_iou.mean()),
                probe_iou,
            ]
        )
        log.info(
            "axis alignment: %s: %d unique detectors, all-filter IoU %.4f",
            name,
            counts["unique"],
            probe_iou,
        )
    return Table(header, rows)


def summarise_rotations(table: Table) -> Table:
    """Original vs mean ± std over the rotations, per numeric column."""
    numeric = table.columns[2:]
    original = table.rows[0][2:]
    rotated = np.array([row[2:] for row in table.rows[1:]], dtype=np.float64)
    rows = [
        [
            name,
            original[i],
            float(rotated[:, i].mean()) if len(rotated) else float("nan"),
            float(rotated[:, i].std(ddof=1)) if len(rotated) > 1 else 0.0,
            len(rotated),
        ]
        for i, name in enumerate(numeric)
    ]
    return Table(["quantity", "original", "rotated_mean", "rotated_std", "rotations"], rows)


def concept_loadings(concepts, pooled: np.ndarray, concept: int) -> tuple[np.ndarray, float]:
    """Top loading (K,) of the standardised pooled activations of `concept`'s images, and the
    fraction of their second moment it explains. The loading's sign makes its largest entry > 0."""
    pooled = np.asarray(pooled, np.float64)
    std = pooled.std(0)
    standard = (pooled - pooled.mean(0)) / np.where(std > 0, std, 1.0)
    rows = standard[np.asarray(concepts.presence)[:, concept]]
    if len(rows) == 0:
        raise ValueError(f"concept {concepts.names[concept]!r} has no images")
    _, singular, vt = np.linalg.svd(rows, full_matrices=False)
    loading = vt[0] * np.sign(vt[0][np.argmax(np.abs(vt[0]))])
    return loading, float(singular[0] ** 2 / max((singular**2).sum(), 1e-300))


def concept_shift(concepts, pooled: np.ndarray, concept: int) -> np.ndarray:
    """(K,) unit vector: mean standardised pooled activation of `concept`'s images minus the rest's."""
    pooled = np.asarray(pooled, np.float64)
    std = pooled.std(0)
    standard = (pooled - pooled.mean(0)) / np.where(std > 0, std, 1.0)
    inside = np.asarray(concepts.presence)[:, concept]
    if inside.all() or not inside.any():
        return np.zeros(pooled.shape[1])
    shift = standard[inside].mean(0) - standard[~inside].mean(0)
    return shift / max(np.linalg.norm(shift), 1e-300)


def alignment_ratio(loading: np.ndarray) -> float:
    """Largest over second-largest absolute loading."""
    top = np.sort(np.abs(loading))[::-1]
    return float(top[0] / max(top[1], 1e-12)) if len(top) > 1 else float("inf")


def pca_test(
    concepts, store, result, count: int = 8, min_images: int = 5, rotation_seed: int = 0
) -> Table:
    """Per concept (the `count` pixel-level ones with most images, at least `min_images`): the top
    loading's unit, |loading| largest and second, alignment ratio, explained fraction, whether that
    unit is NetDissect's best unit for the concept, and the same ratio in a rotated basis."""
    pooled = store.pooled()
    rotated = pooled @ random_rotation(store.num_filters, rotation_seed).T
    presence = np.asarray(concepts.presence)
    images = presence.sum(0)
    eligible = np.flatnonzero(np.asarray(concepts.pixel_level, bool) & (images >= min_images))
    chosen = eligible[np.argsort(-images[eligible], kind="stable")][:count]
    rows = []
    for c in chosen:
        loading, explained = concept_loadings(concepts, pooled, c)
        rotated_loading, _ = concept_loadings(concepts, rotated, c)
        shift = concept_shift(concepts, pooled, c)
        order = np.argsort(-np.abs(loading))
        best_unit = int(np.argmax(result.iou[:, c]))
        rows.append(
            [
                str(concepts.names[c]),
                str(concepts.categories[c]),
                int(images[c]),
                int(order[0]),
                float(abs(loading[order[0]])),
                float(abs(loading[order[1]])),
                alignment_ratio(loading),
                explained,
                best_unit,
                float(result.iou[best_unit, c]),
                int(order[0]) == best_unit,
                alignment_ratio(rotated_loading),
                int(np.argmax(np.abs(shift))),
                alignment_ratio(shift),
            ]
        )
    return Table(
        [
            "concept",
            "category",
            "images",
            "top_unit",
            "loading_1",
            "loading_2",
            "alignment_ratio",
            "explained",
            "netdissect_unit",
            "netdissect_iou",
            "same_unit",
            "rotated_alignment_ratio",
            "shift_unit",
            "shift_alignment_ratio",
        ],
        rows,
    )


def plot_alignment(rotations: Table, pca: Table, concepts, store, path) -> None:
    """Left: unique detectors per category, original vs rotations (mean ± std).
    Right: sorted |top loading| of the PCA concepts."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    skip = {"basis", "seed", "unique", "detectors", "mean_top_iou", "all_filter_iou"}
    cats = [h for h in rotations.columns if h not in skip]
    values = np.array(
        [[row[rotations.columns.index(c)] for c in cats] for row in rotations.rows], float
    )
    x = np.arange(len(cats))
    left.bar(x - 0.2, values[0], 0.4, label="original basis")
    if len(values) > 1:
        left.bar(
            x + 0.2,
            values[1:].mean(0),
            0.4,
            yerr=values[1:].std(0),
            capsize=3,
            label=f"random rotations (n={len(values) - 1})",
        )
    left.set_xticks(x, cats, rotation=30)
    left.set_ylabel("unique detectors")
    left.set_title("Axis alignment: rotation of the filter space")
    left.legend()
    pooled = store.pooled()
    names = list(np.asarray(concepts.names).astype(str))
    for name in pca["concept"]:
        loading, _ = concept_loadings(concepts, pooled, names.index(name))
        right.plot(np.sort(np.abs(loading))[::-1][:20], marker=".", label=name)
    right.set_xlabel("rank of unit")
    right.set_ylabel("|top loading|")
    right.set_title("PCA of standardised pooled activations")
    right.legend(fontsize=7)
    save_figure(fig, path)


def run_alignment(ctx, concepts, store, out_dir, params) -> dict:
    """The rotation and PCA tests into `out_dir` (CSV + PNG); returns the summary numbers."""
    kw = ctx.dissect
    rotations = rotation_test(
        ctx,
        concepts,
        store,
        list(params.get("seeds", [0, 1, 2])),
        probe=bool(params.get("probe", True)),
        **kw,
    )
    summary = summarise_rotations(rotations)
    result = dissect(concepts, at_quantile(store, ctx.quantile), **kw)
    pca = pca_test(
        concepts,
        store,
        result,
        int(params.get("pca_concepts", 8)),
        int(params.get("min_images", 5)),
    )
    rotations.to_csv(out_dir / "alignment_rotation.csv")
    summary.to_csv(out_dir / "alignment_rotation_summary.csv")
    pca.to_csv(out_dir / "alignment_pca.csv")
    plot_alignment(rotations, pca, concepts, store, out_dir / "alignment.png")
    return {
        row[0]: {"original": row[1], "rotated_mean": row[2], "rotated_std": row[3]}
        for row in summary.rows
    }
