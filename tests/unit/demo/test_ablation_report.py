"""The demo's ablation report: deltas against the full model and the verdict on chance."""

from __future__ import annotations

from tg_llava_eval.demo.ablation_report import ablation_markdown, chance_p_value


def row(model: str, benchmark: str, accuracy: float, prior: float = 40.0, n_items: int = 100) -> dict:
    return {"model": model, "toolkit": "vlmevalkit", "benchmark": benchmark, "accuracy": accuracy,
            "chance_uniform": 25.0, "chance_majority": 30.0, "chance_question_prior": prior, "n_items": n_items}


def test_models_at_chance_are_reported_as_such():
    rows = [row("TG-LLaVA-tiny", "Synth-MCQ", 30.0), row("LLaVA-1.5-tiny", "Synth-MCQ", 38.0)]
    report = ablation_markdown(rows)
    assert "| LLaVA-1.5-tiny | both off (LLaVA-1.5) | trained as such, same data and steps | 38.0 | +8.0 |" in report
    assert "mean Δ +8.0 points over 1 benchmarks, higher than the full model" in report
    # 38 beats uniform (25) and majority (30) but not the per-category prior (40): still chance.
    assert "- No model is clearly above chance on any benchmark" in report
    assert "above chance (" not in report and "within noise" not in report
    assert "Held-out items per benchmark: 100, so one answer is 1.0 accuracy points" in report


def test_models_above_chance_are_named_with_the_bar_and_the_test():
    rows = [row("TG-LLaVA-tiny", "Synth-MCQ", 61.0), row("LLaVA-1.5-tiny", "Synth-MCQ", 38.0, prior=35.0)]
    report = ablation_markdown(rows)
    # 61 of 100 at p = 0.40: P(X >= 61) ~ 1.8e-5; 38 of 100 at p = 0.35: P(X >= 38) ~ 0.30.
    assert ("- Clearly above chance (the highest of: a uniform guess, the most common answer, the best answer "
            "per question category; one-sided binomial test, p < 0.05): TG-LLaVA-tiny on Synth-MCQ "
            "(61.0 vs 40.0, p = 1.8e-05).") in report
    assert "- Above the chance bar but within noise: LLaVA-1.5-tiny on Synth-MCQ (38.0 vs 35.0, p = 0.3)." in report
    assert "No model is clearly above chance" not in report


def test_binomial_p_value_matches_a_hand_computed_case():
    # 3 of 4 right when chance is 1/2: P(X >= 3) = (4 + 1) / 16.
    assert chance_p_value(row("m", "b", 75.0, prior=50.0, n_items=4) | {"chance_majority": 50.0}) == 5 / 16


def test_deltas_smaller_than_one_answer_are_not_differences():
    # 60 items: one answer = 1.7 points, so a mean delta of -1.1 is "within one answer".
    rows = [row("TG-LLaVA-tiny", "Synth-MCQ", 31.7, n_items=60), row("TG-LLaVA-tiny-noFOM-inference", "Synth-MCQ", 30.6, n_items=60),
            row("LLaVA-1.5-tiny", "Synth-MCQ", 28.3, n_items=60)]
    report = ablation_markdown(rows)
    assert "- TG-FOM off (inference-time switch of the trained TG model): mean Δ -1.1 points over 1 benchmarks, within one answer of the full model." in report
    assert "- both off (LLaVA-1.5) (trained as such, same data and steps): mean Δ -3.4 points over 1 benchmarks, lower than the full model." in report


def test_the_table_is_the_leaderboards_markdown_of_one_frame():
    from tg_llava_eval.demo.ablation_report import ablation_table
    from tg_llava_eval.leaderboards.render_text import table_to_markdown

    rows = [row("TG-LLaVA-tiny", "Synth-MCQ", 51.7), row("TG-LLaVA-tiny", "Synth-YN", 73.3),
            row("TG-LLaVA-tiny-noDP-inference", "Synth-MCQ", 33.3), row("LLaVA-1.5-tiny", "Synth-YN", 53.3),
            row("LLaVA-1.5-tiny", "Synth-MCQ-LL", 99.0) | {"toolkit": "lmms-eval"}]
    report = ablation_markdown(rows)
    assert table_to_markdown(ablation_table(rows)) in report
    assert report.startswith("# Ablation report (tiny models, synthetic benchmark, VLMEvalKit)\n\n"
                             "## Accuracy (%) per switch\n\n"
                             "| model | switches | how | Synth-MCQ | Synth-MCQ Δ | Synth-YN | Synth-YN Δ |\n"
                             "|:---|:---|:---|---:|---:|---:|---:|\n"
                             # The reference's own Δ and the cells without a score are missing (–).
                             "| TG-LLaVA-tiny | full model (TG-FOM on, TG-DP on) | trained | 51.7 | – | 73.3 | – |\n"
                             "| TG-LLaVA-tiny-noFOM-inference | TG-FOM off | inference-time switch of the trained TG model"
                             " | – | – | – | – |\n"
                             "| TG-LLaVA-tiny-noDP-inference | TG-DP off | inference-time switch of the trained TG model"
                             " | 33.3 | -18.4 | – | – |\n"
                             "| LLaVA-1.5-tiny | both off (LLaVA-1.5) | trained as such, same data and steps"
                             " | – | – | 53.3 | -20.0 |\n\n"
                             "## Findings\n\n")
    # Only VLMEvalKit rows are in the table (the lmms-eval likelihood task is not).
    assert "Synth-MCQ-LL" not in report
