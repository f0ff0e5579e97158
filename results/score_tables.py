"""Strict readers for the small score tables toolkits write (CSV and JSON).

pandas is forgiving where the results layer must not be: ``read_csv`` pads a truncated last row
with NaN and accepts a quote that never closes at end of file. These readers use the standard
``csv`` module in strict mode and check every row against the header, so a truncated or corrupted
score file is an error that names the file, the line and the problem — never a silently shorter
table. Numbers are converted by :func:`number`, which names the column and row of a non-numeric
cell.

VLMEvalKit writes its ``_acc``/``_score`` tables with ``EVAL_FORMAT=csv`` (default, every field
quoted) or ``EVAL_FORMAT=json`` (a list of row objects); :func:`read_table` reads both into the same
:class:`ScoreTable`.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tg_llava_eval.results.errors import ResultFileError


@dataclass(frozen=True)
class ScoreTable:
    """A parsed score table.

    Attributes:
        path: The file.
        columns: Header names, in file order.
        rows: One dict per data row (column -> cell; cells are strings for CSV, JSON values for
            JSON).
        lines: The file line of each row (CSV) or its 1-based position (JSON), for messages.
    """

    path: Path
    columns: tuple[str, ...]
    rows: tuple[dict[str, Any], ...]
    lines: tuple[int, ...]

    def require(self, *columns: str) -> None:
        """Raise :class:`ResultFileError` naming the columns of ``columns`` that are missing."""
        missing = [c for c in columns if c not in self.columns]
        if missing:
            raise ResultFileError(self.path, f"missing column(s) {missing} (columns: {list(self.columns)})")

    def number(self, row_index: int, column: str) -> float:
        """The cell as a finite float (see :func:`number`)."""
        return number(self.rows[row_index].get(column), self.path, f"line {self.lines[row_index]}, column {column!r}")


def read_table(path: str | Path) -> ScoreTable:
    """Read a CSV or JSON (list of row objects) score table strictly.

    Args:
        path: A ``.csv`` or ``.json`` file.

    Returns:
        The table (at least one data row).

    Raises:
        ResultFileError: Unreadable or empty file, no data row, a row with a different number of
            fields than the header (truncated/corrupted CSV), an unterminated quote, duplicate
            header names, or JSON that is not a list of objects with the same keys.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ResultFileError(path, f"cannot read file: {error}") from None
    if not text.strip():
        raise ResultFileError(path, "file is empty")
    if path.suffix == ".json":
        return _json_table(path, text)
    return _csv_table(path, text)


def _csv_table(path: Path, text: str) -> ScoreTable:
    reader = csv.reader(text.splitlines(keepends=True), strict=True)
    try:
        records = [(reader.line_num, row) for row in reader]
    except csv.Error as error:
        raise ResultFileError(path, f"malformed CSV near line {reader.line_num}: {error}") from None
    records = [(line, row) for line, row in records if row]  # blank lines carry no data
    if not records:
        raise ResultFileError(path, "file is empty")
    header = records[0][1]
    _check_header(path, header)
    if not text.endswith(("\n", "\r")):
        # Toolkits (pandas ``to_csv``) always end the file with a newline: without one, the write
        # was cut short and the last row may be incomplete even when its field count matches.
        raise ResultFileError(path, f"line {records[-1][0]}: file does not end with a newline (truncated?)")
    rows, lines = [], []
    for line, row in records[1:]:
        if len(row) != len(header):
            raise ResultFileError(
                path, f"line {line}: {len(row)} field(s) but the header has {len(header)} (truncated or corrupted file?)"
            )
        rows.append(dict(zip(header, row)))
        lines.append(line)
    if not rows:
        raise ResultFileError(path, "no data rows below the header")
    return ScoreTable(path, tuple(header), tuple(rows), tuple(lines))


def _json_table(path: Path, text: str) -> ScoreTable:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ResultFileError(path, f"invalid JSON (truncated?): {error}") from None
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise ResultFileError(path, "a JSON score table must be a list of row objects")
    if not data:
        raise ResultFileError(path, "no data rows (empty list)")
    header = list(data[0])
    _check_header(path, header)
    for position, row in enumerate(data, start=1):
        if list(row) != header:
            raise ResultFileError(path, f"row {position}: keys {list(row)} differ from the first row's {header}")
    return ScoreTable(path, tuple(header), tuple(data), tuple(range(1, len(data) + 1)))


def _check_header(path: Path, header: list[str]) -> None:
    if any(not str(name).strip() for name in header):
        raise ResultFileError(path, f"empty column name in header {header}")
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise ResultFileError(path, f"duplicate column(s) {duplicates} in header")


def number(value: Any, path: str | Path, where: str) -> float:
    """Convert a score cell to a finite float.

    Accepts ints, floats and numeric strings (surrounding spaces and a trailing ``%`` allowed;
    the percent sign is dropped, the number kept as written).

    Args:
        value: The cell.
        path: File for the error message.
        where: Location for the error message (``"line 3, column 'Overall'"``).

    Returns:
        The number.

    Raises:
        ResultFileError: Empty, non-numeric, boolean, NaN or infinite cell.
    """
    if isinstance(value, bool) or value is None:
        raise ResultFileError(path, f"{where}: {value!r} is not a number")
    if isinstance(value, (int, float)):
        result = float(value)
    else:
        text = str(value).strip()
        if text.endswith("%"):
            text = text[:-1].strip()
        try:
            result = float(text)
        except ValueError:
            raise ResultFileError(path, f"{where}: {value!r} is not a number") from None
    if not math.isfinite(result):
        raise ResultFileError(path, f"{where}: {value!r} is not a finite number")
    return result
