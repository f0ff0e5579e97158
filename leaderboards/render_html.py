"""Self-contained HTML page: sortable tables, delta charts, run manifests.

The page has no external resource (no CDN script, stylesheet or font): CSS and a small script are
inline and charts are PNGs embedded as ``data:`` URIs, so the single file can be mailed or
archived. Structure:

* ``<h1>`` title, a contents list;
* one ``<section id="<table name>">`` per table: ``<table class="sortable">`` whose header cells
  carry ``data-type="number"`` or ``"text"``; numeric cells carry the raw number in
  ``data-value`` (sorting never parses formatted text); the best value of a highlighted column has
  ``class="best"``; notes follow as a list; a delta chart follows delta tables;
* a "Run manifests" section listing every distinct ``tg_llava_run.json`` behind the records.

Sorting: clicking a header sorts its column ascending, clicking again descending
(``aria-sort`` on the header says which); missing values always sort last.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from tg_llava_eval.leaderboards.table import Table, is_missing

# Page style: dark header cells (white text) like the XLSX header, right-aligned tabular numbers,
# green background + bold for the best value of a column (same colour as the XLSX highlight), and
# an arrow after the header of the sorted column (driven by its ``aria-sort`` attribute).
PAGE_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem; color: #1a1a1a; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2.2rem; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.6rem 0; }
th, td { padding: 0.25rem 0.6rem; border-bottom: 1px solid #d0d0d0; }
th { background: #1f3b57; color: #ffffff; cursor: pointer; user-select: none; white-space: nowrap; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.best { background: #c6efce; font-weight: bold; }
.notes { font-size: 0.8rem; color: #555555; }
figure { margin: 0.8rem 0; } figure img { max-width: 100%; }
pre { background: #f4f4f4; padding: 0.5rem; font-size: 0.8rem; overflow-x: auto; }
"""

# Sorting script (ES5, no library). For each ``table.sortable`` header cell a click handler:
#   1. flips the direction (first click ascending, then alternating) and records it in aria-sort,
#      clearing the other headers of that table;
#   2. reads every row's key: the ``data-value`` number for data-type="number" columns (never the
#      formatted text, so "+1.5" and "1,000" cannot mis-sort), the text content otherwise;
#   3. sorts rows with missing keys last in both directions, numbers by difference, text with
#      ``localeCompare``; Array.prototype.sort is stable, so ties keep their previous order;
#   4. re-appends the rows in the new order (moving whole rows, so cells stay together).
PAGE_SCRIPT = """
(function () {
  function key(cell, numeric) {
    if (numeric) {
      var v = cell.getAttribute("data-value");
      return v === null || v === "" ? null : parseFloat(v);
    }
    return cell.textContent;
  }
  function sortTable(table, index, header) {
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(table.querySelectorAll("th"), function (other) {
      other.removeAttribute("aria-sort");
    });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var numeric = header.getAttribute("data-type") === "number";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[index], numeric), y = key(b.cells[index], numeric);
      if (x === null && y === null) { return 0; }
      if (x === null) { return 1; }
      if (y === null) { return -1; }
      var order = numeric ? x - y : x.localeCompare(y);
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.querySelectorAll("th"), function (header, index) {
      header.addEventListener("click", function () { sortTable(table, index, header); });
    });
  });
})();
"""


def _esc(text: object) -> str:
    """HTML-escape any value's text (quotes too: it is also used inside attributes)."""
    return html.escape(str(text), quote=True)


