"""Parsers on real VLMEvalKit and lmms-eval output trees: every expected score, right value.

The trees were produced by running the real toolkits (see ``tests/data/toolkit_outputs/README.md``).
The expected values below are derived by hand from the fixture design in
``tools/regen_toolkit_outputs.py``, not copied from the files:

* palette red, green, blue, yellow; row ``i`` shows ``COLOURS[i % 4]`` (MME: category ``k`` shows
  ``COLOURS[k % 4]``); the TG oracle sees colours right, the baseline oracle sees green as blue;
* deliberately wrong stored answers: tinymcq rows 3, 7; tiny_MMBench row 3; tinyyorn row 5;
  tinyPOPE row 6; tiny_MME row 4 (category ``position``, its "yes" question); tinyvqa row 7.

Derivations (TG / baseline):

* tinymcq (dev = rows 0-3, test = 4-7; attribute = even rows, scene = odd rows): TG misses only
  the mislabeled rows 3, 7 -> 3/4 per split, attribute 2/2, scene 1/2. The baseline also misses the
  green rows 1, 5 -> 2/4, attribute 2/2, scene 0/2.
* tiny_MMBench (4 questions, circular copies of 0 and 1): TG 3/4; baseline misses green row 1 -> 2/4.
* tinyyorn (asked colour = shown colour on even rows; colour = rows 0-3, hue = rows 4-7): TG
  misses row 5 -> 7/8, colour 4/4, hue 3/4. Baseline: row 1 (green, asked "blue?", truth No)
  answers Yes -> wrong; row 5 (same question, truth flipped to Yes) answers Yes -> right -> 7/8,
  colour 3/4, hue 4/4.
* tinyPOPE (truth Yes on rows 0, 2, 4; row 6 flipped to No; subsets adversarial {0,3},
  popular {1,4,7}, random {2,5,6}): TG answers Yes on 0, 2, 4, 6 -> accuracy 7/8, precision 3/4,
  recall 3/3, F1 = 2·0.75·1/1.75 = 85.714; random: accuracy 2/3, precision 1/2, F1 2/3. Baseline
  also answers Yes on the green rows 1, 5 -> accuracy 5/8, precision 3/6, recall 1, F1 2/3;
  random: accuracy 1/3, precision 1/3, F1 0.5; popular: accuracy 2/3, precision 1/2.
* tiny_MME (score per category = acc + acc+, two questions per image): TG: position 50 (one of
  two right, pair not both right), others 200 -> perception 9·200 + 50 = 1850, reasoning 800.
  Baseline: the green categories count, posters, artwork, code_reasoning get 0 (both questions
  wrong), position 50 -> perception 6·200 + 50 = 1250, reasoning 3·200 = 600.
* tinyvqa (primary = red/blue rows, secondary = green/yellow rows): TG misses row 7 -> 87.5,
  primary 100, secondary 75; baseline misses rows 1, 5, 7 -> 62.5, secondary 25.
* lmms-eval runs the same rows as one task each (tinymcq over both splits): the same numbers, as
  fractions x 100 (accuracy, exact_match, pope_*), MME as sums (cognition = reasoning).
"""

from __future__ import annotations

import logging
import shutil

import pytest

from tg_llava_eval.results import ParseContext, collect
from tg_llava_eval.results.records import ORIGIN_REPRODUCED, SCALE_PERCENT, SCALE_SUM

TG, BASE = "TG-LLaVA-Vicuna-13B", "LLaVA-1.5-Vicuna-13B-TG"
TG_LMMS, BASE_LMMS = "ckpts/tg-llava-vicuna-13b", "ckpts/llava-1.5-vicuna-13b"

