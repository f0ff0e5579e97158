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
#: Marker after a delta whose paired test gives p < 0.05 (see :mod:`.statistics`).
SIGNIFICANT_MARK = "*"


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
        intervals: ``(row position, column) -> (ci_low, ci_high, significant)`` of delta cells with
            paired statistics: text formats show ``+1.8 [+0.4, +3.1]`` (``*`` when significant);
            CSV and XLSX keep the number and put the statistics in :attr:`stats`.
        stats: Long-format statistics of the table's comparisons (one row per compared pair and
            benchmark; ``csv/<name>_stats.csv`` and an XLSX sheet), ``None`` for tables without
            comparisons.
    """

    name: str
    title: str
    frame: pd.DataFrame
    label_columns: int
    formats: Mapping[str, str] = field(default_factory=dict)
    best: Mapping[str, bool] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    intervals: Mapping[tuple[int, str], tuple[float, float, bool]] = field(default_factory=dict)
    stats: pd.DataFrame | None = None

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

    def cell_text(self, row: int, column: str, value: object) -> str:
        """:meth:`format_cell`, followed by the cell's interval and significance marker if any."""
        text = self.format_cell(column, value)
        interval = self.intervals.get((row, column))
        if interval is None or is_missing(value):
            return text
        low, high, significant = interval
        spec = self.formats.get(column, FORMAT_DELTA)
        return f"{text} [{spec.format(low)}, {spec.format(high)}]{SIGNIFICANT_MARK if significant else ''}"

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
