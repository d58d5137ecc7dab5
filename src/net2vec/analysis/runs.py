"""Load run directories (results.csv, embeddings.h5, summary.json) into :class:`Run` objects.

A run is identified by (network, layer, task), read from summary.json's ``config`` first, then
from embeddings.h5's attributes, then from results.csv's columns; anything missing reads
``"?"``. Analyses take lists of runs, so a notebook can do ``runs = load_runs([...])``.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

log = logging.getLogger(__name__)

METRIC = {"seg": "iou", "cls": "acc"}
TEXT_COLUMNS = ("concept", "category")
INT_COLUMNS = ("label_number", "n_train", "n_val", "single_filter")
SUBSET_COLUMN = re.compile(r"^(iou|acc)_val_F(\d+)$")


class RunError(ValueError):
    """A run directory that cannot be read; the message names the file, row and value."""


@dataclass
class Embeddings:
    """The contents of embeddings.h5, concepts in results.csv order."""

    concepts: np.ndarray
    categories: np.ndarray
    weights: np.ndarray  # (C, K) all-filter concept vectors
    bias: np.ndarray
    subsets: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    filter_scores: dict[str, np.ndarray] = field(default_factory=dict)
    per_image: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)


@dataclass
class Run:
    """One (network, layer, task) run: its per-concept table and, when present, its embeddings."""

    path: Path
    network: str
    layer: str
    task: str
    results: dict[str, np.ndarray]
    embeddings: Embeddings | None = None
    summary: dict = field(default_factory=dict)

    @property
    def metric(self) -> str:
        return METRIC.get(self.task, "iou")

    @property
    def seed(self) -> int:
        """The run's seed (summary.json config; 0 when unknown)."""
        config = self.summary.get("config") if isinstance(self.summary.get("config"), dict) else {}
        return int(config.get("seed") or 0)

    @property
    def label(self) -> str:
        seed = f"/seed{self.seed}" if self.seed else ""
        return f"{self.network}/{self.layer}/{self.task}{seed}"

    @property
    def concepts(self) -> np.ndarray:
        return self.results["concept"]

    @property
    def categories(self) -> np.ndarray:
        return self.results["category"]

    @property
    def single(self) -> np.ndarray:
        """Validation score of the best single filter (F = 1 probe for classification)."""
        return self.results[f"single_{self.metric}_val"]

    @property
    def all(self) -> np.ndarray:
        """Validation score of the all-filter probe."""
        return self.results[f"{self.metric}_val"]

    @property
    def subset_sizes(self) -> list[int]:
        sizes = [int(m.group(2)) for m in map(SUBSET_COLUMN.match, self.results) if m]
        return sorted(sizes)

    def subset_score(self, size: int) -> np.ndarray:
        return self.results[f"{self.metric}_val_F{size}"]

    @property
    def num_filters(self) -> int | None:
        return None if self.embeddings is None else int(self.embeddings.weights.shape[1])


def natural_key(text: str) -> list:
    """Sort key that puts conv2 before conv10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(text))]


def run_sort_key(run: Run) -> tuple:
    return (natural_key(run.network), natural_key(run.layer), run.task)


def read_results(path: Path) -> dict[str, np.ndarray]:
    """results.csv as column -> array (text for concept/category, float or int otherwise)."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or "concept" not in rows[0]:
        raise RunError(f"{path}: missing header with a 'concept' column")
    header, body = rows[0], rows[1:]
    if not body:
        raise RunError(f"{path}: no concept rows, only a header (a truncated or failed run)")
    short = next((i for i, row in enumerate(body) if row and len(row) < len(header)), None)
    if short is not None:
        raise RunError(
            f"{path}: row {short + 2} has {len(body[short])} of {len(header)} cells; the file is "
            "truncated or damaged (rerun the run, or restore the file)"
        )
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(size - 1, 0))
        if size and handle.read(1) not in (b"\n", b"\r"):
            raise RunError(f"{path}: its last line is cut off; the file is truncated")
    columns: dict[str, np.ndarray] = {}
    for j, name in enumerate(header):
        cells = [row[j] if j < len(row) else "" for row in body]
        if name in TEXT_COLUMNS:
            columns[name] = np.array(cells, dtype=str)
            continue
        values = np.empty(len(cells))
        for i, cell in enumerate(cells):
            try:
                values[i] = float(cell) if cell.strip() else np.nan
            except ValueError:
                raise RunError(
                    f"{path}: row {i + 2} column {name!r}: {cell!r} is not a number"
                ) from None
        integral = name in INT_COLUMNS and np.isfinite(values).all()
        columns[name] = values.astype(np.int64) if integral else values
    if "category" not in columns:
        columns["category"] = np.array(["?"] * len(body), dtype=str)
    return columns


def _text(values) -> np.ndarray:
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=str)


