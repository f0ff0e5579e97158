"""The :class:`Table` value every table builder returns and every renderer reads.

A table is a pandas frame plus the presentation facts the renderers need to agree on: which
leading columns are labels, how each value column is formatted, in which columns the best value
is highlighted (and whether higher is better there), and footnotes (citations, caveats). All
output formats are rendered from the same :class:`Table`, so Markdown, LaTeX, CSV, XLSX and HTML
cannot disagree about a number (all formats from one frame).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

#: Text shown for a missing value in text formats (an en dash; CSV leaves the cell empty).
MISSING = "–"

#: Value formats (Python format specs) used by the builders.
FORMAT_SCORE = "{:.1f}"
FORMAT_DELTA = "{:+.1f}"
FORMAT_RATE = "{:.1f}"
FORMAT_COUNT = "{:d}"


def is_missing(value: object) -> bool:
    """Whether a cell is missing: ``None``, NaN or ``pd.NA``."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


@dataclass(frozen=True)
class Table:
    """A rendered-format-independent table.

    Attributes:
        name: Slug used for file and sheet names (``main_vlmevalkit``).
        title: Human title (Markdown heading, LaTeX caption, sheet title, HTML heading).
        frame: The data; label columns first, then value columns (numbers, NaN = missing, or
            text for flag columns).
        label_columns: Number of leading label columns.
        formats: Column -> format spec for numeric value columns (default :data:`FORMAT_SCORE`).
        best: Column -> ``True`` (higher is better) / ``False`` (lower is better) for columns
            whose best value is highlighted; absent columns are not highlighted.
        notes: Footnotes printed under the table (citations, caveats).
    """

    name: str
    title: str
    frame: pd.DataFrame
    label_columns: int
    formats: Mapping[str, str] = field(default_factory=dict)
    best: Mapping[str, bool] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def value_columns(self) -> list[str]:
        """Columns after the label columns."""
        return list(self.frame.columns[self.label_columns:])

    def format_cell(self, column: str, value: object) -> str:
        """Text of one cell: formatted number, :data:`MISSING` for NaN/None, ``str`` otherwise."""
        if is_missing(value):
            return MISSING
        if isinstance(value, (int, float)) and not isinstance(value, bool) and column in self.value_columns:
            spec = self.formats.get(column, FORMAT_SCORE)
            return spec.format(int(value)) if spec == FORMAT_COUNT else spec.format(float(value))
        return str(value)

    def best_rows(self, column: str) -> set[int]:
        """Row positions holding the best value of ``column`` (ties all count; none if no numbers)."""
        if column not in self.best:
            return set()
        values = pd.to_numeric(self.frame[column], errors="coerce")
        if values.notna().sum() < 2:
            return set()
        target = values.max() if self.best[column] else values.min()
        return {i for i, v in enumerate(values) if not math.isnan(v) and v == target}

    def empty(self) -> bool:
        """Whether the table has no rows."""
        return self.frame.empty
