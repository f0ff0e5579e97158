"""Table builders on the fixed record set: values, order, flags, notes, purity."""

from __future__ import annotations

import logging
import math

import pandas as pd
import pytest

from tg_llava_eval.leaderboards.tables import (
    ablation_table,
    agreement_table,
    all_tables,
    answer_agreement,
    column_labels,
    concurrent_table,
    delta_table,
    main_table,
    normalize_answer,
    reported_vs_reproduced,
)
from tg_llava_eval.results import BenchmarkRegistry, records_to_frame

from .fixed_records import LMMS_VALUES, VLMEVALKIT_VALUES, fixed_frames, fixed_records

REGISTRY = BenchmarkRegistry()


@pytest.fixture
def frames():
    return fixed_frames()


def _row(table, **match):
    frame = table.frame
    mask = pd.Series(True, index=frame.index)
    for column, value in match.items():
        mask &= frame[column] == value
    assert mask.sum() == 1, (match, frame)
    return frame[mask].iloc[0]


def test_builders_do_not_mutate_their_input(frames):
    records, samples = frames
    before = records.copy(deep=True), samples.copy(deep=True)
    all_tables(records, samples, REGISTRY)
    pd.testing.assert_frame_equal(records, before[0])
    pd.testing.assert_frame_equal(samples, before[1])


def test_main_table_order_values_and_missing_cells(frames):
    table = main_table(frames[0], REGISTRY, "vlmevalkit")
    assert list(table.frame.columns) == ["LLM", "Method", "Variant", "Model", "MMBench", "MME", "POPE", "GQA", "TextVQA"]
    assert list(table.frame["LLM"]) == ["Vicuna-13B"] * 3 + ["Llama-3-8B"] * 2 + ["Qwen2-7B"] * 2
    assert list(table.frame["Method"][:2]) == ["LLaVA-1.5", "TG-LLaVA"]
    # Ablation variants are not in the main table; a missing score stays missing (no average).
    assert not table.frame["Variant"].str.contains("no-").any()
    assert math.isnan(_row(table, Variant="llava-1.5-llama3-8b")["TextVQA"])
    assert "Average" not in table.frame.columns
    assert _row(table, Model="TG-LLaVA-Qwen2-7B")["MME"] == 1601.2
    # Best per column, highest wins.
    assert table.best_rows("MME") == {6} and table.best["MMBench"] is True


def test_main_table_excludes_non_headline_and_reported_records(frames):
    table = main_table(frames[0], REGISTRY, "vlmevalkit")
    assert 12.5 not in table.frame.select_dtypes("number").to_numpy()
    assert 1531.3 not in table.frame.select_dtypes("number").to_numpy()


def test_delta_table_values(frames):
    table = delta_table(frames[0], REGISTRY, "vlmevalkit")
    qwen = _row(table, LLM="Qwen2-7B")
    expected = [a - b for a, b in zip(VLMEVALKIT_VALUES["tg-llava-qwen2-7b"], VLMEVALKIT_VALUES["llava-1.5-qwen2-7b"])]
    assert list(qwen[["MMBench", "MME", "POPE", "GQA", "TextVQA"]]) == pytest.approx(expected)
    assert math.isnan(_row(table, LLM="Llama-3-8B")["TextVQA"])  # baseline missing -> Δ missing
    assert table.formats["MME"] == "{:+.1f}"


def test_delta_table_uses_the_newest_of_two_runs_with_a_warning(frames, caplog):
    caplog.set_level(logging.WARNING)
    table = delta_table(frames[0], REGISTRY, "vlmevalkit")
    assert _row(table, LLM="Vicuna-13B")["MMBench"] == pytest.approx(69.4 - 67.1)  # not 60.0 - 67.1
    assert any("work/tg_llava/" in m and "work/TG-LLaVA-Vicuna-13B/" in m for m in caplog.messages)


def test_concurrent_table_marks_reported_rows_with_citations(frames):
    table = concurrent_table(frames[0], REGISTRY, "vlmevalkit")
    reported = table.frame[table.frame["Origin"] == "reported"]
    assert len(reported) == 3 and set(reported["Source"].str[:3]) == {"[1]", "[2]", "[3]"}
    conv = _row(table, Method="ConvLLaVA")
    assert conv["MME"] == 1541.0 and math.isnan(conv["POPE"])
    assert any(n.startswith("[3] ConvLLaVA README") for n in table.notes)
    assert any("DocVQA" in n for n in table.notes)  # reported benchmark without our score: named
    assert (table.frame["Origin"] == "reproduced (VLMEvalKit)").sum() == 7


def test_reported_vs_reproduced_flags(frames):
    table = reported_vs_reproduced(frames[0], REGISTRY)
    frame = table.frame
    assert set(frame["Method"]) == {"LLaVA-1.5"} and set(frame["LLM"]) == {"Vicuna-13B"}
    mme = frame[(frame["Benchmark"] == "MME") & (frame["Toolkit"] == "lmms-eval") & frame["Reported by"].str.startswith("[1]")].iloc[0]
    assert mme["Δ"] == pytest.approx(1498.0 - 1531.3) and mme["Tolerance"] == 30.0 and mme["Within"] == "no"
    textvqa = _row(table, Benchmark="TextVQA")
    assert textvqa["Δ"] == pytest.approx(-1.4) and textvqa["Within"] == "no"
    gqa = _row(table, Benchmark="GQA")
    assert gqa["Within"] == "yes" and gqa["Reported split / metric"] == "testdev_balanced / accuracy"
    assert len(frame) == 10  # MMBench 2, MME 4 (2 toolkits x 2 sources), POPE 2, GQA 1, TextVQA 1


