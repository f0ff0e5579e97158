"""Golden files pin every output format for the fixed record set.

Formats: Markdown, LaTeX, CSV (one file per table), HTML (the whole page, with the embedded PNG
charts replaced by a placeholder: PNG bytes depend on the matplotlib/freetype build, the charts
are checked separately) and XLSX (every cell's value, number format, font and fill, dumped to
JSON, plus sheet names, widths and frozen panes).

Regenerate after an intended change with::

    TG_LLAVA_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/leaderboards/test_golden.py

and review the diff of ``tests/data/golden/leaderboards/``.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import pytest
from openpyxl import load_workbook
from PIL import Image

from tg_llava_eval.leaderboards import build_leaderboard
from tg_llava_eval.results import BenchmarkRegistry

from .fixed_records import fixed_frames

GOLDEN = Path(__file__).resolve().parents[2] / "data" / "golden" / "leaderboards"
UPDATE = os.environ.get("TG_LLAVA_UPDATE_GOLDEN") == "1"
PNG_DATA_URI = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]+")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    records, samples = fixed_frames()
    out = tmp_path_factory.mktemp("leaderboard")
    result = build_leaderboard(records, out, samples=samples, registry=BenchmarkRegistry(), title="Fixed leaderboard")
    return out, result


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"missing golden file {path}; run with TG_LLAVA_UPDATE_GOLDEN=1"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{name} differs from its golden file {path} (TG_LLAVA_UPDATE_GOLDEN=1 regenerates it)"


def test_markdown(built):
    out, _ = built
    check_golden("leaderboard.md", (out / "leaderboard.md").read_text())


def test_latex(built):
    out, _ = built
    text = (out / "leaderboard.tex").read_text()
    assert text.count(r"\begin{table}") == text.count(r"\bottomrule") == 9
    check_golden("leaderboard.tex", text)


def test_csv(built):
    out, result = built
    names = sorted(p.name for p in result.files["csv"])
    # One CSV per table, plus the long-format statistics beside every table with comparisons.
    assert names == sorted([f"{t.name}.csv" for t in result.tables] + [f"{t.name}_stats.csv" for t in result.tables if t.stats is not None])
    assert {n for n in names if n.endswith("_stats.csv")} == {
        "deltas_vlmevalkit_stats.csv", "deltas_lmms_eval_stats.csv", "ablation_vlmevalkit_stats.csv",
        "ablation_lmms_eval_stats.csv", "toolkit_agreement_stats.csv",
    }
    for name in names:
        check_golden(f"csv/{name}", (out / "csv" / name).read_text())


def test_html_structure(built):
    out, result = built
    html = (out / "leaderboard.html").read_text()
    assert len(PNG_DATA_URI.findall(html)) == len(result.files["png"]) == 5
    assert "http://" not in html and "https://" not in html  # self-contained
    check_golden("leaderboard.html", PNG_DATA_URI.sub("data:image/png;base64,<PNG>", html))


def xlsx_dump(path: Path) -> str:
    """Every sheet's cells with value, number format, bold, fill colour; widths; frozen panes."""
    workbook = load_workbook(path)
    dump = {}
    for sheet in workbook.worksheets:
        cells = []
        for row in sheet.iter_rows():
            for cell in row:
                if cell.value is None and not cell.font.bold:
                    continue
                fill = cell.fill.start_color.rgb if cell.fill.fill_type == "solid" else None
                cells.append([cell.coordinate, cell.value, cell.number_format, bool(cell.font.bold), bool(cell.font.italic), fill])
        dump[sheet.title] = {
            "freeze_panes": sheet.freeze_panes,
            "widths": {k: v.width for k, v in sorted(sheet.column_dimensions.items())},
            "cells": cells,
        }
    return json.dumps(dump, indent=1, ensure_ascii=False) + "\n"


def test_xlsx_cells_and_styles(built):
    out, _ = built
    text = xlsx_dump(out / "leaderboard.xlsx")
    data = json.loads(text)
    main = {c[0]: c for c in data["main_vlmevalkit"]["cells"]}
    assert main["E3"][1:] == ["MMBench", "General", True, False, "FF1F3B57"]  # header style
    assert main["E10"][1:] == [74.3, "0.0", True, False, "FFC6EFCE"]  # best in column
    assert main["E4"][1:] == [67.1, "0.0", False, False, None]
    assert {c[2] for c in data["deltas_vlmevalkit"]["cells"] if isinstance(c[1], float)} == {"+0.0;-0.0;0.0"}
    check_golden("leaderboard.xlsx.json", text)


def test_png_charts_are_valid_images(built):
    _, result = built
    names = sorted(p.stem for p in result.files["png"])
    assert names == ["ablation_lmms_eval", "ablation_vlmevalkit", "deltas_lmms_eval", "deltas_vlmevalkit", "reported_vs_reproduced"]
    for path in result.files["png"]:
        with Image.open(io.BytesIO(path.read_bytes())) as image:
            assert image.format == "PNG" and image.width > 200 and image.height > 150
            assert len(set(image.convert("L").getdata())) > 2  # not blank
