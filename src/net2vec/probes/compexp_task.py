"""``task=compexp``: each unit's compositional explanation as a run (docs/compexp.md).

Reads the same A_k as ``task=netdissect`` (raw activations upsampled to mask size, thresholded
at T_k; every labelled image of both splits; image-level labels as whole-image masks) and writes:

- ``formulas.csv``: ``unit, formula, iou, length, score, label, label_iou, gain``, then the
  final beam's other formulas (``formula_2, iou_2, …``); ``label`` is the unit's best single
  label, ``gain`` = iou − label_iou; formulas in the grammar of ``probes.formulas``;
- ``compexp.h5``: ``label_iou`` (K, C), ``best_by_length`` (K, length), ``concepts``,
  ``thresholds``, ``top_images`` / ``top_values`` (K, k) (rows by peak activation);
- ``summary.json``: settings, mean IoU by formula length, units per best length, the share of
  units whose formula is longer than one label.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from net2vec.common.cache import atomic_path
from net2vec.probes.compexp import CompExpResult, explain_units
from net2vec.probes.dissection import TopImages, write_unit_arrays, write_unit_table
from net2vec.probes.netdissect import dissection_labels, labelled_rows
from net2vec.probes.outcome import write_task_summary


@dataclass
class CompExpOutcome:
    """The search's result with the label names, thresholds and top images."""

    result: CompExpResult
    names: np.ndarray  # (C,)
    thresholds: np.ndarray  # (K,)
    top_images: np.ndarray  # (K, k)
    top_values: np.ndarray  # (K, k)
    settings: dict
    task: str = "compexp"

    def write(self, run_dir: Path, config: dict, timings: dict, stores: dict) -> dict:
        """formulas.csv, compexp.h5 and summary.json (the task's outcome protocol)."""
        run_dir = Path(run_dir)
        write_unit_table(run_dir / "formulas.csv", *self.formula_rows())
        with atomic_path(run_dir / "compexp.h5") as tmp, h5py.File(tmp, "w") as h5:
            h5["label_iou"] = self.result.atom_iou.astype(np.float32)
            h5["best_by_length"] = self.result.best_by_length.astype(np.float32)
            h5.create_dataset(
                "concepts", data=[str(n) for n in self.names], dtype=h5py.string_dtype()
            )
            write_unit_arrays(h5, self)
        section = {**self.settings, **self.counts()}
        return write_task_summary(run_dir, config, self.task, section, timings, stores)

    def log(self, logger, summary: dict) -> None:
        """The summary's figures as metrics; formulas.csv as a table where the logger has them."""
        if logger is None:
            return
        figures = summary["compexp"]
        flat = {f"compexp/{k}": figures[k] for k in ("mean_iou", "mean_label_iou", "share_longer")}
        flat.update(
            {f"compexp/mean_iou_length_{n}": v for n, v in figures["mean_iou_by_length"].items()}
        )
        logger.log_metrics(flat)
        if hasattr(logger, "log_table"):
            header, rows = self.formula_rows()
            logger.log_table(key="formulas", columns=header, data=rows)

    def terminal(self, summary: dict) -> str:
        """What the run prints at its end."""
        ce, config = summary["compexp"], summary["config"]
        by_length = ", ".join(f"≤{n}: {v:.3f}" for n, v in ce["mean_iou_by_length"].items())
        return (
            f"compexp {config['network']} {config['layer']}: {ce['units']} units, length ≤ "
            f"{ce['length']}, beam {ce['beam']}: mean IoU {ce['mean_iou']:.3f} (single label "
            f"{ce['mean_label_iou']:.3f}; by length {by_length}); "
            f"{100 * ce['share_longer']:.0f}% of units are best explained by a longer formula"
        )

    def formula_rows(self) -> tuple[list[str], list[list]]:
        """Header and rows of formulas.csv."""
        beam = int(self.settings["beam"])
        header = ["unit", "formula", "iou", "length", "score", "label", "label_iou", "gain"]
        for r in range(2, beam + 1):
            header += [f"formula_{r}", f"iou_{r}"]
        rows = []
        for unit, entries in enumerate(self.result.beams):
            label = int(np.argmax(self.result.atom_iou[unit]))
            label_iou = float(self.result.atom_iou[unit, label])
            formula, iou, score = self.result.best(unit)
            text = formula.text(self.names) if formula else ""
            row = [unit, text, _num(iou), len(formula) if formula else 0, _num(score)]
            row += [str(self.names[label]), _num(label_iou), _num(iou - label_iou)]
            for _, other_iou, other in entries[1:]:
                row += [other.text(self.names), _num(other_iou)]
            rows.append(row + [""] * (len(header) - len(row)))
        return header, rows

    def counts(self) -> dict:
        """Mean IoU of the best formula up to each length, units per best length, the share
        of units whose formula is longer than one label."""
        best = np.maximum.accumulate(self.result.best_by_length, axis=1)
        lengths = np.array(
            [len(f) if f else 0 for f, _, _ in map(self.result.best, range(len(best)))]
        )
        ious = np.array([self.result.best(k)[1] for k in range(len(best))])
        return {
            "units": int(len(best)),
            "mean_iou": float(ious.mean()),
            "mean_label_iou": float(self.result.atom_iou.max(1).mean()),
            "mean_iou_by_length": {str(n + 1): float(v) for n, v in enumerate(best.mean(0))},
            "units_by_length": {str(n): int((lengths == n).sum()) for n in np.unique(lengths)},
            "share_longer": float((lengths > 1).mean()),
        }


