"""PNG charts of per-benchmark deltas (matplotlib, Agg canvas, no display needed).

One figure per delta-like table: small multiples, one panel per benchmark column, one bar per row
(e.g. per LLM). Panels keep their own y-axis, so a summed MME delta does not flatten the
percentage deltas of the other benchmarks. Bars are green when the change is an improvement and
red otherwise; a missing delta leaves no bar and the panel says "n/a" for it. Rows without any
delta (the reference row of an ablation) are not drawn. A delta with paired statistics
(``Table.intervals``) draws its 95 % interval as a whisker, and a significant one (p < 0.05) gets
a ``*`` above its bar.

Figures are built with matplotlib's object API (``Figure`` + ``FigureCanvasAgg``), never pyplot:
no global backend switch and no figure registry in the host process.
Images are written with fixed metadata (no software/date stamp) so repeated runs give identical
bytes for the same matplotlib version.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tg_llava_eval.atomic_io import atomic_file
from tg_llava_eval.leaderboards.table import SIGNIFICANT_MARK, Table, is_missing

#: Figure geometry (inches) and layout.
PANEL_WIDTH, PANEL_HEIGHT = 2.6, 2.2
MAX_COLUMNS = 4
DPI = 100
#: Bar colours for improvements / regressions (colour-blind-safe pair).
GAIN_COLOUR, LOSS_COLOUR = "#1b9e77", "#d95f02"
#: PNG metadata that would otherwise embed the matplotlib version/date.
PNG_METADATA = {"Software": None}


def delta_chart_png(table: Table, value_columns: list[str] | None = None, row_label_columns: int = 1) -> bytes | None:
    """Render the delta columns of ``table`` as a PNG.

    Args:
        table: A table whose value columns are deltas (``delta_table``) or that has ``<x> Δ``
            columns (``ablation_table``).
        value_columns: The columns to draw (default: the ``… Δ`` columns if any, else all value
            columns).
        row_label_columns: How many leading columns name a bar (joined with " / ").

    Returns:
        PNG bytes, or ``None`` when the table has no rows or no delta values at all.
    """
    if table.empty():
        return None
    columns = value_columns or [c for c in table.value_columns if c.endswith(" Δ")] or table.value_columns
    frame = table.frame
    # Rows without any delta (e.g. the full model of an ablation: the reference) get no bars.
    drawn = [i for i in range(len(frame)) if not all(is_missing(frame[c].iloc[i]) for c in columns)]
    if not drawn:
        return None
    frame = frame.iloc[drawn]
    intervals = {(k, column): table.intervals[(i, column)] for k, i in enumerate(drawn) for column in columns
                 if (i, column) in table.intervals}
    bar_labels = [" / ".join(str(v) for v in row[:row_label_columns]) for row in frame.itertuples(index=False)]
    n_panels = len(columns)
    n_cols = min(MAX_COLUMNS, n_panels)
    n_rows = math.ceil(n_panels / n_cols)
    figure = Figure(figsize=(PANEL_WIDTH * n_cols, PANEL_HEIGHT * n_rows))
    FigureCanvasAgg(figure)
    axes = figure.subplots(n_rows, n_cols, squeeze=False)
    for k, column in enumerate(columns):
        axis = axes[k // n_cols][k % n_cols]
        values = [math.nan if is_missing(v) else float(v) for v in frame[column]]
        higher = table.best.get(column.removesuffix(" Δ"), table.best.get(column, True))
        colours = [GAIN_COLOUR if (v >= 0) == higher else LOSS_COLOUR for v in values]
        positions = range(len(values))
        heights = [0.0 if math.isnan(v) else v for v in values]
        axis.bar(positions, heights, color=colours)
        for x, v in zip(positions, values):
            if (x, column) not in intervals or math.isnan(v):
                continue
            low, high, significant = intervals[(x, column)]
            # Whisker = the bootstrap interval around the bar's delta (errorbar takes distances).
            axis.errorbar([x], [v], yerr=[[max(v - low, 0.0)], [max(high - v, 0.0)]], fmt="none", ecolor="black",
                          elinewidth=0.8, capsize=3)
            if significant:
                axis.annotate(SIGNIFICANT_MARK, (x, max(high, v) if v >= 0 else min(low, v)), ha="center",
                              va="bottom" if v >= 0 else "top", fontsize=9)
        for x, v in zip(positions, values):
            if math.isnan(v):
                axis.text(x, 0.5, "n/a", ha="center", va="center", fontsize=7, transform=axis.get_xaxis_transform())
        axis.axhline(0, color="black", linewidth=0.8)
        axis.set_title(column.removesuffix(" Δ"), fontsize=9)
        axis.set_xticks(list(positions))
        axis.set_xticklabels(bar_labels, rotation=30, ha="right", fontsize=7)
        axis.tick_params(axis="y", labelsize=7)
    for k in range(n_panels, n_rows * n_cols):
        axes[k // n_cols][k % n_cols].axis("off")
    figure.suptitle(table.title, fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata=PNG_METADATA)
    return buffer.getvalue()


def write_png(data: bytes, path: str | Path) -> Path:
    """Write PNG bytes to ``path`` atomically; returns it."""
    with atomic_file(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)
