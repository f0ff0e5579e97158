"""Write a leaderboard: records (+ samples) -> tables -> files in every requested format.

``build_leaderboard`` is the one place that turns tables into files (the CLI calls it):

=========  ===============================================================================
format     files under the output folder
=========  ===============================================================================
``md``     ``leaderboard.md`` — every table, headings and notes
``tex``    ``leaderboard.tex`` — one booktabs ``table`` float per table
``csv``    ``csv/<table name>.csv`` — raw numbers, one file per table; beside each table with
           comparisons, ``csv/<table name>_stats.csv`` — its paired statistics, long format
``xlsx``   ``leaderboard.xlsx`` — one sheet per table (see :mod:`.render_xlsx`)
``html``   ``leaderboard.html`` — self-contained page (see :mod:`.render_html`)
``png``    ``charts/<table name>.png`` — delta charts (also embedded in the HTML)
=========  ===============================================================================

Empty tables are still written (with "No data.") so that a missing section is visible rather
than absent. Every file is written atomically (a temporary sibling, then ``os.replace``), so an
interrupted run never leaves half a file behind.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from tg_llava_eval.atomic_io import write_text_atomic
from tg_llava_eval.leaderboards.charts import delta_chart_png, write_png
from tg_llava_eval.leaderboards.render_html import page_html
from tg_llava_eval.leaderboards.render_text import stats_to_csv, table_to_csv, tables_to_latex, tables_to_markdown
from tg_llava_eval.leaderboards.render_xlsx import write_xlsx
from tg_llava_eval.leaderboards.table import Table
from tg_llava_eval.leaderboards.tables import all_tables
from tg_llava_eval.results.benchmarks import BenchmarkRegistry
from tg_llava_eval.results.records import SAMPLE_COLUMNS

logger = logging.getLogger(__name__)

#: Every output format, in the order they are written.
FORMATS = ("md", "tex", "csv", "xlsx", "html", "png")
#: Default page/document title.
DEFAULT_TITLE = "TG-LLaVA leaderboard"


@dataclass
class LeaderboardOutput:
    """What :func:`build_leaderboard` produced.

    Attributes:
        tables: The tables, in page order.
        files: Written files, by format (``csv``/``png`` have several).
    """

    tables: list[Table]
    files: dict[str, list[Path]] = field(default_factory=dict)


def chart_tables(tables: Sequence[Table]) -> dict[str, bytes]:
    """PNG per delta-like table (deltas, ablations, reported vs reproduced), by table name."""
    charts: dict[str, bytes] = {}
    for table in tables:
        if table.name.startswith("deltas_"):
            png = delta_chart_png(table, row_label_columns=1)
        elif table.name.startswith("ablation_"):
            png = delta_chart_png(table, row_label_columns=2)
        elif table.name == "reported_vs_reproduced" and not table.empty():
            pivot = table.frame.assign(Row=table.frame["Method"] + " " + table.frame["LLM"] + " / " + table.frame["Reported by"])
            wide = pivot.pivot_table(index="Row", columns="Benchmark", values="Δ", aggfunc="first", sort=False).reset_index()
            wide.columns.name = None
            chart_table = Table(name=table.name, title=f"{table.title}: Δ (reproduced − reported)", frame=wide, label_columns=1)
            png = delta_chart_png(chart_table, list(wide.columns[1:]), row_label_columns=1)
        else:
            png = None
        if png is not None:
            charts[table.name] = png
    return charts


def build_leaderboard(
    records: pd.DataFrame,
    out_dir: str | Path,
    *,
    samples: pd.DataFrame | None = None,
    registry: BenchmarkRegistry | None = None,
    formats: Sequence[str] = FORMATS,
    title: str = DEFAULT_TITLE,
) -> LeaderboardOutput:
    """Build every table and write the requested formats.

    Args:
        records: Records frame (reproduced + reported).
        out_dir: Output folder (created).
        samples: Sample-predictions frame for answer agreement (empty if ``None``).
        registry: Benchmark registry (defaults if ``None``).
        formats: Subset of :data:`FORMATS`.
        title: Document title.

    Returns:
        Tables and written files.

    Raises:
        ValueError: An unknown format name.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown leaderboard format(s) {unknown}; choose from {list(FORMATS)}")
    registry = registry or BenchmarkRegistry()
    samples = samples if samples is not None else pd.DataFrame(columns=list(SAMPLE_COLUMNS))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = all_tables(records, samples, registry)
    result = LeaderboardOutput(tables)
    charts = chart_tables(tables) if ("html" in formats or "png" in formats) else {}
    summary = (
        f"{int((records['origin'] == 'reproduced').sum())} reproduced and "
        f"{int((records['origin'] == 'reported').sum())} reported score(s); {len(samples)} sample prediction(s)."
    )
    for fmt in formats:
        files: list[Path] = []
        if fmt == "md":
            files.append(_write(out / "leaderboard.md", tables_to_markdown(tables, title)))
        elif fmt == "tex":
            files.append(_write(out / "leaderboard.tex", tables_to_latex(tables)))
        elif fmt == "csv":
            for t in tables:
                files.append(_write(out / "csv" / f"{t.name}.csv", table_to_csv(t)))
                stats = stats_to_csv(t)
                if stats is not None:
                    files.append(_write(out / "csv" / f"{t.name}_stats.csv", stats))
        elif fmt == "xlsx":
            files.append(write_xlsx(tables, out / "leaderboard.xlsx"))
        elif fmt == "html":
            files.append(_write(out / "leaderboard.html", page_html(tables, records, title, charts, summary)))
        elif fmt == "png":
            files.extend(write_png(png, out / "charts" / f"{name}.png") for name, png in charts.items())
        result.files[fmt] = files
        logger.info("wrote %s: %s", fmt, ", ".join(str(f) for f in files) or "(nothing)")
    return result


def _write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (:mod:`tg_llava_eval.atomic_io`)."""
    return write_text_atomic(path, text)
