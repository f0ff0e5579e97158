"""Reference scores (shipped package data + user CSVs) and the benchmark registry."""

from __future__ import annotations

import csv
import json
from collections import Counter

import pytest

from tests.shared_files import shared_file
from tg_llava_eval.results import (
    BenchmarkRegistry,
    ResultFileError,
    load_benchmark_specs,
    load_reference_scores,
    read_reference_csv,
    shipped_reference_path,
)
from tg_llava_eval.results.benchmarks import DEFAULT_BENCHMARKS
from tg_llava_eval.results.reference import REFERENCE_COLUMNS


def test_shipped_reference_is_package_data_and_loads_every_row():
    path = shipped_reference_path()
    assert path.is_file() and path.parent.name == "data"
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    records = load_reference_scores()
    assert len(records) == len(rows) == 167
    assert all(r.origin == "reported" and r.citation and r.source.startswith(f"{path}:") for r in records)
    first = records[0]
    assert (first.method, first.llm, first.benchmark, first.value, first.toolkit) == ("LLaVA-1.5", "Vicuna-7B", "VQAv2", 78.5, "LLaVA official eval scripts")
    assert first.model == "LLaVA-1.5 Vicuna-7B @336px/576tok"


def test_shipped_copy_matches_the_shared_reference():
    assert shipped_reference_path().read_bytes() == shared_file("reference/reference_scores.csv").read_bytes()


def test_headline_reference_rows_are_unique_per_source_and_benchmark():
    records = load_reference_scores()
    counts = Counter((r.model, r.toolkit, r.citation, r.benchmark) for r in records if r.primary)
    assert [key for key, count in counts.items() if count > 1] == []
    mme = [r for r in records if r.benchmark == "MME"]
    assert all(r.scale == "sum" for r in mme)
    assert {r.split for r in mme if r.primary} == {"perception", "not stated"}
    hallusion = {r.metric: r.primary for r in records if r.benchmark == "HallusionBench"}
    assert hallusion == {"aAcc": True, "fAcc": False, "qAcc": False}


def test_user_reference_csv(tmp_path):
    path = tmp_path / "tg_llava_paper.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(REFERENCE_COLUMNS)
        writer.writerow(["TG-LLaVA", "Qwen2-7B-Instruct", "336", "640", "MMBench", "dev (mmbench_dev_20230712)", "accuracy", "75.0", "VLMEvalKit", "TG-LLaVA paper, Table 1 (hypothetical row for the test)"])
    (record,) = load_reference_scores([path], shipped=False)
    assert (record.method, record.llm, record.value, record.primary) == ("TG-LLaVA", "Qwen2-7B", 75.0, True)
    assert record.source == f"{path}:2"


@pytest.mark.parametrize(
    "rows, message",
    [
        ([["method", "llm"]], r"missing column\(s\)"),
        ([list(REFERENCE_COLUMNS), ["M", "L", "", "", "MME", "p", "s", "lots", "t", "src"]], "line 2, column 'score': 'lots' is not a number"),
        ([list(REFERENCE_COLUMNS), ["M", "L", "", "", "MME", "p", "s", "1", "t", ""]], "line 2: column 'source' is empty"),
        ([list(REFERENCE_COLUMNS), ["M", "L"]], "line 2: 2 field"),
        ([list(REFERENCE_COLUMNS)], "no data rows"),
    ],
)
def test_bad_reference_csv(tmp_path, rows, message):
    path = tmp_path / "ref.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    with pytest.raises(ResultFileError, match=message):
        read_reference_csv(path)


def test_registry_lookups():
    registry = BenchmarkRegistry()
    assert registry.benchmark_name("vlmevalkit", "MMBench_DEV_EN") == "MMBench"
    assert registry.benchmark_name("lmms-eval", "mme") == "MME"
    assert registry.benchmark_name("lmms-eval", "my_task") == "my_task"
    assert registry.order(["zeta", "POPE", "MMBench", "alpha"]) == ["MMBench", "POPE", "alpha", "zeta"]
    assert registry.tolerance("MME") == 30.0 and registry.tolerance("unknown") == 1.0
    assert registry.label("LLaVA-Bench-in-the-Wild") == "LLaVA-W"
    assert len({s.name for s in DEFAULT_BENCHMARKS}) == len(DEFAULT_BENCHMARKS)


def test_registry_rejects_a_dataset_claimed_twice():
    registry = BenchmarkRegistry()
    clone = DEFAULT_BENCHMARKS[0].__class__(name="Other", datasets=DEFAULT_BENCHMARKS[0].datasets[:1])
    with pytest.raises(ValueError, match="declared for two benchmarks"):
        registry.extend([clone])


def test_fixture_specs_load(toolkit_outputs):
    specs, metrics = load_benchmark_specs(toolkit_outputs / "benchmarks.json")
    assert [s.name for s in specs][:2] == ["TinyMCQ", "TinyMMBench"] and metrics == {}
    mcq = specs[0]
    assert mcq.datasets[0].headline.split == "dev" and mcq.datasets[1].headline.split is None


@pytest.mark.parametrize(
    "data, message",
    [
        ({"benchmarks": {}}, "benchmarks must be a list"),
        ({"benchmarks": [{"name": "X", "scale": "permille"}]}, "scale must be one of"),
        ({"benchmarks": [{"name": "X", "datasets": [{"toolkit": "opencompass", "name": "x"}]}]}, "toolkit must be"),
        ({"benchmarks": [{"name": ""}]}, "name must be a non-empty string"),
        ({"benchmarks": [{"name": "X", "tolerance": -1}]}, "tolerance must be a non-negative number"),
        ({"benchmarks": [{"name": "X", "colour": 1}]}, r"unknown key\(s\) \['colour'\]"),
        ({"lmms_metrics": {"m": {"scale": "ratio"}}}, "scale must be one of"),
        ({"extra": 1}, "must be an object with keys"),
    ],
)
def test_bad_benchmark_specs(tmp_path, data, message):
    path = tmp_path / "specs.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultFileError, match=message):
        load_benchmark_specs(path)
