"""index.html's reading aids: 3 significant digits in HTML with full precision in CSV, collapsed
long tables, sections without content left out of the page and its contents, the summary's
headline numbers (FDR counts when results.csv has q-values, else the uncorrected count)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from net2vec.analysis.report import Report
from net2vec.analysis.runs import Run
from net2vec.analysis.summary import headline, headline_lines
from net2vec.analysis.table import SHOWN_ROWS, Table, shown

FDR_Q = 0.05  # stats.fdr: the runs below have no summary of their own, so the default


def test_html_shows_3_significant_digits_and_csv_keeps_every_digit(tmp_path):
    values = [0.0684752123456, 1234.5678, 3.0, 2.5e-7, float("nan")]
    assert [shown(v) for v in values] == ["0.0685", "1235", "3", "2.5e-07", ""]
    assert shown("0.0684752123456") == "0.0685" and shown("sky-s") == "sky-s"
    path = Table(["x"], [[v] for v in values]).to_csv(tmp_path / "t.csv")
    back = Table.from_csv(path)["x"]
    assert [float(v) for v in back[:4]] == values[:4] and back[4] == ""


def test_long_tables_are_collapsed_and_wide_ones_scroll():
    short = Table(["a"], [[i] for i in range(SHOWN_ROWS)]).to_html(csv_name="s.csv")
    long = Table(["a"], [[i] for i in range(SHOWN_ROWS + 1)]).to_html(csv_name="l.csv")
    assert "<details>" not in short and short.startswith("<div class='scroll'>")
    assert long.startswith("<details><summary>16 rows") and "href='l.csv'" in long
    assert long.count("<tr>") == SHOWN_ROWS + 2  # every row (up to HTML_ROWS) and the header


def test_empty_sections_are_left_out_of_the_page_and_its_contents(tmp_path):
    report = Report(tmp_path)
    report.section("Full", anchor="full")
    report.table("t", Table(["a"], [[1]]))
    report.section("Empty", "nothing follows", anchor="empty")
    report.section("Noted", anchor="noted")
    report.note("no run has this")
    page = report.write_html(runs=["r: /x"]).read_text()
    assert re.findall(r"<a href='#(\w+)'>", page) == ["summary", "full", "noted", "runs"]
    assert "id='empty'" not in page and "id='full'" in page and "nothing follows" not in page


def probe_run(task: str, single, all_, **columns) -> Run:
    n = len(single)
    results = {
        "concept": np.array([f"c{i}" for i in range(n)]),
        "category": np.array(["object", "part"] * (n // 2)),
        f"single_{'iou' if task == 'seg' else 'acc'}_val": np.asarray(single, float),
        f"{'iou' if task == 'seg' else 'acc'}_val": np.asarray(all_, float),
        **{k: np.asarray(v, float) for k, v in columns.items()},
    }
    summary = {
        "statistics": {
            "level": 0.95,
            "percent_all_ge_single_lo": 55.0,
            "percent_all_ge_single_hi": 90.0,
        }
    }
    return Run(Path("r"), "net", "conv5", task, results, summary=summary)


def test_headline_counts_what_the_statistics_call_significant():
    """all > single needs q ≤ fdr and the all − single interval above 0; the nulls q ≤ fdr."""
    rng = np.random.default_rng(0)
    single, all_ = rng.random(40), rng.random(40)
    q, q_null, q_single = rng.random(40) * 0.2, rng.random(40) * 0.2, rng.random(40) * 0.2
    diff_lo = rng.normal(size=40)
    line = headline(
        probe_run(
            "seg",
            single,
            all_,
            q_all_gt_single=q,
            q_single_gt_all=np.ones(40),
            diff_val_lo=diff_lo,
            diff_val_hi=diff_lo + 1,
            q_null=q_null,
            single_q_null=q_single,
        )
    )
    assert line.corrected and line.significant == {
        "all > single": int(sum((v <= FDR_Q) and (lo > 0) for v, lo in zip(q, diff_lo))),
        "all > null": int(sum(v <= FDR_Q for v in q_null)),
        "single > null": int(sum(v <= FDR_Q for v in q_single)),
    }
    assert line.percent == 100 * np.mean(all_ >= single) and line.holds
    single_object = single[::2].mean()
    assert line.by_category["object"] == (single_object, all_[::2].mean())
    older = headline(probe_run("cls", single, all_, p_all_gt_single=rng.random(40)))
    assert not older.corrected and older.significant == {}
    lines = headline_lines([probe_run("seg", single, all_)], [])
    assert "no FDR-controlled statistics" in lines[0] and "holds in 1 of 1 runs" in lines[-1]
