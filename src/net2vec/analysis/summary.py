"""The report's first screen: does the paper's claim hold here, and how strongly.

The claim (Fong & Vedaldi 2018, Table 1): a learned combination of all filters encodes a concept
at least as well as the best single filter for most concepts. Per probe run the summary shows
the share of concepts where all ≥ single with its bootstrap interval, how many concepts beat
the single filter (and their shuffled-mask null) significantly after Benjamini-Hochberg FDR
control (``q_*`` columns of results.csv, with the run's ``stats.fdr``), and the
mean score single → all per category; per NetDissect run, its detectors and unique concepts;
then three pictures (Fig. 3, a Fig. 8 strip, the best detectors' unit strips). The same
headline goes to the terminal (``headline_lines``).
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
from PIL import Image

from net2vec.analysis.dissection_report import DissectionRun, grid_of
from net2vec.analysis.report import Report, slug
from net2vec.analysis.runs import Run
from net2vec.analysis.table import shown
from net2vec.analysis.uncertainty import above_null, fdr_of, significant

MAJORITY = 50.0  # the claim holds in a run when the share's interval lies above this (%)


@dataclass
class Headline:
    """One probe run's headline numbers."""

    label: str
    concepts: int
    percent: float
    lo: float | None
    hi: float | None
    significant: dict[str, int]  # "all > single", "all > null", "single > null" -> count
    corrected: bool  # FDR-controlled counts present (runs written before q-values have none)
    by_category: dict[str, tuple[float, float]]  # category -> (single, all) mean score
    fdr: float = 0.05  # the run's stats.fdr

    @property
    def holds(self) -> bool | None:
        """Whether all ≥ single for a majority of concepts beyond the interval (None: no interval)."""
        return None if self.lo is None else self.lo > MAJORITY


def headline(run: Run) -> Headline:
    """The headline numbers of a probe run."""
    ok = np.isfinite(run.single) & np.isfinite(run.all)
    stats = run.summary.get("statistics") or {}
    counts, sig = {}, significant(run)
    if sig is not None:  # the run's own definitions (analysis.uncertainty, docs/statistics.md)
        counts["all > single"] = int(sig[0][ok].sum())
        for name, prefix in (("all > null", ""), ("single > null", "single_")):
            if (beats := above_null(run, prefix)) is not None:
                counts[name] = int(beats[ok].sum())
    corrected = sig is not None
    by_category = {}
    for category in sorted(set(run.categories[ok].tolist())):
        chosen = ok & (run.categories == category)
        by_category[category] = (float(run.single[chosen].mean()), float(run.all[chosen].mean()))
    return Headline(
        run.label,
        int(ok.sum()),
        float(100 * np.mean(run.all[ok] >= run.single[ok])) if ok.any() else float("nan"),
        stats.get("percent_all_ge_single_lo"),
        stats.get("percent_all_ge_single_hi"),
        counts,
        corrected,
        by_category,
        fdr_of(run),
    )


def _share(line: Headline) -> str:
    interval = f" [{line.lo:.0f}, {line.hi:.0f}]" if line.lo is not None else ""
    return f"{line.percent:.0f} %{interval}"


def _significance(line: Headline) -> str:
    if not line.significant:
        return "no FDR-controlled statistics (stats=null, or a run written before q-values)"
    kind = f"FDR q ≤ {line.fdr:g}"
    counts = ", ".join(f"{name} {n}" for name, n in line.significant.items())
    return f"{counts} ({kind})"


def _dissection_line(run: DissectionRun) -> str:
    counts = run.counts
    per = ", ".join(
        f"{name} {c['detectors']}/{c['unique_concepts']}"
        for name, c in counts.get("by_category", {}).items()
        if c["detectors"]
    )
    return (
        f"{run.label}: {counts.get('detectors', 0)} of {counts.get('units', 0)} units are "
        f"detectors (IoU > {counts.get('detector_iou', 0.04)}) of "
        f"{counts.get('unique_concepts', 0)} unique concepts"
        + (f" (detectors/unique per category: {per})" if per else "")
    )


