"""``collect`` keeps each toolkit's own per-item score in the samples, with grouping keys.

Expected values are read off the bundled real toolkit outputs (``tests/data/toolkit_outputs``):
the TG oracle gets question 3 of ``tiny_MMBench`` wrong (VLMEvalKit ``hit`` 0 for ``g_index`` 3),
item 6 of ``tinyPOPE`` (``_auxmatch`` ``score`` False), and MME's position image ``mme_02.png``
half right.
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
from scipy.stats import binomtest

from tg_llava_eval.leaderboards import build_leaderboard
from tg_llava_eval.results import read_samples_csv, records_to_frame, samples_to_frame, write_samples_csv
from tg_llava_eval.results.errors import ResultFileError

from .conftest import fixture_registry


def _frame(collected) -> pd.DataFrame:
    return samples_to_frame(collected.samples)


def _of(frame, toolkit, model, dataset):
    return frame[(frame["toolkit"] == toolkit) & (frame["model"] == model) & (frame["dataset"] == dataset)]


def test_vlmevalkit_mcq_circular_and_yes_no_scores_are_the_toolkit_columns(collected_with_specs):
    frame = _frame(collected_with_specs)
    mmb = _of(frame, "vlmevalkit", "TG-LLaVA-Vicuna-13B", "tiny_MMBench").set_index("sample_id")
    # Circular copies (index + 1e6) carry their question's hit and the question as group.
    assert list(mmb.loc[["0", "1", "2", "3", "1000000", "1000001"], "score"]) == [1, 1, 1, 0, 1, 1]
    assert list(mmb.loc[["0", "1000000", "3"], "group"]) == ["0", "0", "3"]
    assert set(mmb["score_metric"]) == {"hit"}
    pope = _of(frame, "vlmevalkit", "TG-LLaVA-Vicuna-13B", "tinyPOPE").set_index("sample_id")
    assert list(pope["score"]) == [1, 1, 1, 1, 1, 1, 0, 1] and set(pope["score_metric"]) == {"score"}
    assert set(pope["group"]) == {""}
    vqa = _of(frame, "vlmevalkit", "TG-LLaVA-Vicuna-13B", "tinyvqa")
    assert vqa["score"].mean() == pytest.approx(0.875) and set(vqa["score_metric"]) == {"eval_score"}
    mcq = _of(frame, "vlmevalkit", "TG-LLaVA-Vicuna-13B", "tinymcq").set_index("sample_id")
    assert list(mcq["split"]) == ["dev"] * 4 + ["test"] * 4 and mcq.loc["3", "score"] == 0


def test_mme_scores_are_grouped_by_image_with_their_category(collected_with_specs):
    frame = _frame(collected_with_specs)
    for toolkit, model in (("vlmevalkit", "TG-LLaVA-Vicuna-13B"), ("lmms-eval", "ckpts/tg-llava-vicuna-13b")):
        mme = _of(frame, toolkit, model, "tiny_MME").set_index("sample_id")
        assert mme.loc["4", "group"] == mme.loc["5", "group"] == "mme_02.png"
        assert mme.loc["4", "category"] == "position" and mme.loc["4", "score"] == 0 and mme.loc["5", "score"] == 1
    # lmms-eval logs mme_perception_score only for perception questions: reasoning ones have no score.
    lmms = _of(frame, "lmms-eval", "ckpts/tg-llava-vicuna-13b", "tiny_MME")
    assert lmms["score"].notna().sum() == 20 and set(lmms["score_metric"]) == {"mme_perception_score", ""}


def test_lmms_eval_scores_are_the_headline_metric_per_sample(collected_with_specs):
    frame = _frame(collected_with_specs)
    yorn = _of(frame, "lmms-eval", "ckpts/tg-llava-vicuna-13b", "tinyyorn")
    assert set(yorn["score_metric"]) == {"accuracy"} and yorn["score"].mean() == pytest.approx(0.875)
    pope = _of(frame, "lmms-eval", "ckpts/tg-llava-vicuna-13b", "tinyPOPE")
    assert set(pope["score_metric"]) == {"pope_f1_score"}  # the headline's per-sample object's score


def test_samples_csv_round_trips_scores_and_reads_files_without_them(tmp_path, collected_with_specs):
    path = write_samples_csv(collected_with_specs.samples, tmp_path / "s.csv")
    back = read_samples_csv(path)
    assert [dataclasses.astuple(s) for s in back] == [dataclasses.astuple(s) for s in collected_with_specs.samples]
    old = pd.read_csv(path, dtype=str, keep_default_na=False).drop(columns=["score", "score_metric", "group", "category", "split"])
    old.to_csv(tmp_path / "old.csv", index=False)
    assert {s.score for s in read_samples_csv(tmp_path / "old.csv")} == {None}
    bad = pd.read_csv(path, dtype=str, keep_default_na=False)
    bad.loc[2, "score"] = "high"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ResultFileError, match=r"bad.csv: line 4: column 'score'"):
        read_samples_csv(tmp_path / "bad.csv")


def test_every_tg_vs_baseline_p_value_is_the_binomial_test_on_the_samples_scores(tmp_path, collected_with_specs):
    samples_csv = write_samples_csv(collected_with_specs.samples, tmp_path / "results.samples.csv")
    out = build_leaderboard(records_to_frame(collected_with_specs.records), tmp_path / "board", formats=("csv",),
                            samples=samples_to_frame(read_samples_csv(samples_csv)), registry=fixture_registry())
    assert_p_values_match_samples(out.files["csv"], samples_csv, minimum=7)  # 4 VLMEvalKit + 3 lmms-eval 0/1 metrics


def assert_p_values_match_samples(csv_files, samples_csv, minimum: int) -> None:
    """Every TG-vs-baseline p-value of the delta stats CSVs = exact binomial test on the discordant
    pairs, recomputed from the samples CSV's ``score`` column (per unit: the group, else the item)."""
    samples = pd.read_csv(samples_csv, dtype={"sample_id": str, "group": str}, keep_default_na=False)
    checked = 0
    for path in csv_files:
        if not (path.name.startswith("deltas_") and path.name.endswith("_stats.csv")):
            continue
        stats = pd.read_csv(path)
        for _, row in stats[stats["p_value"].notna()].iterrows():
            units = []
            for variant in (row["variant_a"], row["variant_b"]):
                mine = samples[(samples["toolkit"] == row["toolkit"]) & (samples["variant"] == variant)
                               & (samples["benchmark"] == row["benchmark"]) & (samples["score"] != "")]
                if isinstance(row["split"], str) and row["split"]:  # a split's headline: that split's items
                    mine = mine[mine["split"].isin(["", row["split"]])]
                unit = mine["group"].where(mine["group"] != "", "item:" + mine["sample_id"])
                units.append(mine.assign(unit=unit, score=mine["score"].astype(float)).groupby("unit")["score"].mean())
            a, b = units[0].align(units[1], join="inner")
            only_a, only_b = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
            expected = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
            assert row["p_value"] == pytest.approx(expected, abs=1e-12), (path.name, row["benchmark"])
            assert row["n_pairs"] == len(a)
            checked += 1
    assert checked >= minimum