#: (model, dataset, split, category, metric) -> (value, n) for the VLMEvalKit trees.
VLMEVALKIT_EXPECTED = {
    (TG, "tinymcq", "dev", "", "accuracy"): (75.0, 4),
    (TG, "tinymcq", "test", "", "accuracy"): (75.0, 4),
    (TG, "tinymcq", "dev", "CP", "accuracy"): (75.0, 4),
    (TG, "tinymcq", "dev", "attribute", "accuracy"): (100.0, 2),
    (TG, "tinymcq", "dev", "scene", "accuracy"): (50.0, 2),
    (TG, "tinymcq", "test", "scene", "accuracy"): (50.0, 2),
    (BASE, "tinymcq", "dev", "", "accuracy"): (50.0, 4),
    (BASE, "tinymcq", "test", "attribute", "accuracy"): (100.0, 2),
    (BASE, "tinymcq", "test", "scene", "accuracy"): (0.0, 2),
    (TG, "tiny_MMBench", "dev", "", "accuracy"): (75.0, 4),
    (TG, "tiny_MMBench", "dev", "FP-S", "accuracy"): (75.0, 4),
    (BASE, "tiny_MMBench", "dev", "", "accuracy"): (50.0, 4),
    (TG, "tinyyorn", "", "", "accuracy"): (87.5, 8),
    (TG, "tinyyorn", "", "colour", "accuracy"): (100.0, 4),
    (TG, "tinyyorn", "", "hue", "accuracy"): (75.0, 4),
    (BASE, "tinyyorn", "", "", "accuracy"): (87.5, 8),
    (BASE, "tinyyorn", "", "colour", "accuracy"): (75.0, 4),
    (BASE, "tinyyorn", "", "hue", "accuracy"): (100.0, 4),
    (TG, "tinyPOPE", "", "", "f1"): (2 * 0.75 / 1.75 * 100, 8),
    (TG, "tinyPOPE", "", "", "accuracy"): (87.5, 8),
    (TG, "tinyPOPE", "", "", "precision"): (75.0, 8),
    (TG, "tinyPOPE", "", "", "recall"): (100.0, 8),
    (TG, "tinyPOPE", "", "random", "accuracy"): (200 / 3, 3),
    (TG, "tinyPOPE", "", "random", "precision"): (50.0, 3),
    (TG, "tinyPOPE", "", "random", "f1"): (200 / 3, 3),
    (TG, "tinyPOPE", "", "adversarial", "f1"): (100.0, 2),
    (TG, "tinyPOPE", "", "popular", "accuracy"): (100.0, 3),
    (BASE, "tinyPOPE", "", "", "f1"): (200 / 3, 8),
    (BASE, "tinyPOPE", "", "", "accuracy"): (62.5, 8),
    (BASE, "tinyPOPE", "", "", "precision"): (50.0, 8),
    (BASE, "tinyPOPE", "", "random", "accuracy"): (100 / 3, 3),
    (BASE, "tinyPOPE", "", "random", "f1"): (50.0, 3),
    (BASE, "tinyPOPE", "", "popular", "precision"): (50.0, 3),
    (TG, "tiny_MME", "", "", "perception"): (1850.0, None),
    (TG, "tiny_MME", "", "", "reasoning"): (800.0, None),
    (TG, "tiny_MME", "", "position", "score"): (50.0, 2),
    (TG, "tiny_MME", "", "count", "score"): (200.0, 2),
    (BASE, "tiny_MME", "", "", "perception"): (1250.0, None),
    (BASE, "tiny_MME", "", "", "reasoning"): (600.0, None),
    (BASE, "tiny_MME", "", "count", "score"): (0.0, 2),
    (BASE, "tiny_MME", "", "code_reasoning", "score"): (0.0, 2),
    (TG, "tinyvqa", "", "", "accuracy"): (87.5, 8),
    (TG, "tinyvqa", "", "primary", "accuracy"): (100.0, 4),
    (TG, "tinyvqa", "", "secondary", "accuracy"): (75.0, 4),
    (BASE, "tinyvqa", "", "", "accuracy"): (62.5, 8),
    (BASE, "tinyvqa", "", "secondary", "accuracy"): (25.0, 4),
}

#: Headline (primary) records per family with the default registry (split-less datasets only:
#: tinymcq has two splits and no declared headline, so it has none).
VLMEVALKIT_HEADLINES = {
    (TG, "tiny_MMBench"): ("accuracy", 75.0),
    (TG, "tinyyorn"): ("accuracy", 87.5),
    (TG, "tinyPOPE"): ("f1", 2 * 0.75 / 1.75 * 100),
    (TG, "tiny_MME"): ("perception", 1850.0),
    (TG, "tinyvqa"): ("accuracy", 87.5),
    (BASE, "tiny_MME"): ("perception", 1250.0),
}

#: (model, task, metric) -> value for the lmms-eval tree (n = 8, MME 28).
LMMS_EXPECTED = {
    (TG_LMMS, "tinymcq", "accuracy"): 75.0,
    (TG_LMMS, "tinyyorn", "accuracy"): 87.5,
    (TG_LMMS, "tinyvqa", "accuracy"): 87.5,
    (TG_LMMS, "tinyPOPE", "f1"): 2 * 0.75 / 1.75 * 100,
    (TG_LMMS, "tinyPOPE", "accuracy"): 87.5,
    (TG_LMMS, "tinyPOPE", "precision"): 75.0,
    (TG_LMMS, "tinyPOPE", "recall"): 100.0,
    (TG_LMMS, "tinyPOPE", "yes_ratio"): 37.5,
    (TG_LMMS, "tiny_MME", "perception"): 1850.0,
    (TG_LMMS, "tiny_MME", "reasoning"): 800.0,
    (BASE_LMMS, "tinymcq", "accuracy"): 50.0,
    (BASE_LMMS, "tinyyorn", "accuracy"): 87.5,
    (BASE_LMMS, "tinyvqa", "accuracy"): 62.5,
    (BASE_LMMS, "tinyPOPE", "f1"): 200 / 3,
    (BASE_LMMS, "tinyPOPE", "accuracy"): 62.5,
    (BASE_LMMS, "tiny_MME", "perception"): 1250.0,
    (BASE_LMMS, "tiny_MME", "reasoning"): 600.0,
}


