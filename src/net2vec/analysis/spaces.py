"""Fig. 10: how alike two embedding spaces are, over the concepts they share.

For spaces i, j with unit embeddings W_i, W_j on a common concept set, d(W) = W·Wᵀ (the cosine
matrix), D_ij = ||d(W_i) − d(W_j)||² (squared Frobenius norm) and, per concept c,
D_ijc = ||d(W_i)[c] − d(W_j)[c]||² over its row, so that D_ij = Σ_c D_ijc.
"""

from __future__ import annotations

import numpy as np

from net2vec.analysis.embeddings import unit_rows
from net2vec.analysis.runs import Run
from net2vec.analysis.table import Table


def common_concepts(runs: list[Run]) -> list[str]:
    """Concepts present in every run's embeddings, in the first run's order."""
    shared = set.intersection(*(set(r.concepts.tolist()) for r in runs))
    return [c for c in runs[0].concepts.tolist() if c in shared]


def cosine_matrix(run: Run, concepts: list[str]) -> np.ndarray:
    """d(W) of a run's unit embeddings restricted to ``concepts`` (in that order)."""
    index = {n: i for i, n in enumerate(run.concepts.tolist())}
    unit = unit_rows(run.embeddings.weights[[index[c] for c in concepts]])
    return unit @ unit.T


def space_distances(runs: list[Run]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """D (S, S) and per-concept D_c (S, S, C) between the runs' spaces, and the common concepts."""
    runs = [r for r in runs if r.embeddings is not None]
    if not runs:
        return np.zeros((0, 0)), np.zeros((0, 0, 0)), []
    concepts = common_concepts(runs)
    d = [cosine_matrix(r, concepts) for r in runs]
    per_concept = np.zeros((len(runs), len(runs), len(concepts)))
    for i in range(len(runs)):
        for j in range(i + 1, len(runs)):
            per_concept[i, j] = per_concept[j, i] = ((d[i] - d[j]) ** 2).sum(axis=1)
    return per_concept.sum(axis=-1), per_concept, concepts


def distance_tables(runs: list[Run]) -> tuple[Table, Table]:
    """(D_ij as long table, mean D_ijc per concept category for each pair i, j)."""
    runs = [r for r in runs if r.embeddings is not None]
    total, per_concept, concepts = space_distances(runs)
    if len(concepts) < 2:
        return Table(["space_i", "space_j", "D", "concepts"]), Table(
            ["space_i", "space_j", "category", "n", "mean_D_c"]
        )
    labels = [r.label for r in runs]
    category_of = dict(zip(runs[0].concepts.tolist(), runs[0].categories.tolist()))
    categories = np.array([category_of[c] for c in concepts])
    pairs, by_category = [], []
    for i, a in enumerate(labels):
        for j, b in enumerate(labels):
            pairs.append([a, b, float(total[i, j]), len(concepts)])
            for category in sorted(set(categories.tolist())):
                chosen = categories == category
                by_category.append(
                    [a, b, category, int(chosen.sum()), float(per_concept[i, j, chosen].mean())]
                )
    return (
        Table(["space_i", "space_j", "D", "concepts"], pairs),
        Table(["space_i", "space_j", "category", "n", "mean_D_c"], by_category),
    )
