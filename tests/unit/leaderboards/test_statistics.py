"""Paired statistics: hand-computed McNemar p-values, bootstrap properties, grouping, tables."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from tg_llava_eval.leaderboards.comparisons import compare
from tg_llava_eval.leaderboards.render_text import table_to_markdown
from tg_llava_eval.leaderboards.statistics import (
    BOOTSTRAP_RESAMPLES,
    average_interval,
    mcnemar_exact,
    minimum_detectable_effect,
    paired_bootstrap,
)
from tg_llava_eval.leaderboards.tables import delta_table
from tg_llava_eval.results import BenchmarkRegistry, SamplePrediction, ScoreRecord, records_to_frame, samples_to_frame


def test_mcnemar_exact_on_a_known_table():
    # 2x2 table: both right 3, a only 1, b only 6, both wrong 2. Discordant 1 vs 6:
    # p = 2 * P(X <= 1 | n=7, 1/2) = 2 * (1 + 7) / 128 = 0.125.
    a = [1] * 3 + [1] * 1 + [0] * 6 + [0] * 2
    b = [1] * 3 + [0] * 1 + [1] * 6 + [0] * 2
    assert mcnemar_exact(a, b) == pytest.approx(0.125, abs=1e-12)
    assert mcnemar_exact(b, a) == pytest.approx(0.125, abs=1e-12)
    # 0 vs 5 discordant: 2 / 32 = 0.0625; no discordant pair: 1.
    assert mcnemar_exact([1] * 5, [0] * 5) == pytest.approx(0.0625, abs=1e-12)
    assert mcnemar_exact([1, 0, 1], [1, 0, 1]) == 1.0
    with pytest.raises(ValueError, match="0/1"):
        mcnemar_exact([0.5, 1], [1, 1])


def test_bootstrap_contains_the_observed_delta_and_is_reproducible_by_seed():
    rng = np.random.default_rng(1)
    a = (rng.random(200) < 0.7).astype(float) * 100
    b = (rng.random(200) < 0.6).astype(float) * 100
    first = paired_bootstrap(a, b)
    assert first.delta == pytest.approx(np.mean(a - b))
    assert first.low < first.delta < first.high
    assert len(first.replicates) == BOOTSTRAP_RESAMPLES
    again = paired_bootstrap(a, b)
    assert (again.low, again.high) == (first.low, first.high)
    np.testing.assert_array_equal(again.replicates, first.replicates)
    other = paired_bootstrap(a, b, seed=7)
    assert not np.array_equal(other.replicates, first.replicates)


def test_swapping_the_models_negates_the_delta_and_mirrors_the_interval():
    a = np.array([1, 1, 0, 1, 0, 1, 1, 1, 0, 1], dtype=float) * 100
    b = np.array([0, 1, 0, 0, 1, 1, 0, 1, 0, 0], dtype=float) * 100
    forward, backward = paired_bootstrap(a, b), paired_bootstrap(b, a)
    assert backward.delta == -forward.delta == -30.0  # 7 - 4 of 10 right
    assert backward.low == pytest.approx(-forward.high, abs=1e-9)
    assert backward.high == pytest.approx(-forward.low, abs=1e-9)
    np.testing.assert_array_equal(backward.replicates, -forward.replicates)


def test_identical_scores_give_a_zero_interval_and_mde_grows_with_fewer_items():
    same = paired_bootstrap(np.ones(10), np.ones(10))
    assert (same.delta, same.low, same.high) == (0.0, 0.0, 0.0)
    # MDE = (z_0.975 + z_0.8) SE = (1.95996 + 0.84162) SE.
    assert minimum_detectable_effect(1.0) == pytest.approx(2.80158, abs=1e-4)
    assert average_interval([same, same]).delta == 0.0


def _sample(model, variant, sample_id, score, group="", category="", dataset="MMBench_DEV_EN", benchmark="MMBench"):
    return SamplePrediction(model, variant, "vlmevalkit", benchmark, dataset, str(sample_id), "A", "A", "p.xlsx",
                            score=float(score), score_metric="hit", group=group, category=category)


def _record(model, variant, method, value, benchmark="MMBench", dataset="MMBench_DEV_EN", metric="accuracy", scale="percent"):
    return _score_record(model, variant, method, value, benchmark, dataset, metric, scale)


def _score_record(model, variant, method, value, benchmark, dataset, metric, scale):
    return ScoreRecord(model=model, variant=variant, method=method, llm="Vicuna-13B", toolkit="vlmevalkit",
                       toolkit_version="", benchmark=benchmark, dataset=dataset, split="", category="", metric=metric,
                       value=float(value), scale=scale, higher_is_better=True, n=None, primary=True,
                       origin="reproduced", source=f"{model}.csv")


def _row(*args, **kwargs) -> dict:
    """A records-frame row (what the table builders hand to ``compare``)."""
    return dataclasses.asdict(_record(*args, **kwargs))


def test_mmbench_circular_passes_of_one_question_are_one_unit():
    # Two questions, each with a base row and a circular copy carrying the question's hit
    # (VLMEvalKit's g_index). TG gets q0 right, the baseline none: accuracy 50 vs 0 over 2 groups.
    samples = []
    for model, variant, hits in (("TG", "tg-llava-vicuna-13b", (1, 0)), ("Base", "llava-1.5-vicuna-13b", (0, 0))):
        for q, hit in enumerate(hits):
            samples += [_sample(model, variant, q, hit, group=str(q)), _sample(model, variant, q + 1_000_000, hit, group=str(q))]
    frame = samples_to_frame(samples)
    result = compare(_row("TG", "tg-llava-vicuna-13b", "TG-LLaVA", 50.0), _row("Base", "llava-1.5-vicuna-13b", "LLaVA-1.5", 0.0), frame)
    assert result.unit == "group" and result.n_pairs == 2  # not 4 rows
    assert result.delta == 50.0
    assert result.p_value == 1.0  # one discordant group: 2 * P(X <= 0 | n=1) capped at 1
    # Items alone (no group) would be 4 units: the grouping is what makes the interval match the metric.
    ungrouped = samples_to_frame([s.__class__(**{**s.__dict__, "group": ""}) for s in samples])
    assert compare(_row("TG", "tg-llava-vicuna-13b", "TG-LLaVA", 50.0), _row("Base", "llava-1.5-vicuna-13b", "LLaVA-1.5", 0.0), ungrouped).n_pairs == 4


def test_scores_that_do_not_reproduce_the_headline_give_no_statistics():
    frame = samples_to_frame([_sample("TG", "tg", 0, 1), _sample("Base", "base", 0, 0)])
    reason = compare(_row("TG", "tg", "TG-LLaVA", 70.0), _row("Base", "base", "LLaVA-1.5", 0.0), frame)
    assert reason == "per-item scores of TG (vlmevalkit, MMBench_DEV_EN) give 100, not the headline 70"
    assert compare(_row("TG", "tg", "TG-LLaVA", 85.0, metric="f1"), _row("Base", "base", "LLaVA-1.5", 80.0, metric="f1"),
                   frame) == "f1 is not computed from per-item scores"


def test_mme_sum_from_image_pairs_is_bootstrapped_within_categories():
    # One category, two images: TG gets all 4 questions right (acc 100 + acc+ 100 = 200), the
    # baseline 3 of 4 with one image half right (acc 75 + acc+ 50 = 125).
    scores = {"TG": (1, 1, 1, 1), "Base": (1, 1, 1, 0)}
    samples = [_sample(m, m.lower(), i, s, group=f"img{i // 2}", category="color", dataset="MME", benchmark="MME")
               for m, values in scores.items() for i, s in enumerate(values)]
    result = compare(_row("TG", "tg", "TG-LLaVA", 200.0, "MME", "MME", "perception", "sum"),
                     _row("Base", "base", "LLaVA-1.5", 125.0, "MME", "MME", "perception", "sum"), samples_to_frame(samples))
    assert result.delta == pytest.approx(75.0) and result.n_pairs == 2 and result.unit == "group"
    assert math.isnan(result.p_value)  # not a 0/1 metric: no McNemar
    # Resampling the two images: both the good one (Δ 0), both the bad one (Δ 150), or one each (Δ 75).
    assert set(np.round(result.interval.replicates, 9)) <= {0.0, 75.0, 150.0}
    assert (result.ci_low, result.ci_high) == (0.0, 150.0)


def test_delta_table_cells_read_delta_and_interval_with_a_marker():
    # 20 items: TG right on all, the baseline on 10 -> Δ +50, McNemar p = 2 / 2^10 < 0.05.
    records, samples = [], []
    for model, variant, method, right in (("TG-LLaVA-Vicuna-13B", "tg-llava-vicuna-13b", "TG-LLaVA", 20),
                                          ("LLaVA-1.5-Vicuna-13B-TG", "llava-1.5-vicuna-13b", "LLaVA-1.5", 10)):
        records.append(_record(model, variant, method, 100.0 * right / 20))
        samples += [_sample(model, variant, i, 1 if i < right else 0) for i in range(20)]
    table = delta_table(records_to_frame(records), BenchmarkRegistry(), "vlmevalkit", samples_to_frame(samples))
    stats = table.stats.iloc[0]
    assert (stats["delta"], stats["n_pairs"], stats["test"]) == (50.0, 20, "McNemar exact")
    assert stats["p_value"] == pytest.approx(2 / 2**10)
    low, high, significant = table.intervals[(0, "MMBench")]
    assert significant and low <= 50.0 <= high
    assert f"| +50.0 [{low:+.1f}, {high:+.1f}]* |" in table_to_markdown(table)
    assert any("10,000 resamples" in n and "McNemar" in n for n in table.notes)


def test_records_without_per_item_scores_keep_their_table_with_empty_statistics():
    records = [_record("TG-LLaVA-Vicuna-13B", "tg-llava-vicuna-13b", "TG-LLaVA", 70.0),
               _record("LLaVA-1.5-Vicuna-13B-TG", "llava-1.5-vicuna-13b", "LLaVA-1.5", 68.0)]
    table = delta_table(records_to_frame(records), BenchmarkRegistry(), "vlmevalkit", pd.DataFrame())
    assert table.frame["MMBench"].iloc[0] == pytest.approx(2.0)
    assert not table.intervals
    row = table.stats.iloc[0]
    assert math.isnan(row["delta"]) and pd.isna(row["n_pairs"]) and row["note"].startswith("no per-item scores")
    assert any(n.startswith("No statistics: the samples carry no usable per-item scores") for n in table.notes)
    assert "| +2.0 |" in table_to_markdown(table)
