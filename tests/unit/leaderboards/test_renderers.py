"""Renderer details: escaping, number formats, sheet names, empty tables, charts."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from tg_llava_eval.leaderboards.charts import delta_chart_png
from tg_llava_eval.leaderboards.render_html import page_html, table_to_html
from tg_llava_eval.leaderboards.render_text import latex_escape, table_to_csv, table_to_latex, table_to_markdown
from tg_llava_eval.leaderboards.render_xlsx import excel_number_format, sheet_name, tables_to_workbook
from tg_llava_eval.leaderboards.table import Table
from tg_llava_eval.results import records_to_frame


def small_table(**changes) -> Table:
    frame = pd.DataFrame({"Model": ["a|b <x> & [1]", "c_d 50%"], "Score": [1.25, math.nan], "Δ": [-0.5, 2.0]})
    base = dict(name="t", title="T & 100% <b>", frame=frame, label_columns=1, formats={"Δ": "{:+.1f}"}, best={"Score": True, "Δ": False}, notes=("see [2] & 5%",))
    base.update(changes)
    return Table(**base)


def test_latex_escape():
    assert latex_escape("a_b & 50% #1 $x$ {y} ~^\\") == r"a\_b \& 50\% \#1 \$x\$ \{y\} \textasciitilde{}\textasciicircum{}\textbackslash{}"
    assert latex_escape("Δ ✓ ✗ – −") == r"$\Delta$ yes no -- $-$"
    assert latex_escape("[1]") == "{[}1{]}"


def test_markdown_escapes_pipes_and_marks_best():
    text = table_to_markdown(small_table())
    assert r"a\|b <x> & [1]" in text
    assert "| **-0.5** |" in text  # lower is better in Δ
    assert "| 1.2 |" in text  # 1.25 -> "1.2" (round half to even); one value only: no highlight
    assert "–" in text and "- see [2] & 5%" in text


def test_latex_table_shape():
    text = table_to_latex(small_table())
    assert r"\begin{tabular}{lrr}" in text and r"\toprule" in text and r"\bottomrule" in text
    assert r"\caption{T \& 100\% <b>}" in text and r"\label{tab:t}" in text
    assert r"\textbf{-0.5}" in text and "{[}2{]}" in text


def test_empty_table_renders_a_placeholder():
    table = small_table(frame=pd.DataFrame(columns=["Model", "Score"]), formats={}, best={})
    assert "_No data._" in table_to_markdown(table)
    assert r"\multicolumn{2}{c}{No data.}" in table_to_latex(table)
    assert "No data." in table_to_html(table)
    assert table_to_csv(table) == "Model,Score\n"


def test_csv_keeps_raw_numbers():
    assert table_to_csv(small_table()).splitlines()[1:] == ['a|b <x> & [1],1.25,-0.5', "c_d 50%,,2.0"]


@pytest.mark.parametrize("spec, expected", [("{:.1f}", "0.0"), ("{:.2f}", "0.00"), ("{:+.1f}", "+0.0;-0.0;0.0"), ("{:.0f}", "0"), ("{:d}", "0")])
def test_excel_number_formats(spec, expected):
    assert excel_number_format(spec) == expected


def test_excel_number_format_rejects_unknown_specs():
    with pytest.raises(ValueError, match="no Excel number format"):
        excel_number_format("{:e}")


def test_sheet_names_are_valid_and_unique():
    used: set[str] = set()
    long = "x" * 40
    assert sheet_name("a/b:c", used) == "a_b_c"
    first, second = sheet_name(long, used), sheet_name(long, used)
    assert len(first) == len(second) == 31 and first != second


def test_workbook_cells():
    sheet = tables_to_workbook([small_table()])["t"]
    assert sheet["A1"].value == "T & 100% <b>" and sheet["B3"].value == "Score"
    assert sheet["B4"].value == 1.25 and sheet["B5"].value is None
    assert sheet["C4"].number_format == "+0.0;-0.0;0.0" and sheet["C4"].fill.start_color.rgb == "FFC6EFCE"
    assert sheet["A7"].value == "see [2] & 5%"
    assert sheet.freeze_panes == "B4"


def test_html_escapes_and_carries_sort_values():
    html = table_to_html(small_table())
    assert "a|b &lt;x&gt; &amp; [1]" in html
    assert '<th data-type="number" scope="col">Score</th>' in html and '<th data-type="text" scope="col">Model</th>' in html
    assert 'data-value="1.25"' in html and 'data-value=""' in html
    assert '<td class="num best" data-value="-0.5">-0.5</td>' in html


def test_page_has_no_external_resources():
    page = page_html([small_table()], records_to_frame([]), "Title <1>")
    assert page.startswith("<!DOCTYPE html>") and "<title>Title &lt;1&gt;</title>" in page
    assert "src=\"http" not in page and "href=\"http" not in page and "<link" not in page
    assert "No run manifest" in page or "No run manifests" in page


def test_delta_chart_png():
    png = delta_chart_png(small_table(), ["Score", "Δ"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert delta_chart_png(small_table(frame=small_table().frame.iloc[0:0])) is None
    nan_only = small_table(frame=pd.DataFrame({"Model": ["a"], "Score": [math.nan], "Δ": [math.nan]}))
    assert delta_chart_png(nan_only) is None