def _index(records):
    table = {}
    for r in records:
        key = (r.model, r.dataset, r.split, r.category, r.metric)
        assert key not in table, f"duplicate record {key}"
        table[key] = r
    return table


@pytest.mark.parametrize("tree", ["vlmevalkit_flat", "vlmevalkit_upstream", "vlmevalkit_legacy"])
def test_every_expected_vlmevalkit_score_is_found(collected, tree):
    records = _index(collected[tree].records)
    for key, (value, n) in VLMEVALKIT_EXPECTED.items():
        assert key in records, f"{tree}: no record {key}"
        record = records[key]
        assert record.value == pytest.approx(value, abs=1e-9), key
        assert record.n == n, key
        assert record.toolkit == "vlmevalkit" and record.origin == ORIGIN_REPRODUCED
        assert record.scale == (SCALE_SUM if key[1] == "tiny_MME" else SCALE_PERCENT)


@pytest.mark.parametrize("tree", ["vlmevalkit_flat", "vlmevalkit_upstream", "vlmevalkit_legacy"])
def test_vlmevalkit_record_counts_and_headlines(collected, tree):
    records = collected[tree].records
    # Per model: tinymcq 2 splits x 4 columns, MMBench 3, yorn 3, POPE 4 rows x 4, MME 16, VQA 3.
    for model in (TG, BASE):
        assert sum(r.model == model for r in records) == 8 + 3 + 3 + 16 + 16 + 3
    primaries = {(r.model, r.dataset): (r.metric, r.value) for r in records if r.primary}
    for key, (metric, value) in VLMEVALKIT_HEADLINES.items():
        assert primaries[key][0] == metric and primaries[key][1] == pytest.approx(value)
    assert (TG, "tinymcq") not in primaries  # two splits, no declared headline: none chosen


def test_identity_from_presets_and_versions(collected):
    flat = collected["vlmevalkit_flat"].records
    assert {(r.model, r.variant, r.method, r.llm) for r in flat} == {
        (TG, "tg-llava-vicuna-13b", "TG-LLaVA", "Vicuna-13B"),
        (BASE, "llava-1.5-vicuna-13b", "LLaVA-1.5", "Vicuna-13B"),
    }
    assert all(r.toolkit_version.startswith("git:") and r.run_time.startswith("20") for r in flat)
    legacy = collected["vlmevalkit_legacy"].records
    # No status.json in the legacy layout: commit and date come from T20251215_G1a2b3c4d.
    assert {r.toolkit_version for r in legacy} == {"git:1a2b3c4d"}
    assert {r.run_time for r in legacy} == {"2025-12-15T00:00:00+00:00"}


def test_upstream_layout_newest_run_wins_with_a_warning_naming_both_files(toolkit_outputs, caplog):
    caplog.set_level(logging.WARNING, logger="tg_llava_eval.results.collect")
    result = collect([toolkit_outputs / "vlmevalkit_upstream"], ParseContext(read_samples=False))
    mcq = [r for r in result.records if r.model == TG and r.dataset == "tinymcq" and r.split == "dev" and not r.category]
    assert len(mcq) == 1 and mcq[0].value == 75.0  # the older run says 37.5
    assert "T20260112-174500" in mcq[0].source and mcq[0].run_time == "2026-01-12T17:45:00+00:00"
    messages = [m for m in caplog.messages if "duplicate scores" in m and "tinymcq_acc.csv" in m]
    assert messages, caplog.messages
    assert any("T20260112-174500" in m and "T20260110-093000" in m for m in messages)
    # Symlinks into the newest run are the same files: read once, never reported as skipped.
    assert result.skips == []


def test_legacy_dangling_symlinks_are_documented_skips(collected):
    skips = collected["vlmevalkit_legacy"].skips
    assert len(skips) == 12  # 6 score files x 2 models
    assert all("dangling symlink" in s.reason and "T20251215_G1a2b3c4d" in s.reason for s in skips)


def test_pickles_are_never_opened(toolkit_outputs, monkeypatch):
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("a pickle was opened")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    model_dir = toolkit_outputs / "vlmevalkit_flat" / TG
    assert list(model_dir.glob("*.pkl")), "the fixture has pickles next to the score files"
    result = collect([model_dir], ParseContext(read_samples=False))
    assert len(result.records) == 49


