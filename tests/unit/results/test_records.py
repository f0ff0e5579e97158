"""ScoreRecord schema: validation, frame and CSV round trips, errors that name file/line/column."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from tg_llava_eval.results import (
    COLUMNS,
    ResultFileError,
    SamplePrediction,
    ScoreRecord,
    frame_to_records,
    read_records_csv,
    read_samples_csv,
    records_to_frame,
    write_records_csv,
    write_samples_csv,
)


def make_record(**changes) -> ScoreRecord:
    base = dict(
        model="TG-LLaVA-Qwen2-7B", variant="tg-llava-qwen2-7b", method="TG-LLaVA", llm="Qwen2-7B",
        toolkit="vlmevalkit", toolkit_version="git:1a2b3c4d", benchmark="MMBench", dataset="MMBench_DEV_EN",
        split="dev", category="", metric="accuracy", value=68.25, scale="percent", higher_is_better=True,
        n=4329, primary=True, origin="reproduced", source="work/TG-LLaVA-Qwen2-7B/x_acc.csv",
        citation="", run_time="2026-01-12T17:45:00+00:00", manifest='{"variant":"tg-llava-qwen2-7b"}',
    )
    base.update(changes)
    return ScoreRecord(**base)


def test_columns_follow_the_dataclass():
    assert COLUMNS[:3] == ("model", "variant", "method")
    assert set(COLUMNS) >= {"toolkit_version", "benchmark", "split", "metric", "value", "scale", "higher_is_better", "n", "source", "manifest"}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"scale": "percentage"}, "scale must be one of"),
        ({"origin": "measured"}, "origin must be one of"),
        ({"value": math.nan}, "finite float"),
        ({"value": 3}, "finite float"),
    ],
)
def test_invalid_record_fields(changes, message):
    with pytest.raises(ValueError, match=message):
        make_record(**changes)


def test_csv_round_trip_keeps_every_field(tmp_path):
    records = [make_record(), make_record(category="AR", n=None, primary=False, manifest="", value=0.1 + 0.2)]
    path = write_records_csv(records, tmp_path / "results.csv")
    assert read_records_csv(path) == records
    frame = records_to_frame(records)
    assert list(frame.columns) == list(COLUMNS)
    assert str(frame["n"].dtype) == "Int64" and frame["n"].isna().tolist() == [False, True]


def test_frame_to_records_names_line_and_column(tmp_path):
    path = write_records_csv([make_record(), make_record(split="test")], tmp_path / "results.csv")
    text = path.read_text().splitlines()
    text[2] = text[2].replace(",68.25,", ",sixty,")
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(ResultFileError) as info:
        read_records_csv(path)
    assert str(path) in str(info.value) and "line 3" in str(info.value) and "'value'" in str(info.value)


@pytest.mark.parametrize(
    "column, bad, message",
    [("n", "4.5", "not a non-negative integer"), ("primary", "maybe", "not a boolean"), ("scale", "permille", "scale must be one of")],
)
def test_bad_cells(tmp_path, column, bad, message):
    frame = records_to_frame([make_record()]).astype(object)
    frame.loc[0, column] = bad
    with pytest.raises(ResultFileError, match=message):
        frame_to_records(frame, source=tmp_path / "x.csv")


def test_missing_columns_are_listed(tmp_path):
    path = tmp_path / "results.csv"
    records_to_frame([make_record()]).drop(columns=["metric", "scale"]).to_csv(path, index=False)
    with pytest.raises(ResultFileError, match=r"missing column\(s\) metric, scale; unexpected column\(s\): none$"):
        read_records_csv(path)
    pd.DataFrame({"a": [1], "b": [2]}).to_csv(path, index=False)
    with pytest.raises(ResultFileError, match=r"is not a records CSV .*; unexpected column\(s\): a, b$"):
        read_records_csv(path)


def test_samples_round_trip(tmp_path):
    samples = [SamplePrediction("m", "tiny", "lmms-eval", "POPE", "pope", "0", "Yes", "yes", "s.jsonl", "2026-01-01T00:00:00+00:00")]
    path = write_samples_csv(samples, tmp_path / "results.samples.csv")
    assert read_samples_csv(path) == samples
    pd.read_csv(path).drop(columns=["prediction"]).to_csv(path, index=False)
    with pytest.raises(ResultFileError, match="prediction"):
        read_samples_csv(path)


def test_key_ignores_run_and_value():
    assert make_record().key() == make_record(value=1.0, run_time="", source="other").key()
    assert make_record().key() != make_record(split="test").key()