def _verdict(lines: list[Headline]) -> str:
    judged = [line for line in lines if line.holds is not None]
    if not lines:
        return ""
    if not judged:
        return "No run has bootstrap intervals (stats=default), so no verdict is drawn."
    held = sum(line.holds for line in judged)
    return (
        f"The paper's claim (all filters ≥ the best single filter for most concepts) holds in "
        f"{held} of {len(judged)} runs: the 95 % interval of the share lies above {MAJORITY:.0f} %."
    )


def headline_lines(runs: list[Run], dissected: list[DissectionRun]) -> list[str]:
    """The summary as terminal lines: one per run, then the verdict."""
    lines = [headline(run) for run in runs]
    out = [
        f"{line.label}: all >= single for {_share(line)} of {line.concepts} concepts; "
        f"significant: {_significance(line)}"
        for line in lines
    ]
    out += [_dissection_line(run) for run in dissected]
    verdict = _verdict(lines)
    return out + ([verdict] if verdict else [])


def _headline_table(lines: list[Headline]) -> str:
    categories = list(dict.fromkeys(c for line in lines for c in line.by_category))
    head = ["run", "concepts", "all ≥ single [95 % CI]", "significant concepts"]
    head += [f"{c}: single → all" for c in categories]
    rows = []
    for line in lines:
        cells = [line.label, str(line.concepts), _share(line), _significance(line)]
        for category in categories:
            pair = line.by_category.get(category)
            cells.append(f"{shown(pair[0])} → {shown(pair[1])}" if pair else "")
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return (
        f"<div class='scroll'><table><thead><tr>{header}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _pictures(report: Report, dissected: list[DissectionRun]) -> list[tuple[str, str, str]]:
    """(file, caption, section anchor) of Fig. 3, one Fig. 8 strip and the best unit strips."""
    chosen = []
    if "fig3_subsets" in report.figures:
        chosen.append((report.figures["fig3_subsets"].name, "Fig. 3: score against F", "fig3"))
    fig8 = [name for name in report.figures if name.startswith("fig8_")]
    if fig8:
        chosen.append((report.figures[fig8[0]].name, f"Fig. 8: {fig8[0][5:]}", "fig8"))
    for run in dissected[:1]:
        folder = report.out_dir / f"units-{slug(run.label)}"
        strips = [folder / f"unit-{u:04d}.jpg" for u in run.best_per_label(3)]
        if strips and all(path.is_file() for path in strips):
            picture = grid_of([Image.open(path) for path in strips])
            path = report.picture(f"summary_units_{slug(run.label)}", picture)
            chosen.append((path.name, f"best detectors of {run.label}", "netdissect"))
    return chosen


def summary_html(report: Report, runs: list[Run], dissected: list[DissectionRun]) -> str:
    """The summary block of index.html (call after the sections, whose figures it shows)."""
    lines = [headline(run) for run in runs]
    parts = ["<h2 style='border:0;margin:.2em 0'>Summary</h2>"]
    verdict = _verdict(lines)
    if verdict:
        parts.append(f"<p class='answer'>{html.escape(verdict)}</p>")
    if lines:
        parts.append(_headline_table(lines))
        parts.append(
            "<p class='caption'>all ≥ single: share of concepts whose all-filter val score is at "
            "least the best single filter's, with its bootstrap interval; single → all: mean val "
            "score per category (seg: set IoU, cls: balanced accuracy); significant: concepts "
            "where all filters beat the single filter (Benjamini-Hochberg q ≤ stats.fdr and the "
            "all − single interval above 0), and concepts above their shuffled-mask null (q ≤ "
            "stats.fdr); docs/statistics.md</p>"
        )
    parts += [f"<p>{html.escape(_dissection_line(run))}</p>" for run in dissected]
    pictures = _pictures(report, dissected)
    if pictures:
        figures = "".join(
            f"<figure><a href='#{anchor}'><img src='{name}' alt='{html.escape(caption)}'></a>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            for name, caption, anchor in pictures
        )
        parts.append(f"<div class='pics'>{figures}</div>")
    return "".join(parts)