def table_to_html(table: Table) -> str:
    """One table as an HTML ``<table class="sortable">`` (with notes).

    Args:
        table: The table; numeric value columns become ``data-type="number"`` headers whose cells
            carry the raw number in ``data-value`` (empty for a missing value).

    Returns:
        The HTML fragment (``<table id="table-<name>">`` followed by a notes list, if any).
    """
    columns = list(table.frame.columns)
    value_columns = set(table.value_columns)
    numeric = {c: c in value_columns and pd.api.types.is_numeric_dtype(table.frame[c]) for c in columns}
    best = {c: table.best_rows(c) for c in columns}
    lines = [f'<table class="sortable" id="table-{_esc(table.name)}">', "<thead><tr>"]
    for column in columns:
        kind = "number" if numeric[column] else "text"
        lines.append(f'<th data-type="{kind}" scope="col">{_esc(column)}</th>')
    lines.append("</tr></thead>")
    lines.append("<tbody>")
    for i, row in enumerate(table.frame.itertuples(index=False)):
        cells = []
        for column, value in zip(columns, row):
            classes = []
            attributes = ""
            if numeric[column]:
                classes.append("num")
                attributes = f' data-value="{"" if is_missing(value) else repr(float(value))}"'
            if i in best[column]:
                classes.append("best")
            class_attribute = f' class="{" ".join(classes)}"' if classes else ""
            cells.append(f"<td{class_attribute}{attributes}>{_esc(table.cell_text(i, column, value))}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines.append("</tbody>")
    lines.append("</table>")
    if table.empty():
        lines.append("<p><em>No data.</em></p>")
    if table.notes:
        lines.append('<ul class="notes">' + "".join(f"<li>{_esc(n)}</li>" for n in table.notes) + "</ul>")
    return "\n".join(lines)


def manifests_html(records: pd.DataFrame) -> str:
    """The "Run manifests" section body: each distinct manifest with the folders it covers.

    Args:
        records: The records frame; its ``manifest`` column holds the compact JSON of the
            ``tg_llava_run.json`` behind each record (empty when there was none).

    Returns:
        One ``<details>`` block per distinct manifest (summary: variant and toolkits; body: the
        output folders and the pretty-printed JSON), or a sentence saying there is none.
    """
    if records.empty or "manifest" not in records:
        return "<p>No run manifests.</p>"
    reproduced = records[records["manifest"].astype(str) != ""]
    if reproduced.empty:
        return "<p>No run manifest (<code>tg_llava_run.json</code>) was found next to the collected outputs.</p>"
    blocks = []
    for manifest, group in reproduced.groupby("manifest", sort=True):
        data = json.loads(manifest)
        folders = sorted({str(Path(s).parent) for s in group["source"]})
        summary = f"{data.get('variant', '?')} — {', '.join(sorted(set(group['toolkit'])))}"
        blocks.append(
            "<details><summary>" + _esc(summary) + "</summary>"
            + "<p>" + "<br>".join(_esc(f) for f in folders) + "</p>"
            + "<pre>" + _esc(json.dumps(data, indent=2, sort_keys=True)) + "</pre></details>"
        )
    return "\n".join(blocks)


def page_html(
    tables: Iterable[Table],
    records: pd.DataFrame,
    title: str,
    charts: Mapping[str, bytes] | None = None,
    summary: str = "",
) -> str:
    """The whole page.

    Args:
        tables: Tables in page order.
        records: The records frame (for the run-manifest section).
        title: Page title.
        charts: Table name -> PNG bytes, embedded after that table.
        summary: One line under the title (e.g. record counts).

    Returns:
        The HTML document.
    """
    tables = list(tables)
    charts = charts or {}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title>",
        f"<style>{PAGE_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{_esc(title)}</h1>",
    ]
    if summary:
        parts.append(f"<p>{_esc(summary)}</p>")
    parts.append("<nav><ul>")
    parts.extend(f'<li><a href="#{_esc(t.name)}">{_esc(t.title)}</a></li>' for t in tables)
    parts.append('<li><a href="#run-manifests">Run manifests</a></li>')
    parts.append("</ul></nav>")
    for table in tables:
        parts.append(f'<section id="{_esc(table.name)}">')
        parts.append(f"<h2>{_esc(table.title)}</h2>")
        parts.append(table_to_html(table))
        if table.name in charts:
            encoded = base64.b64encode(charts[table.name]).decode("ascii")
            parts.append(f'<figure><img alt="{_esc(table.title)} (chart)" src="data:image/png;base64,{encoded}"></figure>')
        parts.append("</section>")
    parts.append('<section id="run-manifests">')
    parts.append("<h2>Run manifests</h2>")
    parts.append(manifests_html(records))
    parts.append("</section>")
    parts.append(f"<script>{PAGE_SCRIPT}</script>")
    parts.append("</body>")
    parts.append("</html>")
    return "\n".join(parts) + "\n"
