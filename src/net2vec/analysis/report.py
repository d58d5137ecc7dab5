"""The report: every table as CSV and every figure as PNG in one directory, plus index.html."""

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
    "body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
    "table{border-collapse:collapse;font-size:12px;margin:.5em 0}"
    "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
    "img{max-width:100%;border:1px solid #eee}.note{color:#a50}"
)


def slug(text: str) -> str:
    """A file-name-safe version of a label."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "x"


@dataclass
class Report:
    """Collects tables (CSV), figures (PNG) and notes in order; ``write_html`` makes index.html."""

    out_dir: Path
    items: list[tuple] = field(default_factory=list)
    tables: dict[str, Table] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def section(self, title: str, text: str = "") -> None:
        self.items.append(("section", title, text))

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

    def image(self, name: str, image, caption: str = "") -> Path:
        """A PIL image (e.g. a strip of dataset images) saved as PNG and shown like a figure."""
        path = self.out_dir / f"{slug(name)}.png"
        image.save(path)
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

    def write_html(self, title: str = "net2vec report", runs: list[str] = ()) -> Path:
        """index.html with each section, figure (embedded by link) and table (head + CSV link)."""
        parts = [
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        ]
        if runs:
            parts.append(
                "<p>Runs:</p><ul>" + "".join(f"<li>{html.escape(r)}</li>" for r in runs) + "</ul>"
            )
        for item in self.items:
            kind = item[0]
            if kind == "section":
                parts.append(f"<h2>{html.escape(item[1])}</h2><p>{html.escape(item[2])}</p>")
            elif kind == "note":
                parts.append(f"<p class='note'>{html.escape(item[1])}</p>")
            elif kind == "link":
                parts.append(f"<p><a href='{html.escape(item[2])}'>{html.escape(item[1])}</a></p>")
            elif kind == "figure":
                parts.append(
                    f"<h3>{html.escape(item[1])}</h3><p>{html.escape(item[3])}</p>"
                    f"<a href='{item[2]}'><img src='{item[2]}' alt='{html.escape(item[1])}'></a>"
                )
            else:
                table = self.tables[item[1]]
                parts.append(
                    f"<h3>{html.escape(item[1])} (<a href='{item[2]}'>{item[2]}</a>, {len(table)} rows)"
                    f"</h3><p>{html.escape(item[3])}</p>{table.to_html()}"
                )
        parts.append("</body></html>")
        path = self.out_dir / "index.html"
        path.write_text("\n".join(parts), encoding="utf-8")
        return path
