"""``tg-llava-eval collect`` and ``tg-llava-eval leaderboard`` end to end, and the no-torch rule."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.python_probe import run_python_probe
from tg_llava_eval.cli import main
from tg_llava_eval.results import read_records_csv, read_samples_csv

REPO = Path(__file__).resolve().parents[3]
OUTPUTS = REPO / "tests" / "data" / "toolkit_outputs"


def test_collect_then_leaderboard(tmp_path, capsys):
    results = tmp_path / "results.csv"
    status = main([
        "collect", str(OUTPUTS / "vlmevalkit_flat"), str(OUTPUTS / "lmms_eval"), "-o", str(results),
        "--benchmarks", str(OUTPUTS / "benchmarks.json"), "--no-progress",
    ])
    assert status == 0
    out = capsys.readouterr().out
    assert "wrote 118 score(s)" in out and "wrote 252 sample prediction(s)" in out
    records = read_records_csv(results)
    assert {r.toolkit for r in records} == {"vlmevalkit", "lmms-eval"}
    assert len(read_samples_csv(tmp_path / "results.samples.csv")) == 252

    board = tmp_path / "board"
    status = main(["leaderboard", str(results), "-o", str(board), "--benchmarks", str(OUTPUTS / "benchmarks.json"), "--formats", "md,csv"])
    assert status == 0
    assert sorted(p.name for p in board.iterdir()) == ["csv", "leaderboard.md"]
    agreement = pd.read_csv(board / "csv" / "toolkit_agreement.csv")
    pope = agreement[(agreement["Variant"] == "tg-llava-vicuna-13b") & (agreement["Benchmark"] == "TinyPOPE")].iloc[0]
    assert pope["VLMEvalKit"] == pope["lmms-eval"] and pope["Δ"] == 0.0
    assert pope["Samples compared"] == 8 and pope["Answer agreement (%)"] == 100.0
    deltas = pd.read_csv(board / "csv" / "deltas_vlmevalkit.csv")
    assert deltas.loc[0, "TinyMME"] == 600.0 and deltas.loc[0, "TinyMCQ"] == 25.0
    # The shipped reference is loaded (a reported row appears in the concurrent table's notes).
    assert "reported row(s)" in (board / "leaderboard.md").read_text()


def test_collect_reports_bad_files_with_exit_status_1(tmp_path, caplog):
    model_dir = tmp_path / "work" / "TG-LLaVA-Vicuna-13B"
    shutil.copytree(OUTPUTS / "vlmevalkit_flat" / "TG-LLaVA-Vicuna-13B", model_dir)
    broken = model_dir / "TG-LLaVA-Vicuna-13B_tinyvqa_acc.csv"
    broken.write_text('"Overall"\n"n/a"\n')
    assert main(["collect", str(tmp_path / "work"), "-o", str(tmp_path / "r.csv"), "--no-progress", "--no-samples"]) == 1
    assert any(str(broken) in m and "'n/a' is not a number" in m for m in caplog.messages)
    assert not (tmp_path / "r.csv").exists()
    assert main(["collect", str(tmp_path / "work"), "-o", str(tmp_path / "r.csv"), "--no-progress", "--skip-bad"]) == 0
    assert {r.dataset for r in read_records_csv(tmp_path / "r.csv")} == {"tinymcq", "tiny_MMBench", "tinyyorn", "tinyPOPE", "tiny_MME"}


def test_collect_with_a_model_mapping(tmp_path):
    mapping = tmp_path / "models.csv"
    with mapping.open("w", newline="") as handle:
        csv.writer(handle).writerows([["model", "variant"], ["ckpts/tg-llava-vicuna-13b", "tiny"]])
    results = tmp_path / "results.csv"
    assert main(["collect", str(OUTPUTS / "lmms_eval"), "-o", str(results), "--models", str(mapping), "--no-progress", "--no-samples"]) == 0
    variants = {r.model: (r.variant, r.llm) for r in read_records_csv(results)}
    assert variants["ckpts/tg-llava-vicuna-13b"] == ("tiny", "tiny")
    assert variants["ckpts/llava-1.5-vicuna-13b"] == ("llava-1.5-vicuna-13b", "Vicuna-13B")


def test_leaderboard_rejects_a_bad_records_file(tmp_path, caplog):
    bad = tmp_path / "results.csv"
    bad.write_text("model,value\nx,1\n")
    assert main(["leaderboard", str(bad), "-o", str(tmp_path / "out")]) == 1
    assert any(str(bad) in m and "missing column(s)" in m for m in caplog.messages)


@pytest.mark.slow
def test_results_and_leaderboards_do_not_import_torch():
    """At run time too: a whole collect imports neither torch nor a toolkit (the layering test
    checks the imports alone)."""
    run_python_probe(
        "import sys\n"
        "import tg_llava_eval.results, tg_llava_eval.leaderboards, tg_llava_eval.cli.collect, tg_llava_eval.cli.leaderboard\n"
        "from tg_llava_eval.results import collect\n"
        f"collect([{str(OUTPUTS / 'lmms_eval')!r}])\n"
        "bad = sorted(m for m in ('torch', 'transformers', 'vlmeval', 'lmms_eval') if m in sys.modules)\n"
        "assert not bad, bad\n",
        cwd=REPO,
    )