def test_reported_vs_reproduced_does_not_compare_different_scales():
    records = fixed_records()
    odd = [r.replace(scale="percent") if r.origin == "reported" and r.benchmark == "MME" else r for r in records]
    table = reported_vs_reproduced(records_to_frame(odd), REGISTRY)
    assert "MME" not in set(table.frame["Benchmark"])
    assert any("4 pair(s) on different scales" in n for n in table.notes)


def test_ablation_table(frames):
    table = ablation_table(frames[0], REGISTRY, "vlmevalkit")
    qwen = table.frame[table.frame["LLM"] == "Qwen2-7B"]
    assert list(qwen["Variant"]) == ["tg-llava-qwen2-7b", "tg-llava-qwen2-7b-no-dp", "tg-llava-qwen2-7b-no-fom", "llava-1.5-qwen2-7b"]
    assert list(qwen["TG-FOM"]) == ["✓", "✓", "✗", "✗"] and list(qwen["TG-DP"]) == ["✓", "✗", "✓", "✗"]
    no_fom = _row(table, Variant="tg-llava-qwen2-7b-no-fom")
    assert no_fom["MME Δ"] == pytest.approx(1570.6 - 1601.2)
    assert math.isnan(_row(table, Variant="tg-llava-qwen2-7b")["MME Δ"])  # the reference row


def test_ablation_table_notes_unknown_variants():
    records = fixed_records()
    records.append(records[0].replace(model="mystery", variant="", method="", llm=""))
    table = ablation_table(records_to_frame(records), REGISTRY, "vlmevalkit")
    assert any("mystery" in n and "switches unknown" in n for n in table.notes)


def test_agreement_table(frames):
    table = agreement_table(*frames, REGISTRY)
    pope = _row(table, Variant="tg-llava-vicuna-13b", Benchmark="POPE")
    assert pope["VLMEvalKit"] == 87.1 and pope["lmms-eval"] == LMMS_VALUES["tg-llava-vicuna-13b"][2]
    assert pope["Δ"] == pytest.approx(86.9 - 87.1)
    assert pope["Samples compared"] == 4 and pope["Answer agreement (%)"] == 75.0
    assert pope["Split / metric (VLMEvalKit)"] == "f1"
    assert len(table.frame) == 6


def test_agreement_delta_needs_the_same_split_and_metric():
    records = fixed_records()
    changed = [r.replace(split="test") if r.toolkit == "lmms-eval" and r.benchmark == "MMBench" else r for r in records]
    table = agreement_table(records_to_frame(changed), fixed_frames()[1], REGISTRY)
    row = _row(table, Variant="tg-llava-vicuna-13b", Benchmark="MMBench")
    assert math.isnan(row["Δ"]) and row["Split / metric (lmms-eval)"] == "test / accuracy"


def test_answer_normalisation_and_agreement():
    assert normalize_answer("  Yes. ") == "yes" == normalize_answer("YES")
    assert normalize_answer("a  red\tcar") == "a red car"
    samples = fixed_frames()[1]
    assert answer_agreement(samples, "tg-llava-vicuna-13b", "POPE") == (4, 75.0)
    assert answer_agreement(samples, "tg-llava-vicuna-13b", "MME")[0] == 0


def test_column_labels_disambiguate_only_when_needed():
    records = fixed_records()
    extra = records[0].replace(split="test", dataset="MMBench_TEST_EN", value=66.0)
    frame = records_to_frame([r for r in records if r.toolkit == "vlmevalkit" and r.primary] + [extra])
    labels = set(column_labels(frame, REGISTRY))
    assert {"MMBench (dev)", "MMBench (test)", "MME", "POPE"} <= labels
    same_split = records[0].replace(dataset="MMBench_DEV_EN_V11", value=66.0)
    frame = records_to_frame([records[0], same_split])
    assert set(column_labels(frame, REGISTRY)) == {"MMBench (MMBench_DEV_EN)", "MMBench (MMBench_DEV_EN_V11)"}


def test_empty_inputs_give_empty_tables():
    empty = records_to_frame([])
    tables = all_tables(empty, fixed_frames()[1].iloc[0:0], REGISTRY)
    assert [t.name for t in tables] == ["concurrent", "reported_vs_reproduced", "toolkit_agreement"]
    assert all(t.empty() for t in tables)


def test_a_siglip_variant_is_a_row_of_its_own_not_the_tg_side_of_a_delta():
    """A SigLIP variant has both switches on, like the paper's model, but other towers: the Δ
    against LLaVA-1.5 stays the CLIP model's, and the main table shows the SigLIP row apart."""
    from tests.unit.leaderboards.fixed_records import _reproduced
    from tg_llava_eval.results import records_to_frame

    records = records_to_frame([
        _reproduced("vlmevalkit", "TG-LLaVA-Qwen2-7B", "tg-llava-qwen2-7b", "MMBench", 70.0),
        _reproduced("vlmevalkit", "TG-LLaVA-Qwen2-7B-SigLIP", "tg-llava-qwen2-7b-siglip", "MMBench", 90.0,
                    run_time="2026-12-01T00:00:00+00:00"),
        _reproduced("vlmevalkit", "LLaVA-1.5-Qwen2-7B-TG", "llava-1.5-qwen2-7b", "MMBench", 65.0),
    ])
    qwen = _row(delta_table(records, REGISTRY, "vlmevalkit"), LLM="Qwen2-7B")
    assert qwen["TG-LLaVA"] == "tg-llava-qwen2-7b" and qwen["MMBench"] == pytest.approx(5.0)
    assert set(main_table(records, REGISTRY, "vlmevalkit").frame["Variant"]) >= {"tg-llava-qwen2-7b-siglip"}
