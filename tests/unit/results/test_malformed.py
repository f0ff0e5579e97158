"""Malformed inputs: an error naming the file and the problem, or a documented skip with a warning.

Each case starts from a real file of the committed toolkit trees and breaks it the way files get
broken in practice (a copy cut short, a column renamed, a cell overwritten, an empty run).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from tg_llava_eval.results import ParseContext, ResultFileError, collect
from tg_llava_eval.results.score_tables import read_table

TG = "TG-LLaVA-Vicuna-13B"
FAST = ParseContext(read_samples=False)


@pytest.fixture
def model_dir(toolkit_outputs, tmp_path) -> Path:
    """A writable copy of one real VLMEvalKit model folder (flat layout)."""
    target = tmp_path / "work" / TG
    shutil.copytree(toolkit_outputs / "vlmevalkit_flat" / TG, target)
    return target


@pytest.fixture
def lmms_file(toolkit_outputs, tmp_path) -> Path:
    """A writable copy of one real lmms-eval results folder; returns the results JSON."""
    source = toolkit_outputs / "lmms_eval" / "ckpts__tg-llava-vicuna-13b"
    target = tmp_path / "lmms" / source.name
    shutil.copytree(source, target)
    return next(target.glob("*_results.json"))


def _expect_error(paths, *fragments: str) -> ResultFileError:
    with pytest.raises(ResultFileError) as info:
        collect(paths, FAST)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    return info.value


def test_truncated_csv_mid_row(model_dir):
    path = model_dir / f"{TG}_tinymcq_acc.csv"
    text = path.read_text()
    path.write_text(text[: len(text) - 12])  # cut inside the last row, no final newline
    error = _expect_error([model_dir], str(path))
    assert "truncated" in error.problem or "malformed CSV" in error.problem


def test_truncated_csv_inside_a_quote(model_dir):
    path = model_dir / f"{TG}_tinyvqa_acc.csv"
    text = path.read_text()
    path.write_text(text[: text.rindex('"')] + "\n")  # the last quoted field never closes
    _expect_error([model_dir], str(path), "malformed CSV")


def test_csv_row_with_missing_fields(model_dir):
    path = model_dir / f"{TG}_tinyPOPE_score.csv"
    lines = path.read_text().splitlines()
    lines[2] = ",".join(lines[2].split(",")[:3])
    path.write_text("\n".join(lines) + "\n")
    _expect_error([model_dir], str(path), "line 3", "3 field(s) but the header has 5")


def test_missing_column(model_dir):
    path = model_dir / f"{TG}_tinymcq_acc.csv"
    path.write_text(path.read_text().replace('"Overall"', '"Total"', 1))
    _expect_error([model_dir], str(path), "missing column(s) ['Overall']")


def test_pope_table_missing_a_column_is_not_guessed(model_dir):
    path = model_dir / f"{TG}_tinyPOPE_score.csv"
    path.write_text(path.read_text().replace('"recall"', '"rec"', 1))
    _expect_error([model_dir], str(path), "unrecognised _score table with a 'split' column")


def test_non_numeric_score(model_dir):
    path = model_dir / f"{TG}_tinyyorn_score.csv"
    path.write_text('"Overall","colour","hue"\n"87.5","n/a","75.0"\n')
    _expect_error([model_dir], str(path), "line 2, column 'colour'", "'n/a' is not a number")


def test_mcq_accuracy_that_is_not_a_fraction(model_dir):
    path = model_dir / f"{TG}_tiny_MMBench_acc.csv"
    path.write_text('"split","Overall"\n"dev","75.0"\n')
    _expect_error([model_dir], str(path), "not a fraction in [0, 1]")


def test_empty_and_header_only_score_files(model_dir):
    path = model_dir / f"{TG}_tinyvqa_acc.csv"
    path.write_text("")
    _expect_error([model_dir], str(path), "file is empty")
    path.write_text('"Overall","primary"\n')
    _expect_error([model_dir], str(path), "no data rows")


def test_unknown_layout_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("no scores here\n")
    _expect_error([tmp_path], str(tmp_path), "unknown layout")


def test_score_file_not_named_after_its_folder(tmp_path):
    folder = tmp_path / "some_folder"
    folder.mkdir()
    (folder / "OtherModel_MME_score.csv").write_text('"Overall"\n"1.0"\n')
    _expect_error([tmp_path], "OtherModel_MME_score.csv", "unknown layout", "'some_folder'")


def test_missing_path():
    _expect_error([Path("/nonexistent/work_dir")], "/nonexistent/work_dir", "no such file or folder")


def test_skip_bad_turns_errors_into_listed_skips(model_dir, caplog):
    caplog.set_level(logging.WARNING)
    broken = model_dir / f"{TG}_tinymcq_acc.csv"
    broken.write_text('"split","Overall"\n"dev","oops"\n')
    result = collect([model_dir], FAST, strict=False)
    assert [s.path for s in result.skips] == [str(broken)]
    assert "'oops' is not a number" in result.skips[0].reason
    assert any(str(broken) in m for m in caplog.messages)
    assert {r.dataset for r in result.records} == {"tiny_MMBench", "tinyyorn", "tinyPOPE", "tiny_MME", "tinyvqa"}


def test_failed_dataset_in_status_json_is_a_documented_skip(model_dir, caplog):
    caplog.set_level(logging.WARNING)
    (model_dir / f"{TG}_tinyvqa_acc.csv").unlink()
    status_path = model_dir / "status.json"
    status = json.loads(status_path.read_text())
    status["datasets"]["tinyvqa"].pop("metrics")
    status["datasets"]["tinyvqa"]["error_message"] = "CUDA out of memory"
    status_path.write_text(json.dumps(status))
    result = collect([model_dir], FAST)
    assert len(result.skips) == 1
    assert result.skips[0].path == str(status_path) and "tinyvqa" in result.skips[0].reason
    assert "CUDA out of memory" in result.skips[0].reason
    assert any("CUDA out of memory" in m for m in caplog.messages)


def test_dataset_without_score_file_or_metrics_is_a_documented_skip(model_dir):
    (model_dir / f"{TG}_tinyyorn_score.csv").unlink()
    status_path = model_dir / "status.json"
    status = json.loads(status_path.read_text())
    status["datasets"]["tinyyorn"].pop("metrics")
    status_path.write_text(json.dumps(status))
    result = collect([model_dir], FAST)
    assert [s.reason for s in result.skips] == ["dataset 'tinyyorn' (status 'done') has no score file and no metrics"]


def test_invalid_status_json(model_dir):
    (model_dir / "status.json").write_text('{"datasets": ')
    _expect_error([model_dir], "status.json", "invalid status.json")


def test_corrupt_prediction_file(model_dir):
    path = model_dir / f"{TG}_tinyvqa.xlsx"
    path.write_bytes(b"not a zip file")
    _expect_error([model_dir], str(path), "cannot read prediction file")


def test_empty_lmms_results_json(lmms_file):
    lmms_file.write_text("")
    _expect_error([lmms_file], str(lmms_file), "file is empty")
    lmms_file.write_text("{}")
    _expect_error([lmms_file], str(lmms_file), "no 'results' object")
    lmms_file.write_text('{"results": {}}')
    _expect_error([lmms_file], str(lmms_file), "'results' is empty")


def test_truncated_lmms_results_json(lmms_file):
    text = lmms_file.read_text()
    lmms_file.write_text(text[: len(text) // 2])
    _expect_error([lmms_file], str(lmms_file), "invalid JSON (truncated?)")


def test_non_numeric_lmms_metric(lmms_file):
    data = json.loads(lmms_file.read_text())
    data["results"]["tinymcq"]["accuracy,none"] = "N/A"
    lmms_file.write_text(json.dumps(data))
    _expect_error([lmms_file], str(lmms_file), "results.tinymcq.'accuracy,none'", "'N/A' is not a number")


def test_truncated_lmms_samples_file(lmms_file):
    samples = next(lmms_file.parent.glob("*_samples_tinyvqa.jsonl"))
    text = samples.read_text()
    samples.write_text(text[: len(text) - 40])
    with pytest.raises(ResultFileError) as info:
        collect([lmms_file], ParseContext())
    assert str(samples) in str(info.value) and "invalid JSON" in str(info.value)
    result = collect([lmms_file], ParseContext(), strict=False)
    assert [s.path for s in result.skips] == [str(samples)]
    assert len(result.records) == 10  # the scores are still read


def test_unknown_lmms_metric_is_kept_raw_with_a_warning(lmms_file, caplog):
    caplog.set_level(logging.WARNING)
    data = json.loads(lmms_file.read_text())
    data["results"]["tinymcq"]["my_score,none"] = 3.5
    lmms_file.write_text(json.dumps(data))
    records = collect([lmms_file], FAST).records
    raw = [r for r in records if r.metric == "my_score"]
    assert len(raw) == 1 and raw[0].value == 3.5 and raw[0].scale == "raw"
    assert any("'my_score'" in m and "raw" in m for m in caplog.messages)


def test_invalid_run_manifest(lmms_file):
    manifest = lmms_file.parent / "tg_llava_run.json"
    manifest.write_text(json.dumps({"schema": "tg_llava_run/1", "variant": ["tiny"]}))
    _expect_error([lmms_file], str(manifest), "'variant' must be a string or null")


def test_read_table_accepts_json_rows_and_rejects_ragged_ones(tmp_path):
    good = tmp_path / "m_d_acc.json"
    good.write_text(json.dumps([{"split": "dev", "Overall": 0.5}, {"split": "test", "Overall": 0.25}]))
    assert read_table(good).rows[1]["Overall"] == 0.25
    bad = tmp_path / "m_e_acc.json"
    bad.write_text(json.dumps([{"split": "dev", "Overall": 0.5}, {"split": "test"}]))
    with pytest.raises(ResultFileError, match="row 2: keys"):
        read_table(bad)


def test_a_folder_given_twice_is_read_once(model_dir, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    alias = tmp_path / "alias"
    alias.symlink_to(model_dir.parent)
    once = collect([model_dir.parent], FAST)
    twice = collect([model_dir.parent, alias, model_dir], FAST)
    assert len(twice.records) == len(once.records) == 49
    assert twice.duplicates == [] and not any("duplicate" in m for m in caplog.messages)


# --- families the fixture runs cannot produce offline (GPT judge, video, official index format) ---
# The files below follow the formats of VLMEvalKit's writers (Hallusion_rating, MMVet.evaluate,
# OCRBench.evaluate, mvbench get_dimension_rating), crafted by hand.


def _write_model_file(tmp_path, name: str, text: str) -> Path:
    folder = tmp_path / "M"
    folder.mkdir(exist_ok=True)
    (folder / f"M_{name}").write_text(text)
    return folder


def test_hallusionbench_mmvet_ocrbench_and_rating_files(tmp_path):
    folder = _write_model_file(tmp_path, "HallusionBench_score.csv", '"split","aAcc","fAcc","qAcc"\n"Overall","46.7","17.3","13.0"\n"VD","50.0","20.0","15.0"\n')
    _write_model_file(tmp_path, "MMVet_gpt-4-turbo_score.csv", '"Category","tot","acc"\n"rec","10","40.0"\n"Overall","20","38.3"\n')
    _write_model_file(tmp_path, "OCRBench_score.json", json.dumps({"Text Recognition": 150, "Final Score": 337, "Final Score Norm": 33.7}))
    _write_model_file(tmp_path, "MVBench_rating.json", json.dumps({"Action": [3, 4, "75.00%"], "overall": [6, 10, "60.00%"]}))
    records = {(r.benchmark, r.category, r.metric): r for r in collect([folder], FAST).records}
    hallusion = records[("HallusionBench", "", "aAcc")]
    assert hallusion.value == 46.7 and hallusion.primary and records[("HallusionBench", "VD", "qAcc")].value == 15.0
    mmvet = records[("MM-Vet", "", "accuracy")]  # judge suffix stripped: dataset MMVet
    assert (mmvet.dataset, mmvet.value, mmvet.n, mmvet.primary) == ("MMVet", 38.3, 20, True)
    ocr = records[("OCRBench", "", "score")]
    assert (ocr.value, ocr.scale, ocr.primary) == (33.7, "percent", True)
    assert records[("OCRBench", "", "score_sum")].value == 337 and records[("OCRBench", "Text Recognition", "score_sum")].scale == "sum"
    rating = records[("MVBench", "", "rating")]
    assert (rating.value, rating.n, rating.scale) == (60.0, 10, "percent")
    assert records[("MVBench", "Action", "rating")].value == 75.0
