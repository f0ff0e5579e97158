"""Property-based fuzzing of the parsers (hypothesis).

Whatever bytes land in a score file, the parsers either return valid records or raise
:class:`ResultFileError` naming that file — never another exception, never a record with a
non-finite value, never a silent drop of a table the parser accepted.
"""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tg_llava_eval.results import ParseContext, ResultFileError, collect
from tg_llava_eval.results.score_tables import read_table

MODEL = "FuzzModel"
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FAST = ParseContext(read_samples=False)

#: Column names that steer the family classification, plus noise.
COLUMN_NAMES = st.sampled_from(
    ["split", "Overall", "acc", "precision", "recall", "perception", "reasoning", "aAcc", "fAcc", "qAcc",
     "Category", "tot", "CP", "color", "x y", "", "Overall"]
)
CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(min_value=0, max_value=1).map(str),
    st.integers(-5, 3000).map(str),
    st.sampled_from(["", "none", "dev", "Overall", "n/a", "75%", " 0.5 ", "random"]),
    st.text(max_size=6),
)


@st.composite
def score_csv(draw) -> str:
    """A CSV score table with plausible and implausible columns/cells, sometimes cut short."""
    columns = draw(st.lists(COLUMN_NAMES, min_size=1, max_size=6))
    rows = draw(st.lists(st.lists(CELLS, min_size=len(columns), max_size=len(columns)), max_size=4))
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=draw(st.sampled_from([csv.QUOTE_ALL, csv.QUOTE_MINIMAL])), lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    text = buffer.getvalue()
    if draw(st.booleans()):
        text = text[: draw(st.integers(0, len(text)))]
    return text


def _collect_one(name: str, content: str | bytes) -> tuple[Path, object]:
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / MODEL
        model_dir.mkdir()
        path = model_dir / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
        try:
            return path, collect([model_dir], FAST)
        except ResultFileError as error:
            assert error.path.startswith(tmp), error.path
            return path, error


def _check_records(result) -> None:
    if isinstance(result, ResultFileError):
        return
    for record in result.records:
        assert math.isfinite(record.value)
        assert record.scale in ("percent", "sum", "raw")
    assert len([r for r in result.records if r.primary]) <= 1


@SETTINGS
@given(text=st.text(max_size=300))
def test_read_table_on_arbitrary_text(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m_d_acc.csv"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            table = read_table(path)
        except ResultFileError as error:
            assert error.path == str(path)
        else:
            assert table.rows and all(len(row) == len(table.columns) for row in table.rows)


@SETTINGS
@given(content=score_csv(), kind=st.sampled_from(["acc", "score"]))
def test_vlmevalkit_score_tables(content, kind):
    _, result = _collect_one(f"{MODEL}_fuzzset_{kind}.csv", content)
    _check_records(result)


@SETTINGS
@given(data=st.recursive(
    st.one_of(st.none(), st.booleans(), st.floats(), st.integers(), st.text(max_size=8)),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=6), children, max_size=4)),
    max_leaves=12,
), suffix=st.sampled_from(["rating", "score", "acc"]))
def test_vlmevalkit_json_score_files(data, suffix):
    _, result = _collect_one(f"{MODEL}_fuzzset_{suffix}.json", json.dumps(data))
    _check_records(result)


@st.composite
def lmms_results(draw) -> dict:
    """An lmms-eval results object with random tasks, metric keys and values."""
    metric_keys = st.sampled_from(["acc,none", "accuracy,none", "acc_stderr,none", "alias", "exact_match,flex", "pope_f1_score,none", "weird"])
    values = st.one_of(st.floats(), st.integers(), st.sampled_from(["N/A", "0.5", ""]), st.none(), st.booleans())
    results = draw(st.dictionaries(st.text(min_size=1, max_size=6), st.dictionaries(metric_keys, values, max_size=4), max_size=3))
    data = {"results": results}
    if draw(st.booleans()):
        data["n-samples"] = {task: {"effective": draw(st.one_of(st.integers(0, 9), st.text(max_size=2)))} for task in results}
    if draw(st.booleans()):
        data["config"] = {"model": "tg_llava", "model_args": draw(st.text(max_size=20))}
    return data


@SETTINGS
@given(data=lmms_results(), cut=st.one_of(st.none(), st.integers(0, 200)))
def test_lmms_eval_results_files(data, cut):
    text = json.dumps(data)
    if cut is not None:
        text = text[:cut]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out" / "20260101_120000_results.json"
        path.parent.mkdir()
        path.write_text(text)
        try:
            result = collect([path], FAST)
        except ResultFileError as error:
            assert error.path == str(path)
        else:
            _check_lmms(result)


def _check_lmms(result) -> None:
    for record in result.records:
        assert math.isfinite(record.value) and record.toolkit == "lmms-eval"
        assert "stderr" not in record.metric
