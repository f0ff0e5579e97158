"""The demo's ablation report: deltas against the full model and the verdict on chance."""

from __future__ import annotations

from tg_llava_eval.demo import _ablation_markdown


def row(model: str, benchmark: str, accuracy: float, prior: float = 40.0) -> dict:
    return {"model": model, "toolkit": "vlmevalkit", "benchmark": benchmark, "accuracy": accuracy,
            "chance_uniform": 25.0, "chance_majority": 30.0, "chance_question_prior": prior}


def test_models_at_chance_are_reported_as_such():
    rows = [row("TG-LLaVA-tiny", "Synth-MCQ", 30.0), row("LLaVA-1.5-tiny", "Synth-MCQ", 38.0)]
    report = _ablation_markdown(rows, {})
    assert "| LLaVA-1.5-tiny | both off (LLaVA-1.5) | trained as such, same data and steps | 38.0 | +8.0 |" in report
    assert "mean Δ +8.0 points over 1 benchmarks, higher than the full model" in report
    # 38 beats uniform (25) and majority (30) but not the per-category prior (40): still chance.
    assert "- No model beats chance on any benchmark" in report
    assert "Above chance" not in report


def test_models_above_chance_are_named_with_the_bar():
    rows = [row("TG-LLaVA-tiny", "Synth-MCQ", 61.0), row("LLaVA-1.5-tiny", "Synth-MCQ", 38.0, prior=35.0)]
    report = _ablation_markdown(rows, {})
    assert ("- Above chance (the highest of: a uniform guess, the most common answer, the best answer per "
            "question category): TG-LLaVA-tiny on Synth-MCQ (61.0 vs 40.0); LLaVA-1.5-tiny on Synth-MCQ "
            "(38.0 vs 35.0).") in report
    assert "No model beats chance" not in report
