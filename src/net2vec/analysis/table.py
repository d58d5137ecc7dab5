"""A minimal column table (pandas is not a dependency): rows of plain values, CSV and HTML out."""

from __future__ import annotations

import csv
import html
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def plain(value):
    """A CSV/HTML-friendly Python scalar from a NumPy or Python value."""
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value)
    if isinstance(value, bytes):
        return value.decode()
    return value


SHOWN_ROWS = 15  # longer tables are collapsed behind a summary line in HTML
HTML_ROWS = 200  # rows an HTML table shows at most (the CSV holds every row)


def _cell(value) -> str:
    """CSV text: floats at full precision (shortest round-trip form, "3" for 3.0)."""
    value = plain(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    return "" if value is None else str(value)


NUMBER = re.compile(r"^-?\d+(\.\d*)?([eE][-+]?\d+)?$")


def shown(value) -> str:
    """HTML text: floats to 3 significant digits (no exponent from 1e-3 to 1e6)."""
    value = plain(value)
    if isinstance(value, str):  # tables read back from CSV hold strings
        if not NUMBER.match(value):
            return value
        value = int(value) if value.lstrip("-").isdigit() else float(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if math.isfinite(value) and 1e3 <= abs(value) < 1e6:
            return f"{value:.0f}"
        return f"{value:.3g}"
    return "" if value is None else str(value)


@dataclass
class Table:
    """Named columns over rows; ``table["col"]`` gives a column, ``records()`` a list of dicts."""

    columns: list[str]
    rows: list[list] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rows = [[plain(v) for v in row] for row in self.rows]
        for i, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(f"row {i} has {len(row)} values for {len(self.columns)} columns")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, name: str) -> list:
        j = self.columns.index(name)
        return [row[j] for row in self.rows]

    def records(self) -> list[dict]:
        return [dict(zip(self.columns, row)) for row in self.rows]

    def where(self, **equal) -> Table:
        """Rows whose columns equal the given values."""
        index = {name: self.columns.index(name) for name in equal}
        keep = [row for row in self.rows if all(row[index[k]] == v for k, v in equal.items())]
        return Table(list(self.columns), keep)

    @classmethod
    def from_csv(cls, path: str | Path) -> Table:
        """A table read back from a CSV file (values stay strings)."""
        with open(path, newline="") as handle:
            header, *rows = list(csv.reader(handle))
        return cls(header, rows)

    def to_csv(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(self.columns)
            writer.writerows([[_cell(v) for v in row] for row in self.rows])
        return path

    def to_html(self, max_rows: int = HTML_ROWS, csv_name: str = "") -> str:
        """The table (numbers to 3 significant digits) in a box that scrolls sideways when wide;
        longer than SHOWN_ROWS rows: collapsed behind a summary line linking ``csv_name``."""
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(shown(v))}</td>" for v in row) + "</tr>"
            for row in self.rows[:max_rows]
        )
        table = f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
        if len(self.rows) > max_rows:
            table += f"<p>… {len(self.rows) - max_rows} more rows in the CSV</p>"
        if len(self.rows) <= SHOWN_ROWS:
            return table
        link = f"; every row: <a href='{html.escape(csv_name)}'>{html.escape(csv_name)}</a>"
        return (
            f"<details><summary>{len(self.rows)} rows × {len(self.columns)} columns (click to "
            f"show){link if csv_name else ''}</summary>{table}</details>"
        )

    def _repr_html_(self) -> str:  # notebooks
        return self.to_html()


def mean_se(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard error (sample std / sqrt(n)) of the finite values; se = 0 for n = 1."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    se = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
    return float(values.mean()), se