def read_embeddings(path: Path, order: np.ndarray | None = None) -> Embeddings:
    """embeddings.h5, reordered to ``order`` (concept names) when given."""
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        reason = str(error).split("(")[0].strip() or type(error).__name__
        raise RunError(f"{path}: not a readable HDF5 file ({reason})") from None
    with handle as h5:
        emb = Embeddings(
            concepts=_text(h5["concepts"][()]),
            categories=_text(h5["categories"][()]),
            weights=np.asarray(h5["weights"][()], np.float64),
            bias=np.asarray(h5["bias"][()], np.float64),
            attrs={k: (v.decode() if isinstance(v, bytes) else v) for k, v in h5.attrs.items()},
        )
        for name, group in h5.get("subsets", {}).items():
            emb.subsets[int(name.lstrip("F"))] = {k: group[k][()] for k in group}
        for split, data in h5.get("filter_scores", {}).items():
            emb.filter_scores[split] = np.asarray(data[()], np.float64)
        for key, data in h5.get("per_image", {}).items():
            emb.per_image[key] = data[()]
    if order is not None and not np.array_equal(order, emb.concepts):
        position = {name: i for i, name in enumerate(emb.concepts)}
        missing = [name for name in order if name not in position]
        if missing:
            raise RunError(f"{path}: concept {missing[0]!r} of results.csv is not in embeddings.h5")
        idx = np.array([position[name] for name in order])
        emb.concepts, emb.categories = emb.concepts[idx], emb.categories[idx]
        emb.weights, emb.bias = emb.weights[idx], emb.bias[idx]
        emb.filter_scores = {k: v[idx] for k, v in emb.filter_scores.items()}
        emb.subsets = {f: {k: v[idx] for k, v in parts.items()} for f, parts in emb.subsets.items()}
    return emb


def _identity(summary: dict, attrs: dict, results: dict, path: Path) -> tuple[str, str, str]:
    config = summary.get("config") if isinstance(summary.get("config"), dict) else {}

    def pick(key: str) -> str | None:
        for source in (config, summary, attrs):
            value = source.get(key)
            if isinstance(value, dict):
                value = value.get("name")
            if value not in (None, ""):
                return str(value)
        return None

    task = pick("task") or ("cls" if "acc_val" in results else "seg")
    network = pick("network") or "?"
    if config.get("baseline"):  # baseline=random_init: its own row beside the trained network
        network = f"{network} ({str(config['baseline']).replace('_', ' ')})"
    return network, pick("layer") or path.name, task


def load_run(path: str | Path) -> Run:
    """Read one run directory; embeddings.h5 and summary.json are optional."""
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"{path}: no such run directory")
    if not (path / "results.csv").is_file():
        raise RunError(f"{path}: no results.csv (not a run directory)")
    results = read_results(path / "results.csv")
    summary: dict = {}
    if (path / "summary.json").is_file():
        try:
            summary = json.loads((path / "summary.json").read_text())
        except json.JSONDecodeError as err:
            raise RunError(
                f"{path / 'summary.json'}: not JSON ({err.msg}, line {err.lineno})"
            ) from None
    counts = summary.get("counts") if isinstance(summary.get("counts"), dict) else {}
    if counts.get("concepts") not in (None, len(results["concept"])):
        raise RunError(
            f"{path / 'results.csv'}: {len(results['concept'])} concept rows, summary.json "
            f"records {counts['concepts']}; the file is truncated or from another run"
        )
    embeddings = (
        read_embeddings(path / "embeddings.h5", results["concept"])
        if (path / "embeddings.h5").is_file()
        else None
    )
    network, layer, task = _identity(summary, embeddings.attrs if embeddings else {}, results, path)
    run = Run(path, network, layer, task, results, embeddings, summary)
    if f"{run.metric}_val" not in results or f"single_{run.metric}_val" not in results:
        raise RunError(
            f"{path / 'results.csv'}: task {task!r} needs columns "
            f"single_{run.metric}_val and {run.metric}_val"
        )
    return run


def find_run_dirs(sweep: str | Path) -> list[Path]:
    """Every directory under a multirun directory that holds a results.csv; a job folder of the
    sweep with neither results.csv nor units.csv (a failed or unfinished job) is logged."""
    sweep = Path(sweep)
    if not sweep.is_dir():
        raise RunError(f"sweep={sweep}: not a directory")
    found = sorted({p.parent for p in sweep.rglob("results.csv")})
    failed = failed_jobs(sweep)
    if failed:
        log.warning(
            "sweep %s: %d of its jobs left no results (failed or unfinished), left out: %s",
            sweep,
            len(failed),
            ", ".join(p.name for p in failed),
        )
    return found


def failed_jobs(sweep: Path) -> list[Path]:
    """Job folders of a multirun directory (its direct subfolders) holding neither a results.csv
    nor a units.csv: jobs that failed or never finished."""
    jobs = [p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")]
    outputs = ("results.csv", "units.csv")
    return sorted(job for job in jobs if not any(any(job.rglob(name)) for name in outputs))


def load_runs(paths: list[str | Path] = (), sweep: str | Path | None = None) -> list[Run]:
    """Load the given run directories and every run under ``sweep``, sorted by network, layer, task."""
    dirs = [Path(p) for p in paths] + (find_run_dirs(sweep) if sweep else [])
    unique = list(dict.fromkeys(d.resolve() for d in dirs))
    runs = [load_run(d) for d in unique]
    log.info("loaded %d runs", len(runs))
    return sorted(runs, key=run_sort_key)
