"""Text renderers of :class:`Table`: Markdown, LaTeX (booktabs) and CSV.

* Markdown: a ``##`` heading, a pipe table (numbers right-aligned), best values in ``**bold**``,
  numbered notes below. Cells are escaped (``|`` -> ``\\|``).
* LaTeX: one ``table`` float per table with ``\\toprule``/``\\midrule``/``\\bottomrule`` (the
  ``booktabs`` package), best values in ``\\textbf{}``, notes as a ``\\footnotesize`` paragraph.
  Special characters are escaped; ``Δ``, ``✓`` and ``✗`` become math/``pifont``-free text
  (``$\\Delta$``, ``yes``, ``no``) so the output compiles with a plain pdflatex preamble
  ``\\usepackage{booktabs}``.
* CSV: the frame's raw numbers (not rounded), missing values empty, no index.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

from tg_llava_eval.leaderboards.table import Table

# --- Markdown --------------------------------------------------------------------------------


def _md_escape(text: str) -> str:
    """Escape pipes (cell separators) and flatten newlines for a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def table_to_markdown(table: Table) -> str:
    """One table as Markdown (heading, pipe table, notes), ending with a newline.

    Label columns are left-aligned, value columns right-aligned; the best value of each
    highlighted column is bold; an empty table renders as "_No data._" under its heading.
    """
    columns = list(table.frame.columns)
    value_columns = set(table.value_columns)
    best = {c: table.best_rows(c) for c in columns}
    lines = [f"## {_md_escape(table.title)}", ""]
    if table.empty():
        lines += ["_No data._", ""]
    else:
        lines.append("| " + " | ".join(_md_escape(str(c)) for c in columns) + " |")
        lines.append("|" + "|".join("---:" if c in value_columns else ":---" for c in columns) + "|")
        for i, row in enumerate(table.frame.itertuples(index=False)):
            cells = []
            for column, value in zip(columns, row):
                text = _md_escape(table.cell_text(i, column, value))
                cells.append(f"**{text}**" if i in best[column] else text)
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    for note in table.notes:
        lines.append(f"- {_md_escape(note)}")
    if table.notes:
        lines.append("")
    return "\n".join(lines)


def tables_to_markdown(tables: Iterable[Table], title: str) -> str:
    """A Markdown document: ``# title`` and every table."""
    return f"# {_md_escape(title)}\n\n" + "\n".join(table_to_markdown(t) for t in tables)


# --- LaTeX -----------------------------------------------------------------------------------

_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    # Brackets are braced so that a cell or note starting with "[" after "\\" is not read as
    # the optional argument of the line break.
    "[": "{[}", "]": "{]}",
}
#: Non-ASCII characters the builders use, as plain-LaTeX equivalents.
_LATEX_SYMBOLS = {"Δ": r"$\Delta$", "✓": "yes", "✗": "no", "–": "--", "−": "$-$", "±": r"$\pm$"}


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters and replace the builders' symbols (see module docstring)."""
    out = []
    for char in str(text):
        if char in _LATEX_SPECIALS:
            out.append(_LATEX_SPECIALS[char])
        elif char in _LATEX_SYMBOLS:
            out.append(_LATEX_SYMBOLS[char])
        else:
            out.append(char)
    return "".join(out)


def table_to_latex(table: Table) -> str:
    """One table as a booktabs ``table`` float, label ``tab:<name>``.

    Columns: ``l`` for labels, ``r`` for values. Notes follow the tabular as a ``\footnotesize``
    block, one paragraph per note (never ``\\``: a note starting with ``[1]`` would be read as
    the line break's optional argument).
    """
    columns = list(table.frame.columns)
    value_columns = set(table.value_columns)
    align = "".join("r" if c in value_columns else "l" for c in columns)
    best = {c: table.best_rows(c) for c in columns}
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(table.title)}}}",
        rf"\label{{tab:{table.name}}}",
        r"\small",
        rf"\begin{{tabular}}{{{align}}}",
        r"\toprule",
        " & ".join(latex_escape(str(c)) for c in columns) + r" \\",
        r"\midrule",
    ]
    if table.empty():
        lines.append(rf"\multicolumn{{{len(columns)}}}{{c}}{{No data.}} \\")
    for i, row in enumerate(table.frame.itertuples(index=False)):
        cells = []
        for column, value in zip(columns, row):
            text = latex_escape(table.cell_text(i, column, value))
            cells.append(rf"\textbf{{{text}}}" if i in best[column] else text)
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.notes:
        lines.append(r"\par\smallskip")
        lines.append(r"{\footnotesize" + "".join(f"\n{latex_escape(n)}\\par" for n in table.notes) + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def tables_to_latex(tables: Iterable[Table]) -> str:
    """All tables as LaTeX (needs ``\\usepackage{booktabs}`` in the preamble)."""
    header = "% Generated by tg-llava-eval leaderboard. Requires \\usepackage{booktabs}.\n"
    return header + "\n".join(table_to_latex(t) for t in tables)


# --- CSV -------------------------------------------------------------------------------------


def table_to_csv(table: Table) -> str:
    """The table's frame as CSV text (raw numbers, missing = empty)."""
    buffer = io.StringIO()
    table.frame.to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue()


def stats_to_csv(table: Table) -> str | None:
    """The table's long-format statistics as CSV text (``None`` if it has none)."""
    if table.stats is None:
        return None
    buffer = io.StringIO()
    table.stats.to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue()
