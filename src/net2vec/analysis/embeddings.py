"""Concept embeddings (§5.3): unit vectors w/||w||, nearest concepts (Table 2), vector arithmetic
(Table 3), t-SNE and k-means, and the distance between embedding spaces (Fig. 10).

Arithmetic expressions such as ``grass+blue-c-green-c`` are parsed against the concept names,
since BRODEN names themselves contain ``-`` (``blue-c``): the parse whose terms are all known
concepts wins (spaces around the operators make it unambiguous).
"""

from __future__ import annotations

import re
from functools import cache

import numpy as np

from net2vec.analysis.runs import Run
from net2vec.analysis.table import Table


class ExpressionError(ValueError):
    """An arithmetic expression that does not parse into known concepts."""


def unit_rows(weights: np.ndarray) -> np.ndarray:
    """w' = w / ||w|| per row; all-zero rows stay zero."""
    weights = np.asarray(weights, np.float64)
    norm = np.linalg.norm(weights, axis=1, keepdims=True)
    return np.divide(weights, norm, out=np.zeros_like(weights), where=norm > 0)


def nearest_concepts(
    names, weights: np.ndarray, k: int = 5, queries=None
) -> dict[str, list[tuple[str, float]]]:
    """For each query concept (default all), its k nearest other concepts by cosine, best first."""
    names = [str(n) for n in names]
    unit = unit_rows(weights)
    cosine = unit @ unit.T
    index = {n: i for i, n in enumerate(names)}
    result = {}
    for query in queries if queries is not None else names:
        row = cosine[index[query]].copy()
        row[index[query]] = -np.inf
        order = np.argsort(-row, kind="stable")[:k]
        result[query] = [(names[j], float(row[j])) for j in order]
    return result


def parse_expression(expression: str, names) -> list[tuple[int, str]]:
    """``a+b-c`` -> [(+1, 'a'), (+1, 'b'), (-1, 'c')], resolving '-' inside names by the vocabulary."""
    known = {str(n) for n in names}
    text = expression.strip()
    if re.search(r"\s[+-]\s", text):
        tokens = re.split(r"\s+([+-])\s+", text)
        signed = [(1, tokens[0].lstrip("+"))] + [
            (1 if op == "+" else -1, t) for op, t in zip(tokens[1::2], tokens[2::2])
        ]
        unknown = [t for _, t in signed if t not in known]
        if unknown:
            raise ExpressionError(f"arithmetic {expression!r}: unknown concept {unknown[0]!r}")
        return signed

    first = -1 if text.startswith("-") else 1
    text = text[1:] if text[:1] in "+-" else text

    @cache
    def parse(start: int) -> tuple[str, ...] | None:
        """Fewest-term parse of text[start:] as term (op term)*, or None."""
        best = None
        for end in range(start + 1, len(text) + 1):
            term = text[start:end]
            if term not in known:
                continue
            if end == len(text):
                candidate = (term,)
            elif text[end] in "+-" and (rest := parse(end + 1)) is not None:
                candidate = (term, text[end]) + rest
            else:
                continue
            if best is None or len(candidate) < len(best):
                best = candidate
        return best

    items = parse(0)
    if items is None:
        raise ExpressionError(
            f"arithmetic {expression!r}: cannot split into known concepts joined by + and -"
        )
    return [(first, items[0])] + [
        (1 if op == "+" else -1, term) for op, term in zip(items[1::2], items[2::2])
    ]


def vector_arithmetic(
    names, weights: np.ndarray, expression: str, k: int = 5
) -> list[tuple[str, float]]:
    """Table 3: concepts nearest (cosine) to Σ ± w'_term, the operands excluded, best first."""
    names = [str(n) for n in names]
    terms = parse_expression(expression, names)
    unit = unit_rows(weights)
    index = {n: i for i, n in enumerate(names)}
    target = sum(sign * unit[index[term]] for sign, term in terms)
    norm = np.linalg.norm(target)
    cosine = unit @ (target / norm if norm > 0 else target)
    for _, term in terms:
        cosine[index[term]] = -np.inf
    order = np.argsort(-cosine, kind="stable")[:k]
    return [(names[j], float(cosine[j])) for j in order]


def tsne_map(weights: np.ndarray, seed: int = 0) -> np.ndarray:
    """(C, 2) t-SNE of the unit embeddings (cosine metric), perplexity capped for small C."""
    from sklearn.manifold import TSNE

    unit = unit_rows(weights)
    if len(unit) < 4:
        return np.zeros((len(unit), 2))
    perplexity = float(min(30.0, max(2.0, (len(unit) - 1) / 3.0)))
    tsne = TSNE(
        n_components=2, perplexity=perplexity, metric="cosine", init="random", random_state=seed
    )
    return tsne.fit_transform(unit)


def kmeans_labels(weights: np.ndarray, clusters: int = 8, seed: int = 0) -> np.ndarray:
    """(C,) k-means cluster of each unit embedding (k capped at C)."""
    from sklearn.cluster import KMeans

    unit = unit_rows(weights)
    clusters = max(1, min(clusters, len(unit)))
    return KMeans(n_clusters=clusters, n_init=10, random_state=seed).fit_predict(unit)


def neighbour_table(runs: list[Run], k: int = 5) -> Table:
    """Table 2: per (network, layer) and concept, its k nearest concepts in the seg and cls spaces."""
    groups: dict[tuple[str, str], dict[str, Run]] = {}
    for run in runs:
        if run.embeddings is not None:
            groups.setdefault((run.network, run.layer), {})[run.task] = run
    rows = []
    for (network, layer), by_task in groups.items():
        tasks = [t for t in ("seg", "cls") if t in by_task] + [
            t for t in by_task if t not in ("seg", "cls")
        ]
        found = {
            t: nearest_concepts(by_task[t].concepts, by_task[t].embeddings.weights, k)
            for t in tasks
        }
        concepts = list(dict.fromkeys(c for t in tasks for c in found[t]))
        for concept in concepts:
            for rank in range(k):
                row = [network, layer, concept, rank + 1]
                for task in ("seg", "cls"):
                    pairs = found.get(task, {}).get(concept, [])
                    row += list(pairs[rank]) if rank < len(pairs) else ["", float("nan")]
                rows.append(row)
    return Table(
        [
            "network",
            "layer",
            "concept",
            "rank",
            "seg_neighbour",
            "seg_cosine",
            "cls_neighbour",
            "cls_cosine",
        ],
        rows,
    )


def arithmetic_table(runs: list[Run], expressions, k: int = 5) -> tuple[Table, list[str]]:
    """Table 3 for each run and expression; returns the table and notes on skipped pairs."""
    rows, notes = [], []
    for run in runs:
        if run.embeddings is None:
            continue
        for expression in expressions:
            try:
                found = vector_arithmetic(run.concepts, run.embeddings.weights, str(expression), k)
            except ExpressionError as err:
                notes.append(f"{run.label}: {err}")
                continue
            rows += [
                [run.network, run.layer, run.task, str(expression), rank, name, cosine]
                for rank, (name, cosine) in enumerate(found, start=1)
            ]
    return Table(
        ["network", "layer", "task", "expression", "rank", "concept", "cosine"], rows
    ), notes
