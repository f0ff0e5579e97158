"""The demo's ablation report (``report/ablation_report.md``) and its accuracy-vs-chance rows.

* :func:`accuracy_rows` — the headline accuracy of each model per question kind and toolkit, with
  the kind's chance levels (uniform guess, most common answer, best answer per question category);
* :func:`ablation_table` — each switch of the TG model against the full model, as a leaderboard
  :class:`~tg_llava_eval.leaderboards.table.Table` (rendered by the leaderboards' own Markdown
  renderer, so the report and the leaderboard format numbers alike);
* :func:`ablation_markdown` — the report: that table, then the findings (mean Δ per switch against
  one answer's worth of accuracy, and which accuracies a one-sided binomial test puts above chance).

Why a difference of a few points on 60 items is not a finding: ``docs/demo.md``, "Chance levels".
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tg_llava_eval.leaderboards.table import Table

#: Significance level of the one-sided binomial test that calls an accuracy "above chance".
ABOVE_CHANCE_ALPHA = 0.05
#: Rows of the ablation table, in order: (model, switches, how it was made); the first is the
#: reference every Δ is taken against.
ABLATION_ROWS = (
    ("TG-LLaVA-tiny", "full model (TG-FOM on, TG-DP on)", "trained"),
    ("TG-LLaVA-tiny-noFOM-inference", "TG-FOM off", "inference-time switch of the trained TG model"),
    ("TG-LLaVA-tiny-noDP-inference", "TG-DP off", "inference-time switch of the trained TG model"),
    ("LLaVA-1.5-tiny", "both off (LLaVA-1.5)", "trained as such, same data and steps"),
)
#: Benchmark of the leaderboard -> question kind of the synthetic benchmark (its chance levels).
_KINDS = {"Synth-MCQ": "mcq", "Synth-YN": "yorn", "Synth-VQA": "vqa", "Synth-MCQ-LL": "mcq"}


def accuracy_rows(report: dict) -> list[dict[str, Any]]:
    """Headline accuracy of each model per question kind and toolkit, with chance levels.

    Args:
        report: The report phase's result: ``records`` (the collected score records as dicts),
            ``chance`` (the data card's ``chance_level``) and ``test_counts`` (held-out items per kind).

    Returns:
        One dict per primary record of a synthetic benchmark (``model``, ``toolkit``,
        ``benchmark``, ``accuracy``, ``chance_uniform``, ``chance_majority``,
        ``chance_question_prior`` in percent, ``n_items``), sorted by toolkit, benchmark, model.
    """
    rows = []
    for record in report["records"]:
        if not record.get("primary") or record.get("benchmark") not in _KINDS:
            continue
        kind = _KINDS[record["benchmark"]]
        rows.append({"model": record["model"], "toolkit": record["toolkit"], "benchmark": record["benchmark"],
                     # What the paired statistics need to find the record's per-item scores.
                     "variant": record.get("variant", ""), "dataset": record.get("dataset", ""),
                     "split": record.get("split", ""), "metric": record.get("metric", "accuracy"),
                     "scale": record.get("scale", "percent"),
                     "accuracy": float(record["value"]), "chance_uniform": 100 * report["chance"][kind]["uniform"],
                     "chance_majority": 100 * report["chance"][kind]["majority"],
                     "chance_question_prior": 100 * report["chance"][kind]["question_prior"],
                     "n_items": report["test_counts"][kind]})
    return sorted(rows, key=lambda r: (r["toolkit"], r["benchmark"], r["model"]))


def chance_bar(row: dict[str, Any]) -> float:
    """The accuracy a model must beat to show it reads the image: the highest chance level
    (uniform guess, most common answer, best answer per question category)."""
    return max(row["chance_uniform"], row["chance_majority"], row["chance_question_prior"])


def chance_p_value(row: dict[str, Any]) -> float:
    """One-sided binomial p-value of ``row``'s accuracy against :func:`chance_bar`: the chance that
    a guesser right with probability ``bar`` gets at least as many of the ``n_items`` right."""
    n, bar = row["n_items"], chance_bar(row) / 100
    right = round(row["accuracy"] / 100 * n)
    return sum(math.comb(n, k) * bar**k * (1 - bar) ** (n - k) for k in range(right, n + 1))


def _chance_finding(rows: list[dict[str, Any]]) -> str:
    """Which (model, benchmark) accuracies are clearly above :func:`chance_bar`; says so when none is.

    "Clearly" = a one-sided binomial test at :data:`ABOVE_CHANCE_ALPHA` over the held-out items: on
    60 items a few points above the bar is one or two lucky answers. Differences between models
    that all sit at chance measure answer priors, not the modules: the report has to say which case
    it is in.
    """
    bar_text = ("the highest of: a uniform guess, the most common answer, the best answer per question category; "
                f"one-sided binomial test, p < {ABOVE_CHANCE_ALPHA}")
    above, noise = [], []
    for r in rows:
        if r["accuracy"] <= chance_bar(r):
            continue
        p_value = chance_p_value(r)
        text = f"{r['model']} on {r['benchmark']} ({r['accuracy']:.1f} vs {chance_bar(r):.1f}, p = {p_value:.2g})"
        (above if p_value < ABOVE_CHANCE_ALPHA else noise).append(text)
    lines = []
    if above:
        lines.append(f"- Clearly above chance ({bar_text}): " + "; ".join(above) + ".")
    else:
        lines.append(f"- No model is clearly above chance on any benchmark ({bar_text}): the models have not "
                     "learned to read the images, so the differences above are differences in answer priors, "
                     "not effects of TG-FOM or TG-DP.")
    if noise:
        lines.append("- Above the chance bar but within noise: " + "; ".join(noise) + ".")
    return "\n".join(lines)


def _as_record(row: dict[str, Any]) -> dict[str, Any]:
    """An :func:`accuracy_rows` row as the records-frame row the paired statistics read."""
    return {"toolkit": row["toolkit"], "model": row["model"], "variant": row.get("variant", ""),
            "dataset": row.get("dataset", ""), "split": row.get("split", ""), "metric": row.get("metric", "accuracy"),
            "scale": row.get("scale", "percent"), "value": row["accuracy"]}


def ablation_table(rows: list[dict[str, Any]], samples: Any = None) -> Table:
    """The VLMEvalKit accuracies of :data:`ABLATION_ROWS` per benchmark, each with its Δ against
    the full model (the full model's own Δ and the cells of a missing score are missing).

    With ``samples`` (the samples frame of ``collect``, with per-item scores), every Δ gets the
    leaderboards' paired statistics (:mod:`tg_llava_eval.leaderboards.comparisons`: bootstrap
    interval, exact McNemar p-value), shown as ``Δ [low, high]`` and in the table's ``stats``.

    Args:
        rows: :func:`accuracy_rows` (rows of other toolkits are left out).
        samples: Optional samples frame.

    Returns:
        Label columns ``model``, ``switches``, ``how``; per benchmark (sorted) a value column and a
        ``<benchmark> Δ`` column, in accuracy points.
    """
    # Imported here: the leaderboards package imports matplotlib and openpyxl (the report extra),
    # which the demo's settings and phases do not need.
    import pandas as pd

    from tg_llava_eval.leaderboards.comparisons import StatsCollector
    from tg_llava_eval.leaderboards.table import FORMAT_DELTA, FORMAT_SCORE, Table

    vlm = [r for r in rows if r["toolkit"] == "vlmevalkit"]
    benchmarks = sorted({r["benchmark"] for r in vlm})
    value = {(r["model"], r["benchmark"]): r["accuracy"] for r in vlm}
    by_cell = {(r["model"], r["benchmark"]): r for r in vlm}
    reference = ABLATION_ROWS[0][0]
    collector = StatsCollector(samples) if samples is not None else None
    records = []
    for position, (model, switches, how) in enumerate(ABLATION_ROWS):
        record: dict[str, Any] = {"model": model, "switches": switches, "how": how}
        for b in benchmarks:
            v, full = value.get((model, b), math.nan), value.get((reference, b), math.nan)
            record[b] = v
            record[f"{b} Δ"] = math.nan if model == reference else v - full
            if collector is not None and model != reference and (model, b) in by_cell and (reference, b) in by_cell:
                collector.add(position, f"{b} Δ", _as_record(by_cell[(model, b)]), _as_record(by_cell[(reference, b)]),
                              toolkit="vlmevalkit", benchmark=b, variant_a=model, variant_b=reference)
        records.append(record)
    value_columns = [c for b in benchmarks for c in (b, f"{b} Δ")]
    frame = pd.DataFrame(records, columns=["model", "switches", "how", *value_columns])
    frame[value_columns] = frame[value_columns].astype(float)
    return Table(name="demo_ablation", title="Accuracy (%) per switch", frame=frame, label_columns=3,
                 formats={c: (FORMAT_DELTA if c.endswith(" Δ") else FORMAT_SCORE) for c in value_columns},
                 intervals=collector.intervals if collector is not None else {},
                 stats=collector.frame() if collector is not None else None,
                 notes=collector.notes() if collector is not None else ())


def ablation_markdown(rows: list[dict[str, Any]], *, pretrained_parts: bool = True, samples: Any = None) -> str:
    """The ablation report: :func:`ablation_table`, then the findings and how to read them.

    Args:
        rows: :func:`accuracy_rows`.
        pretrained_parts: Whether the models were assembled from the pretrained tiny CLIP and LLM
            (else random-initialised); named in the closing sentence.
        samples: The samples frame of ``collect`` (per-item scores): the Δs then carry the
            leaderboards' paired statistics; without it the findings say the Δs have none.

    Returns:
        The Markdown text, ending with a newline.
    """
    from tg_llava_eval.leaderboards.render_text import table_to_markdown

    vlm = [r for r in rows if r["toolkit"] == "vlmevalkit"]
    table = ablation_table(vlm, samples)
    benchmarks = sorted({r["benchmark"] for r in vlm})
    value = {(r["model"], r["benchmark"]): r["accuracy"] for r in vlm}
    reference = ABLATION_ROWS[0][0]
    findings = []
    sizes = sorted({r["n_items"] for r in vlm})
    # Less than one answer's worth of accuracy is not a difference.
    one_answer = 100 / sizes[0] if sizes else 0.0
    for model, switches, how in ABLATION_ROWS[1:]:
        deltas = [value[(model, b)] - value[(reference, b)] for b in benchmarks
                  if (model, b) in value and (reference, b) in value]
        if deltas:
            mean = sum(deltas) / len(deltas)
            verdict = ("lower than" if mean < -one_answer else "higher than" if mean > one_answer
                       else "within one answer of")
            findings.append(f"- {switches} ({how}): mean Δ {mean:+.1f} points over {len(deltas)} benchmarks, "
                            f"{verdict} the full model.")
    findings.append(_chance_finding(vlm))
    if samples is None:
        findings.append("- The Δs carry no confidence intervals: no per-item scores were given to the report "
                        "(pass the samples of `collect`).")
    elif table.stats is not None and len(table.stats):
        significant = table.stats[table.stats["p_value"] < ABOVE_CHANCE_ALPHA]
        findings.append(f"- Paired tests of the Δs (exact McNemar, p < {ABOVE_CHANCE_ALPHA}): "
                        + (", ".join(f"{r.variant_a} on {r.benchmark} (p = {r.p_value:.2g})" for r in significant.itertuples())
                           if len(significant) else "none differs significantly from the full model") + ".")
    item_points = ", ".join(f"{100 / n:.1f}" for n in sizes)
    start = ("assembled from a tiny CLIP and LLM pretrained on the synthetic domain, "
             "tools/pretrain_tiny_components.py" if pretrained_parts else "random-initialised")
    lines = ["# Ablation report (tiny models, synthetic benchmark, VLMEvalKit)", "",
             *table_to_markdown(table).splitlines(), "", "## Findings", "", *findings, "",
             f"Held-out items per benchmark: {', '.join(map(str, sizes))}, so one answer is {item_points} "
             "accuracy points: deltas of a few points are a few answers.",
             "Δ = row − full TG model, accuracy points. Inference-time switches reuse the trained TG weights "
             "with a module turned off (TG-DP off also removes its detail tokens from the LLM input), so they "
             "measure how much the trained model relies on that module, not what training without it gives.",
             f"These are tiny models ({start}) trained for minutes on a synthetic task; the numbers show the "
             "machinery, not the paper's claims."]
    return "\n".join(lines) + "\n"


__all__ = ["ABLATION_ROWS", "ABOVE_CHANCE_ALPHA", "ablation_markdown", "ablation_table", "accuracy_rows",
           "chance_bar", "chance_p_value"]