def _num(value) -> str:
    return f"{float(value):.6g}"


class CompExpTask:
    """Compositional explanations of the run's layer (built from conf/task/compexp.yaml).

    ``datamodule(concepts, activations)`` is a SegmentationDataModule factory (Hydra partial);
    ``length``, ``beam``, ``complexity_penalty``, ``first_beam``: the search (probes.compexp)."""

    metric = "iou"

    def __init__(
        self,
        name: str,
        datamodule: Callable,
        length: int = 3,
        beam: int = 5,
        complexity_penalty: float | None = None,
        first_beam: int | None = None,
        align_corners: bool = False,
        top_images: int = 16,
        **settings,
    ) -> None:
        self.name, self.datamodule = str(name), datamodule
        self.length, self.beam = int(length), int(beam)
        self.complexity_penalty = None if complexity_penalty is None else float(complexity_penalty)
        self.first_beam = None if first_beam is None else int(first_beam)
        self.align_corners, self.top_images = bool(align_corners), int(top_images)
        if self.length < 1 or self.beam < 1:
            raise ValueError(f"task.length={length}, task.beam={beam}: both must be >= 1")
        if self.complexity_penalty is not None and not 0 < self.complexity_penalty <= 1:
            raise ValueError(
                f"task.complexity_penalty={complexity_penalty}: expected (0, 1] or null"
            )

    def run(self, concepts, activations, subsets, fitter, timer) -> CompExpOutcome:
        """Search every unit's formula (both splits); the probes' arguments are unused."""
        every = concepts.with_every_label()
        loader = self.datamodule(every, activations).probe_dataloader(
            raw=True, rows=labelled_rows(every)
        )
        top = TopImages(activations.num_filters, self.top_images)

        def batches(round_: int):
            passed = tqdm(
                loader, desc=f"compexp pass {round_ + 1}", total=len(loader), mininterval=1
            )
            return map(top.observe, passed) if round_ == 0 else passed

        with timer("compexp"):
            result = explain_units(
                batches, activations.thresholds, dissection_labels(every), every.mask_size,
                self.length, self.beam, self.complexity_penalty, self.first_beam, self.align_corners,
            )  # fmt: skip
        settings = {
            "length": self.length,
            "beam": self.beam,
            "complexity_penalty": self.complexity_penalty,
            "first_beam": self.first_beam or 2 * self.beam,
            "align_corners": self.align_corners,
            "labels": int(every.num_concepts),
            "images": int(len(labelled_rows(every))),
        }
        return CompExpOutcome(
            result, np.asarray(every.names), np.asarray(activations.thresholds),
            top.rows.numpy(), top.values.numpy(), settings,
        )  # fmt: skip
