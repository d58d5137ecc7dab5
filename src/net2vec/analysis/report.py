"""The report: every table as CSV and every figure as PNG in one directory, plus index.html.

index.html opens with a summary (``Report.summary``, HTML made by ``analysis.summary``) and a
table of contents linking every section; sections follow in the order they were opened
(``section``), each holding subsections, notes, tables and figures. Tables show numbers to 3
significant digits (the CSV files keep full precision), long tables are collapsed and wide ones
scroll in their box, so the page itself never scrolls sideways.
"""

from __future__ import annotations

import html
import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from net2vec.analysis.figures import plt
from net2vec.analysis.table import Table

log = logging.getLogger(__name__)

STYLE = (
    "body{font-family:sans-serif;max-width:1360px;margin:auto;padding:0 1em;"
    "overflow-wrap:anywhere}h1{font-size:1.4em;margin:.4em 0}h2{border-top:2px solid #ddd;"
    "padding-top:.4em}h3{font-size:1.05em}h4{font-size:.95em;margin:.8em 0 .2em}"
    "table{border-collapse:collapse;font-size:12px;margin:.3em 0}"
    "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right;white-space:nowrap}"
    "th{background:#f4f4f4}.scroll{overflow-x:auto;max-width:100%}"
    "img{max-width:100%;border:1px solid #eee}.note{color:#a50}.caption{color:#555;margin:.2em 0;font-size:13px}"
    "nav.toc{font-size:13px;line-height:1.7;margin:.3em 0}nav.toc a{margin-right:.9em}"
    "summary{cursor:pointer;font-size:13px;color:#225}.top{font-size:12px;font-weight:normal;"
    "margin-left:1em}#summary td:first-child,#summary th:first-child{text-align:left}"
    ".answer{font-size:1.05em;margin:.3em 0}.pics{display:flex;gap:10px;align-items:flex-start}"
    ".pics figure{margin:0;flex:1 1 0;min-width:0}.pics img{max-height:300px;width:auto}"
    ".pics figcaption{font-size:12px;color:#555}.fig{display:inline-block;vertical-align:top;"
    "margin:0 1.2em .8em 0;max-width:100%}"
)


def slug(text: str) -> str:
    """A file-name-safe version of a label."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "x"


@dataclass
class Report:
    """Collects sections, tables (CSV), figures (PNG) and notes in order; ``write_html`` makes
    index.html with ``summary`` (HTML) and the table of contents on top."""

    out_dir: Path
    items: list[tuple] = field(default_factory=list)
    tables: dict[str, Table] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)
    summary: str = ""
    headline: list[str] = field(default_factory=list)  # the summary as terminal lines

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def section(self, title: str, text: str = "", anchor: str = "") -> None:
        """A section of the table of contents (``anchor``: its id, default the title's slug)."""
        self.items.append(("section", title, text, anchor or slug(title).lower()))

    def text(self, text: str) -> None:
        """A paragraph of plain text."""
        self.items.append(("text", text))

    def subsection(self, title: str, text: str = "") -> None:
        self.items.append(("subsection", title, text))

    def note(self, text: str) -> None:
        log.info("%s", text)
        self.items.append(("note", text))

    def table(self, name: str, table: Table, caption: str = "") -> Path:
        path = table.to_csv(self.out_dir / f"{slug(name)}.csv")
        self.tables[name] = table
        self.items.append(("table", name, path.name, caption))
        return path

    def figure(self, name: str, fig: plt.Figure, caption: str = "") -> Path:
        path = self.out_dir / f"{slug(name)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        self.figures[name] = path
        self.items.append(("figure", name, path.name, caption))
        return path

    def picture(self, name: str, image) -> Path:
        """A PIL image saved as PNG beside the report, not placed in a section (the summary's)."""
        path = self.out_dir / f"{slug(name)}.png"
        image.save(path)
        return path

    def image(self, name: str, image, caption: str = "") -> Path:
        """A PIL image (e.g. a strip of dataset images) saved as PNG and shown like a figure."""
        path = self.picture(name, image)
        self.figures[name] = path
        self.items.append(("figure", name, path.name, caption))
        return path

    def link(self, text: str, href: str) -> None:
        """A link to another page of the report (e.g. the paged unit strips)."""
        self.items.append(("link", text, href))

    def figure_file(self, name: str, source: Path, caption: str = "") -> Path:
        """An existing PNG (e.g. written by experiments.py), copied into the report."""
        path = self.out_dir / f"{slug(name)}.png"
        shutil.copyfile(source, path)
        self.figures[name] = path
        self.items.append(("figure", name, path.name, caption))
        return path

    def sections(self) -> list[tuple[str, str, list[tuple]]]:
        """(anchor, title, items) per section that holds something; items before the first
        section go into an untitled one."""
        grouped: list[tuple[str, str, list[tuple]]] = [("", "", [])]
        for item in self.items:
            if item[0] == "section":
                grouped.append((item[3], item[1], [("text", item[2])] if item[2] else []))
            else:
                grouped[-1][2].append(item)
        return [entry for entry in grouped if any(i[0] != "text" for i in entry[2])]

    def write_html(self, title: str = "net2vec report", runs: list[str] = ()) -> Path:
        """index.html: title, table of contents, summary, then each non-empty section; ``runs``
        (one line each) are listed in a last section."""
        sections = self.sections()
        if runs:
            items = [("text", "<br>".join(html.escape(r) for r in runs), True)]
            sections.append(("runs", "Runs", items))
        toc = "".join(
            f"<a href='#{anchor}'>{html.escape(name)}</a>" for anchor, name, _ in sections if anchor
        )
        parts = [
            f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' "
            f"content='width=device-width'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1 id='top'>{html.escape(title)}</h1>",
            f"<nav class='toc' id='toc'><b>Contents:</b> <a href='#summary'>Summary</a>{toc}</nav>",
            f"<div id='summary'>{self.summary}</div>",
        ]
        for anchor, name, items in sections:
            if anchor:
                parts.append(
                    f"<h2 id='{anchor}'>{html.escape(name)}<a class='top' href='#top'>↑ top</a></h2>"
                )
            parts += [self._item_html(item) for item in items]
        parts.append("</body></html>")
        path = self.out_dir / "index.html"
        path.write_text("\n".join(parts), encoding="utf-8")
        return path

    def _item_html(self, item: tuple) -> str:
        kind = item[0]
        if kind == "text":
            return f"<p>{item[1] if len(item) > 2 else html.escape(item[1])}</p>"
        if kind == "subsection":
            text = f"<p>{html.escape(item[2])}</p>" if item[2] else ""
            return f"<h3>{html.escape(item[1])}</h3>{text}"
        if kind == "note":
            return f"<p class='note'>{html.escape(item[1])}</p>"
        if kind == "link":
            return f"<p><a href='{html.escape(item[2])}'>{html.escape(item[1])}</a></p>"
        caption = f"<p class='caption'>{html.escape(item[3])}</p>" if item[3] else ""
        if kind == "figure":  # figures flow side by side where they fit
            return (
                f"<figure class='fig'><h4>{html.escape(item[1])}</h4>{caption}<a href='{item[2]}'>"
                f"<img src='{item[2]}' alt='{html.escape(item[1])}'></a></figure>"
            )
        table = self.tables[item[1]]
        return (
            f"<h4>{html.escape(item[1])} (<a href='{item[2]}'>{item[2]}</a>, {len(table)} rows)"
            f"</h4>{caption}{table.to_html(csv_name=item[2])}"
        )
