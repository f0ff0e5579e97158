"""XLSX renderer (openpyxl): one sheet per table, styled header, number formats, best highlighted.

Layout of a sheet: the title in A1 (bold, larger), the header row in row 3 (bold white text on a
dark fill, thin border, frozen below), data from row 4, then the notes in column A after one
empty row. Value cells hold numbers (not text) with an Excel number format derived from the
table's Python format spec (``{:.1f}`` -> ``0.0``, ``{:+.1f}`` -> ``+0.0;-0.0;0.0``); missing
values are empty cells. The best value of a highlighted column gets a green fill and bold font.
Column widths follow the longest rendered text. Workbook metadata (creation time) is fixed so the
file is reproducible byte for byte apart from zip timestamps.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter

from tg_llava_eval.atomic_io import atomic_file
from tg_llava_eval.leaderboards.table import Table, is_missing

#: Styles (colours as ARGB hex).
HEADER_FONT = Font(bold=True, color="FFFFFFFF")
HEADER_FILL = PatternFill(fill_type="solid", start_color="FF1F3B57", end_color="FF1F3B57")
BEST_FONT = Font(bold=True)
BEST_FILL = PatternFill(fill_type="solid", start_color="FFC6EFCE", end_color="FFC6EFCE")
TITLE_FONT = Font(bold=True, size=13)
NOTE_FONT = Font(italic=True, size=9)
THIN = Side(style="thin", color="FF8C8C8C")
HEADER_BORDER = Border(bottom=THIN, top=THIN)
#: Row of the header (title in row 1, a blank row between).
HEADER_ROW = 3
#: Sheet names are at most 31 characters and may not contain these.
_SHEET_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")
_SHEET_NAME_LIMIT = 31
#: Fixed workbook creation time (reproducible output).
FIXED_TIME = dt.datetime(2024, 1, 1)
#: Column width bounds (characters).
MIN_WIDTH, MAX_WIDTH = 6, 60
#: Number formats of the statistics sheets' numeric columns.
STATS_FORMATS = {"delta": "{:+.2f}", "ci_low": "{:+.2f}", "ci_high": "{:+.2f}", "p_value": "{:.4f}", "mde": "{:.2f}",
                 "n_pairs": "{:d}"}


def excel_number_format(spec: str) -> str:
    """Excel number format for a Python format spec such as ``{:.1f}``, ``{:+.2f}``, ``{:d}``.

    Raises:
        ValueError: A spec this function does not translate.
    """
    match = re.fullmatch(r"\{:(\+?)\.(\d+)f\}", spec)
    if match:
        decimals = int(match.group(2))
        body = "0" + ("." + "0" * decimals if decimals else "")
        return f"+{body};-{body};{body}" if match.group(1) else body
    if spec == "{:d}":
        return "0"
    raise ValueError(f"no Excel number format for the format spec {spec!r}")


def sheet_name(name: str, used: set[str]) -> str:
    """A valid, unique sheet name for ``name`` (forbidden characters replaced, ≤ 31 chars)."""
    base = _SHEET_FORBIDDEN.sub("_", name)[:_SHEET_NAME_LIMIT] or "sheet"
    candidate, counter = base, 2
    while candidate in used:
        suffix = f"_{counter}"
        candidate = base[: _SHEET_NAME_LIMIT - len(suffix)] + suffix
        counter += 1
    used.add(candidate)
    return candidate


def tables_to_workbook(tables: Iterable[Table]) -> Workbook:
    """Build the workbook (see the module docstring for the layout).

    Args:
        tables: Tables in sheet order; sheet names come from ``Table.name`` (made valid/unique).

    Returns:
        An openpyxl workbook with one sheet per table (a single ``empty`` sheet if none: Excel
        refuses workbooks without sheets).
    """
    workbook = Workbook()
    workbook.remove(workbook.active)
    workbook.properties.created = FIXED_TIME
    workbook.properties.modified = FIXED_TIME
    workbook.properties.creator = "tg-llava-eval"
    used: set[str] = set()
    for table in tables:
        sheet = workbook.create_sheet(sheet_name(table.name, used))
        _fill_sheet(sheet, table)
        if table.stats is not None:
            # The long-format statistics (the fields of csv/<table>_stats.csv) on their own sheet.
            stats = Table(name=f"{table.name}_stats", title=f"{table.title}: paired statistics", frame=table.stats,
                          label_columns=list(table.stats.columns).index("delta"), formats=STATS_FORMATS)
            _fill_sheet(workbook.create_sheet(sheet_name(stats.name, used)), stats)
    if not workbook.sheetnames:
        workbook.create_sheet("empty")
    return workbook


def _fill_sheet(sheet, table: Table) -> None:
    """Write one table into ``sheet``: title, styled header, typed cells, highlights, notes."""
    columns = list(table.frame.columns)
    value_columns = set(table.value_columns)
    sheet["A1"] = table.title
    sheet["A1"].font = TITLE_FONT
    widths = [len(str(c)) for c in columns]
    for j, column in enumerate(columns, start=1):
        cell = sheet.cell(row=HEADER_ROW, column=j, value=str(column))
        cell.font, cell.fill, cell.border = HEADER_FONT, HEADER_FILL, HEADER_BORDER
    best = {c: table.best_rows(c) for c in columns}
    for i, row in enumerate(table.frame.itertuples(index=False)):
        for j, (column, value) in enumerate(zip(columns, row), start=1):
            cell = sheet.cell(row=HEADER_ROW + 1 + i, column=j)
            # Numbers stay numbers (sortable/filterable in Excel) with a display format; label
            # and flag cells are text; missing values are empty cells, not "–".
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            if is_missing(value):
                cell.value = None
            elif numeric and column in value_columns:
                cell.value = float(value) if isinstance(value, float) else int(value)
                cell.number_format = excel_number_format(table.formats.get(column, "{:.1f}"))
            else:
                cell.value = str(value)
            if i in best[column]:
                cell.font, cell.fill = BEST_FONT, BEST_FILL
            widths[j - 1] = max(widths[j - 1], len(table.format_cell(column, value)))
    note_row = HEADER_ROW + len(table.frame) + 2  # one empty row between data and notes
    for k, note in enumerate(table.notes):
        cell = sheet.cell(row=note_row + k, column=1, value=note)
        cell.font = NOTE_FONT
    for j, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(j)].width = min(MAX_WIDTH, max(MIN_WIDTH, width + 2))
    # Freeze the header row and the label columns, so both stay visible while scrolling.
    sheet.freeze_panes = sheet.cell(row=HEADER_ROW + 1, column=table.label_columns + 1 if table.label_columns else 1)


def write_xlsx(tables: Iterable[Table], path: str | Path) -> Path:
    """Write the workbook to ``path`` atomically; returns it."""
    with atomic_file(path) as temporary:
        tables_to_workbook(tables).save(temporary)
    return Path(path)