def test_every_expected_lmms_eval_score_is_found(collected):
    records = {(r.model, r.dataset, r.metric): r for r in collected["lmms_eval"].records}
    for key, value in LMMS_EXPECTED.items():
        assert records[key].value == pytest.approx(value, abs=1e-9), key
        assert records[key].n == (28 if key[1] == "tiny_MME" else 8)
        assert records[key].toolkit == "lmms-eval"
    # Stderr entries are not scores; every task/metric pair is one record.
    assert len(collected["lmms_eval"].records) == 2 * (1 + 1 + 1 + 5 + 2)
    assert not any("stderr" in r.metric for r in collected["lmms_eval"].records)


def test_lmms_eval_identity_from_model_args_and_manifest(collected):
    records = collected["lmms_eval"].records
    tg = {(r.variant, r.method, r.llm, r.manifest) for r in records if r.model == TG_LMMS}
    base = {(r.variant, r.method, r.llm, r.toolkit_version) for r in records if r.model == BASE_LMMS}
    assert tg == {("tg-llava-vicuna-13b", "TG-LLaVA", "Vicuna-13B", "")}  # from variant= in model_args
    assert base == {("llava-1.5-vicuna-13b", "LLaVA-1.5", "Vicuna-13B", "0.7.3")}  # from tg_llava_run.json
    manifests = {r.manifest for r in records if r.model == BASE_LMMS}
    assert len(manifests) == 1 and '"checkpoint":"ckpts/llava-1.5-vicuna-13b"' in manifests.pop()


def test_lmms_eval_run_time_is_converted_from_the_recorded_timezone(collected):
    for record in collected["lmms_eval"].records:
        stamp = record.source.rsplit("/", 1)[-1].split("_results")[0]  # 20261122_103127 in UTC (--timezone UTC)
        assert record.run_time == f"{stamp[0:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}+00:00"


def test_samples_of_both_toolkits(collected):
    flat = collected["vlmevalkit_flat"].samples
    lmms = collected["lmms_eval"].samples
    # VLMEvalKit: every prediction row (MMBench has 4 + 2 circular copies); lmms-eval: every doc.
    per_model = 8 + 6 + 8 + 8 + 28 + 8
    assert sum(s.model == TG for s in flat) == per_model
    assert sum(s.model == TG_LMMS for s in lmms) == 8 + 8 + 8 + 8 + 28
    vqa = {s.sample_id: s.prediction for s in flat if s.model == BASE and s.dataset == "tinyvqa"}
    assert vqa["1"] == "blue" and vqa["0"] == "red"  # the baseline oracle sees green as blue
    mcq = {s.sample_id: (s.prediction, s.target) for s in lmms if s.model == TG_LMMS and s.dataset == "tinymcq"}
    assert mcq["0"] == ("D", "D") and mcq["3"][0] != mcq["3"][1]  # row 3 is mislabeled


def test_status_json_fills_in_a_missing_score_file(toolkit_outputs, tmp_path):
    model_dir = tmp_path / TG
    shutil.copytree(toolkit_outputs / "vlmevalkit_flat" / TG, model_dir)
    (model_dir / f"{TG}_tinymcq_acc.csv").unlink()
    (model_dir / f"{TG}_tinyPOPE_score.csv").unlink()
    records = _index(collect([model_dir], ParseContext(read_samples=False)).records)
    for key, (value, _) in VLMEVALKIT_EXPECTED.items():
        if key[0] == TG and key[1] in ("tinymcq", "tinyPOPE"):
            assert records[key].value == pytest.approx(value), key
            assert records[key].source.endswith(f"status.json#datasets.{key[1]}.metrics")


def test_empty_ms_run_folder_is_ignored(toolkit_outputs, tmp_path):
    model_dir = tmp_path / TG
    shutil.copytree(toolkit_outputs / "vlmevalkit_flat" / TG, model_dir)
    (model_dir / "T20261122-102058").mkdir()  # ms-vlmeval creates it and leaves it empty
    result = collect([model_dir], ParseContext(read_samples=False))
    assert len(result.records) == 49 and not result.skips


def test_fixture_specs_set_benchmarks_and_headlines(collected_with_specs):
    primaries = {(r.toolkit, r.model, r.benchmark): (r.split, r.metric, r.value) for r in collected_with_specs.records if r.primary}
    assert primaries[("vlmevalkit", TG, "TinyMCQ")] == ("dev", "accuracy", 75.0)
    assert primaries[("lmms-eval", TG_LMMS, "TinyMCQ")] == ("", "accuracy", 75.0)
    assert primaries[("lmms-eval", BASE_LMMS, "TinyPOPE")][1:] == ("f1", pytest.approx(200 / 3))
    assert primaries[("vlmevalkit", BASE, "TinyMME")] == ("", "perception", 1250.0)
