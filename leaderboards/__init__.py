"""``tg_llava_eval.leaderboards`` (repository folder ``leaderboards/``): score records -> tables ->
Markdown, LaTeX, CSV, XLSX, HTML and PNG (no torch).

* :mod:`.table` — the :class:`Table` value shared by builders and renderers;
* :mod:`.tables` — pure builders (main table, deltas, concurrent methods, reported vs
  reproduced, ablations, toolkit agreement);
* :mod:`.render_text`, :mod:`.render_xlsx`, :mod:`.render_html`, :mod:`.charts` — renderers;
* :mod:`.build` — writes every requested format (what ``tg-llava-eval leaderboard`` calls).

See ``docs/results.md``.
"""

from tg_llava_eval.leaderboards.build import FORMATS, LeaderboardOutput, build_leaderboard, chart_tables
from tg_llava_eval.leaderboards.table import Table
from tg_llava_eval.leaderboards.tables import (
    ablation_table,
    agreement_table,
    all_tables,
    concurrent_table,
    delta_table,
    main_table,
    reported_vs_reproduced,
)

__all__ = [
    "FORMATS", "LeaderboardOutput", "Table", "ablation_table", "agreement_table", "all_tables", "build_leaderboard",
    "chart_tables", "concurrent_table", "delta_table", "main_table", "reported_vs_reproduced",
]
