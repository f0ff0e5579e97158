"""Pure table builders: records frame (+ samples frame) -> :class:`Table`.

Every builder takes the records frame of :func:`tg_llava_eval.results.records_to_frame` (never
mutated: builders work on copies, as lm-eval's ``make_table`` does) and returns a new
:class:`~tg_llava_eval.leaderboards.table.Table`. Only headline records (``primary``) enter tables;
the full detail stays in ``results.csv``. Missing scores stay missing (NaN, rendered "–"): no
table averages over missing benchmarks, and no builder drops a row or value without a note.

Builders:

* :func:`main_table` — methods x LLMs x benchmarks for one toolkit (ablation variants excluded);
* :func:`delta_table` — TG-LLaVA minus LLaVA-1.5 per LLM and benchmark;
* :func:`concurrent_table` — reported rows of other methods (marked, with citations) beside ours;
* :func:`reported_vs_reproduced` — each reproduced headline against every matching reported one,
  with the benchmark's tolerance and a flag;
* :func:`ablation_table` — variants by TG-FOM/TG-DP switch, with Δ against the full model;
* :func:`agreement_table` — VLMEvalKit vs lmms-eval: score difference and answer agreement.

Conflicts that would otherwise be resolved silently (two headline scores for one cell) are
resolved by run time (newest wins) with a warning naming both sources, the same rule as
``collect``.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable

import pandas as pd

from tg_llava_eval.leaderboards.comparisons import AGREEMENT_STATS_LABELS, Comparison, StatsCollector
from tg_llava_eval.leaderboards.statistics import average_interval, minimum_detectable_effect
from tg_llava_eval.leaderboards.table import FORMAT_COUNT, FORMAT_DELTA, FORMAT_RATE, FORMAT_SCORE, Table
from tg_llava_eval.results.benchmarks import BenchmarkRegistry
from tg_llava_eval.results.identity import MAIN_LLMS, variant_switches
from tg_llava_eval.results.manifest import RunManifest, parse_run_manifest
from tg_llava_eval.results.records import (
    ORIGIN_REPORTED,
    ORIGIN_REPRODUCED,
    SCALE_PERCENT,
    TOOLKIT_LMMS_EVAL,
    TOOLKIT_VLMEVALKIT,
)
from tg_llava_eval.variants import METHOD_LLAVA_15, METHOD_TG_LLAVA

logger = logging.getLogger(__name__)

#: Display names of the toolkits.
TOOLKIT_LABELS = {TOOLKIT_VLMEVALKIT: "VLMEvalKit", TOOLKIT_LMMS_EVAL: "lmms-eval"}
#: Method order within an LLM group: the baseline first, then ours (as in the paper's tables).
METHOD_ORDER = (METHOD_LLAVA_15, METHOD_TG_LLAVA)
#: Marks of the switch columns of the ablation table.
ON, OFF = "✓", "✗"


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------


def headlines(records: pd.DataFrame, origin: str = ORIGIN_REPRODUCED, toolkit: str | None = None) -> pd.DataFrame:
    """Copy of the headline (``primary``) records of one origin (and toolkit)."""
    mask = records["primary"].astype(bool) & (records["origin"] == origin)
    if toolkit is not None:
        mask &= records["toolkit"] == toolkit
    return records.loc[mask].copy()


def column_labels(frame: pd.DataFrame, registry: BenchmarkRegistry) -> pd.Series:
    """A unique column label per record: the benchmark, disambiguated only where needed.

    ``MMBench`` alone; ``MMBench (dev)`` / ``MMBench (test)`` when both splits are present;
    the metric and then the dataset are appended when splits alone do not separate columns.

    Returns:
        Labels aligned with ``frame``'s index.
    """
    labels = pd.Series("", index=frame.index, dtype=object)
    for benchmark, group in frame.groupby("benchmark", sort=False):
        base = registry.label(str(benchmark))
        keys = group[["dataset", "split", "metric"]].drop_duplicates()

        def distinct(columns: list[str], keys: pd.DataFrame = keys) -> int:
            return len(keys.drop_duplicates(subset=columns)) if columns else 1

        parts: list[str] = []
        for candidate in ("split", "metric", "dataset"):
            if distinct(parts) == len(keys):
                break
            if distinct(parts + [candidate]) > distinct(parts):
                parts.append(candidate)
        for index, row in group.iterrows():
            extra = [str(row[p]) for p in parts if str(row[p])]
            labels[index] = f"{base} ({', '.join(extra)})" if extra else base
    return labels


def ordered_labels(frame: pd.DataFrame, registry: BenchmarkRegistry) -> list[str]:
    """Column labels of ``frame`` (with a ``label`` column) in registry order of their benchmark."""
    order = {b: i for i, b in enumerate(registry.order(frame["benchmark"]))}
    pairs = frame[["benchmark", "label"]].drop_duplicates()
    pairs = pairs.assign(rank=pairs["benchmark"].map(order)).sort_values(["rank", "label"], kind="stable")
    return list(dict.fromkeys(pairs["label"]))


def newest_per_cell(frame: pd.DataFrame, keys: list[str], what: str) -> pd.DataFrame:
    """One row per ``keys``: the newest ``run_time`` wins; a warning names every dropped source."""
    frame = frame.sort_values(["run_time", "source"], ascending=[False, True], kind="stable")
    duplicated = frame.duplicated(keys, keep="first")
    for _, dropped in frame[duplicated].iterrows():
        kept = frame[~duplicated]
        mask = pd.Series(True, index=kept.index)
        for key in keys:
            mask &= kept[key] == dropped[key]
        winner = kept[mask].iloc[0]
        logger.warning(
            "%s: two headline scores for %s; %s (run %s) is used, %s (run %s) is not",
            what, ", ".join(f"{k}={dropped[k]}" for k in keys), winner["source"], winner["run_time"] or "?",
            dropped["source"], dropped["run_time"] or "?",
        )
    return frame[~duplicated]


#: Deltas are rounded to this many decimals to drop binary noise (69.4 - 67.1 = 2.3000000000000114).
DELTA_DECIMALS = 10


def delta(a: float, b: float) -> float:
    """``a - b`` without floating-point noise (NaN if either is NaN)."""
    return round(a - b, DELTA_DECIMALS)


def _llm_rank(llm: str) -> tuple[int, str]:
    """Sort key of an LLM: the paper's three in their order, then the others alphabetically."""
    return (MAIN_LLMS.index(llm) if llm in MAIN_LLMS else len(MAIN_LLMS), llm)


def _method_rank(method: str) -> tuple[int, str]:
    """Sort key of a method: LLaVA-1.5, TG-LLaVA, then others (concurrent methods) alphabetically."""
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def _is_ablation(variant: str, manifest: str) -> bool:
    """A TG-LLaVA variant with at least one switch off (shown in the ablation table only)."""
    info = variant_switches(variant, _manifest(manifest))
    return info is not None and info.method == METHOD_TG_LLAVA and not info.is_full_model


def _has_paper_towers(variant: str, manifest: str) -> bool:
    """The paper's CLIP towers (SigLIP variants are not the TG-LLaVA side of a Δ against LLaVA-1.5)."""
    info = variant_switches(variant, _manifest(manifest))
    return info is None or info.paper_towers


def _manifest(text: str) -> RunManifest | None:
    """The run manifest stored in a record's ``manifest`` column (``None`` if empty)."""
    if not text:
        return None
    return parse_run_manifest(json.loads(text), "<records manifest column>")


def _pivot(frame: pd.DataFrame, row_keys: list[str], labels: list[str]) -> pd.DataFrame:
    """Rows = unique ``row_keys`` in first-seen order, columns = ``labels``, cells = value."""
    wide = frame.pivot_table(index=row_keys, columns="label", values="value", aggfunc="first", sort=False)
    wide = wide.reindex(columns=labels)
    wide.columns.name = None
    return wide.reset_index()


# ---------------------------------------------------------------------------------------------
# Main table and deltas
# ---------------------------------------------------------------------------------------------


def _main_frame(records: pd.DataFrame, registry: BenchmarkRegistry, toolkit: str) -> pd.DataFrame:
    """Headline records of one toolkit without ablation variants, with a ``label`` column.

    Shared by the main, delta and concurrent tables so that they show the same numbers; two
    headlines of one model in one column (two runs) are resolved newest-first with a warning.
    """
    frame = headlines(records, ORIGIN_REPRODUCED, toolkit)
    if frame.empty:
        return frame.assign(label=pd.Series(dtype=object))
    frame = frame[[not _is_ablation(v, m) for v, m in zip(frame["variant"], frame["manifest"])]]
    frame = frame.assign(label=column_labels(frame, registry))
    return newest_per_cell(frame, ["model", "variant", "label"], f"main table ({toolkit})")


def main_table(records: pd.DataFrame, registry: BenchmarkRegistry, toolkit: str) -> Table:
    """Methods x LLMs x benchmarks for one toolkit's reproduced headline scores.

    Rows are (LLM, method, variant, model), LLMs in the paper's order (Vicuna-13B, Llama-3-8B,
    Qwen2-7B, then others), LLaVA-1.5 before TG-LLaVA. Ablation variants are left to
    :func:`ablation_table`. The best value of each benchmark column is highlighted.

    Args:
        records: Records frame.
        registry: Benchmark registry (column order and labels).
        toolkit: ``vlmevalkit`` or ``lmms-eval``.

    Returns:
        The table (possibly empty).
    """
    frame = _main_frame(records, registry, toolkit)
    labels = ordered_labels(frame, registry) if not frame.empty else []
    frame = frame.rename(columns={"llm": "LLM", "method": "Method", "variant": "Variant", "model": "Model"})
    keys = ["LLM", "Method", "Variant", "Model"]
    if frame.empty:
        wide = pd.DataFrame(columns=keys)
    else:
        wide = _pivot(frame, keys, labels)
        wide = wide.iloc[
            sorted(range(len(wide)), key=lambda i: (
                _llm_rank(wide["LLM"].iloc[i]), _method_rank(wide["Method"].iloc[i]), wide["Variant"].iloc[i], wide["Model"].iloc[i],
            ))
        ].reset_index(drop=True)
    sums = [label for label in labels if (frame.loc[frame["label"] == label, "scale"] == "sum").any()]
    notes = ["Headline score per benchmark; accuracies in %, " + (f"{', '.join(sums)} as summed scores." if sums else "no summed scores.")]
    return Table(
        name=f"main_{toolkit.replace('-', '_')}",
        title=f"Main results ({TOOLKIT_LABELS.get(toolkit, toolkit)})",
        frame=wide,
        label_columns=len(keys),
        formats={label: FORMAT_SCORE for label in labels},
        best={label: True for label in labels},
        notes=tuple(notes),
    )


#: Column of the delta tables averaging Δ over the percent-scale benchmarks.
AVERAGE = "Average"


def delta_table(
    records: pd.DataFrame, registry: BenchmarkRegistry, toolkit: str, samples: pd.DataFrame | None = None
) -> Table:
    """TG-LLaVA minus LLaVA-1.5, per LLM and benchmark, for one toolkit, with paired statistics.

    The pair of an LLM is its full TG-LLaVA variant and its LLaVA-1.5 variant (by method and LLM
    from the variant table); several models of one variant are resolved newest-first with a
    warning. A benchmark missing for either side gives a missing Δ. Each Δ gets a bootstrap
    interval and (0/1 scores) an exact McNemar p-value from the samples' per-item scores
    (:mod:`.comparisons`); without them the statistics stay empty and a note says why. With two
    or more percent-scale benchmarks, :data:`AVERAGE` is their mean Δ (empty when one is missing;
    summed scores such as MME are not averaged with percentages), its interval from the same
    bootstrap replicates.

    Returns:
        Rows (LLM, TG-LLaVA, LLaVA-1.5) + one Δ column per benchmark (+ :data:`AVERAGE`), with
        ``stats`` (one row per LLM and benchmark).
    """
    frame = _main_frame(records, registry, toolkit)
    labels = ordered_labels(frame, registry) if not frame.empty else []
    percent = [label for label in labels if (frame.loc[frame["label"] == label, "scale"] == SCALE_PERCENT).all()]
    average = len(percent) >= 2
    collector = StatsCollector(samples if samples is not None else pd.DataFrame())
    rows = []
    if not frame.empty:
        frame = newest_per_cell(frame, ["variant", "label"], f"deltas ({toolkit})")
        for llm in sorted({name for name in frame["llm"] if name}, key=_llm_rank):
            paper = pd.Series([_has_paper_towers(v, m) for v, m in zip(frame["variant"], frame["manifest"])],
                              index=frame.index, dtype=bool)
            ours = frame[(frame["llm"] == llm) & (frame["method"] == METHOD_TG_LLAVA) & paper]
            base = frame[(frame["llm"] == llm) & (frame["method"] == METHOD_LLAVA_15)]
            if ours.empty or base.empty:
                continue
            tg_variant, base_variant = ours["variant"].iloc[0], base["variant"].iloc[0]
            ours_rows, base_rows = ours.set_index("label"), base.set_index("label")
            row = {"LLM": llm, "TG-LLaVA": tg_variant, "LLaVA-1.5": base_variant}
            comparisons = {}
            for label in labels:
                row[label] = delta(ours_rows["value"].get(label, math.nan), base_rows["value"].get(label, math.nan))
                if label in ours_rows.index and label in base_rows.index:
                    comparisons[label] = collector.add(
                        len(rows), label, ours_rows.loc[label], base_rows.loc[label],
                        toolkit=toolkit, llm=llm, benchmark=label, variant_a=tg_variant, variant_b=base_variant,
                    )
            if average:
                row[AVERAGE] = _average_cell(collector, len(rows), [row[label] for label in percent],
                                             [comparisons.get(label) for label in percent],
                                             toolkit=toolkit, llm=llm, benchmark=AVERAGE, variant_a=tg_variant,
                                             variant_b=base_variant)
            rows.append(row)
    columns = [*labels, AVERAGE] if average else list(labels)
    wide = pd.DataFrame(rows, columns=["LLM", "TG-LLaVA", "LLaVA-1.5", *columns])
    wide[columns] = wide[columns].astype(float)
    notes = ["Δ = TG-LLaVA − LLaVA-1.5 in the benchmark's own units (points)."]
    if average:
        notes.append(f"{AVERAGE}: mean Δ over the percent-scale benchmarks ({', '.join(percent)}); empty when one is "
                     "missing.")
    return Table(
        name=f"deltas_{toolkit.replace('-', '_')}",
        title=f"TG-LLaVA vs LLaVA-1.5 ({TOOLKIT_LABELS.get(toolkit, toolkit)}): Δ per benchmark",
        frame=wide,
        label_columns=3,
        formats={label: FORMAT_DELTA for label in columns},
        best={label: True for label in columns},
        notes=(*notes, *collector.notes()),
        intervals=collector.intervals,
        stats=collector.frame(),
    )


def _average_cell(
    collector: StatsCollector, position: int, deltas: list[float], comparisons: list[Comparison | None], **labels: str
) -> float:
    """Mean of ``deltas`` (NaN if one is missing); its statistics from the benchmarks' replicates."""
    if not deltas or any(math.isnan(d) for d in deltas):
        collector.add_result(position, AVERAGE, "a benchmark score is missing", **labels)
        return math.nan
    value = delta(sum(deltas) / len(deltas), 0.0)
    if any(c is None for c in comparisons):
        collector.add_result(position, AVERAGE, "a benchmark has no statistics", **labels)
        return value
    interval = average_interval([c.interval for c in comparisons if c is not None])
    collector.add_result(position, AVERAGE, Comparison(
        delta=interval.delta, ci_low=interval.low, ci_high=interval.high, p_value=math.nan,
        n_pairs=sum(c.n_pairs for c in comparisons if c is not None), unit="benchmarks", kind="average",
        mde=minimum_detectable_effect(interval.standard_error), interval=interval,
    ), **labels)
    return value


# ---------------------------------------------------------------------------------------------
# Concurrent methods and reported vs reproduced
# ---------------------------------------------------------------------------------------------


def _citation_numbers(citations: Iterable[str]) -> dict[str, int]:
    """Number citations ``[1]``, ``[2]``, ... in order of first appearance (empty ones skipped)."""
    numbers: dict[str, int] = {}
    for citation in citations:
        if citation and citation not in numbers:
            numbers[citation] = len(numbers) + 1
    return numbers


def concurrent_table(records: pd.DataFrame, registry: BenchmarkRegistry, toolkit: str) -> Table:
    """Reported scores of concurrent methods and baselines beside our reproduced main rows.

    Reported rows are marked ``reported`` and carry a citation number ``[n]`` (the notes list the
    citations). Columns are benchmarks (not splits: sources word splits differently — the
    reported-vs-reproduced table shows them). Columns are the benchmarks our reproduced rows
    cover; without reproduced rows, every reported benchmark. Reported rows with no value in
    these columns are counted in a note.

    Returns:
        Rows (Method, LLM, Model, Origin, Source) + one column per benchmark.
    """
    ours = _main_frame(records, registry, toolkit).drop(columns="label")
    ours = ours.assign(Origin=f"reproduced ({TOOLKIT_LABELS.get(toolkit, toolkit)})", Source="")
    reported = headlines(records, ORIGIN_REPORTED)
    numbers = _citation_numbers(reported["citation"])
    reported = reported.assign(Origin="reported", Source=[f"[{numbers[c]}] {t}" for c, t in zip(reported["citation"], reported["toolkit"])])
    # Columns are benchmark names only: a reported "dev (mmbench_dev_20230712)" and our "dev"
    # share the MMBench column (the reported-vs-reproduced table spells the splits out).
    frame = pd.concat([ours, reported], ignore_index=True) if not ours.empty else reported.copy()
    frame["label"] = [registry.label(b) for b in frame["benchmark"]]
    reported_labels = [registry.label(b) for b in reported["benchmark"]]
    basis = frame[frame["Origin"] != "reported"] if not ours.empty else frame
    columns = ordered_labels(basis, registry) if not basis.empty else []
    keys = ["method", "llm", "model", "Origin", "Source"]
    frame = newest_per_cell(frame[frame["label"].isin(columns)], keys + ["label"], "concurrent methods")
    covered = set(zip(*(frame[k] for k in keys))) if not frame.empty else set()
    all_rows = set(zip(*(reported[k] for k in keys))) if not reported.empty else set()
    hidden = len(all_rows - covered)
    if frame.empty:
        wide = pd.DataFrame(columns=["Method", "LLM", "Model", "Origin", "Source"])
    else:
        wide = _pivot(frame, keys, columns).rename(columns={"method": "Method", "llm": "LLM", "model": "Model"})
        order = sorted(
            range(len(wide)),
            key=lambda i: (
                wide["Origin"].iloc[i] != "reported", _method_rank(wide["Method"].iloc[i]), _llm_rank(wide["LLM"].iloc[i]),
                wide["Model"].iloc[i], wide["Source"].iloc[i],
            ),
        )
        wide = wide.iloc[order].reset_index(drop=True)
    used = sorted({int(m) for s in wide.get("Source", []) for m in re.findall(r"^\[(\d+)\]", str(s))})
    by_number = {n: c for c, n in numbers.items()}
    notes = [f"[{n}] {by_number[n]}" for n in used]
    if hidden:
        notes.append(f"{hidden} reported row(s) have no score on these benchmarks and are not shown.")
    left_out = sorted(set(reported_labels) - set(columns))
    if left_out:
        notes.append(f"Reported benchmarks without a reproduced score, not shown: {', '.join(left_out)}.")
    notes.append("Reported numbers come from different toolkits and settings; see reference_scores.md before comparing.")
    return Table(
        name="concurrent",
        title=f"Concurrent methods (reported) and ours ({TOOLKIT_LABELS.get(toolkit, toolkit)})",
        frame=wide,
        label_columns=5,
        formats={c: FORMAT_SCORE for c in columns},
        best={c: True for c in columns},
        notes=tuple(notes),
    )


def reported_vs_reproduced(records: pd.DataFrame, registry: BenchmarkRegistry) -> Table:
    """Every reproduced headline against every reported headline of the same method, LLM, benchmark.

    ``Δ = reproduced − reported``; ``within`` is ``yes`` when ``|Δ| <= tolerance`` of the
    benchmark (registry), else ``no``. Pairs on different scales (a summed MME against a
    percentage) are not compared and are counted in a note.

    Returns:
        One row per pair, sorted by method, LLM, benchmark order, toolkit, source.
    """
    ours = headlines(records, ORIGIN_REPRODUCED)
    ours = ours[(ours["method"] != "") & (ours["llm"] != "")]
    theirs = headlines(records, ORIGIN_REPORTED)
    numbers = _citation_numbers(theirs["citation"])
    # Every reproduced headline meets every reported headline of the same method/LLM/benchmark:
    # several sources (official scripts, VLMEvalKit) each get their own row.
    pairs = ours.merge(theirs, on=["method", "llm", "benchmark"], suffixes=("", "_reported"))
    mismatched = pairs["scale"] != pairs["scale_reported"]
    skipped = int(mismatched.sum())
    pairs = pairs[~mismatched]
    order = {b: i for i, b in enumerate(registry.order(pairs["benchmark"]))}
    rows = []
    for _, p in pairs.iterrows():
        gap = delta(p["value"], p["value_reported"])
        tolerance = registry.tolerance(p["benchmark"])
        rows.append(
            {
                "Method": p["method"], "LLM": p["llm"], "Benchmark": registry.label(p["benchmark"]),
                "Toolkit": TOOLKIT_LABELS.get(p["toolkit"], p["toolkit"]), "Model": p["model"],
                "Split": p["split"], "Reported by": f"[{numbers[p['citation_reported']]}] {p['toolkit_reported']}",
                "Reported split / metric": f"{p['split_reported']} / {p['metric_reported']}",
                "Reproduced": p["value"], "Reported": p["value_reported"], "Δ": gap,
                "Tolerance": tolerance, "Within": "yes" if abs(gap) <= tolerance else "no",
                "_rank": (
                    _method_rank(p["method"]), _llm_rank(p["llm"]), order[p["benchmark"]], p["toolkit"], p["model"],
                    p["citation_reported"],
                ),
            }
        )
    rows.sort(key=lambda r: r["_rank"])
    for row in rows:
        row.pop("_rank")
    columns = [
        "Method", "LLM", "Benchmark", "Toolkit", "Model", "Split", "Reported by", "Reported split / metric",
        "Reproduced", "Reported", "Δ", "Tolerance", "Within",
    ]
    wide = pd.DataFrame(rows, columns=columns)
    for column in ("Reproduced", "Reported", "Δ", "Tolerance"):
        wide[column] = wide[column].astype(float)
    used = sorted({int(m) for s in wide["Reported by"] for m in re.findall(r"^\[(\d+)\]", str(s))})
    by_number = {n: c for c, n in numbers.items()}
    notes = [f"[{n}] {by_number[n]}" for n in used]
    if skipped:
        notes.append(f"{skipped} pair(s) on different scales were not compared.")
    notes.append("Δ = reproduced − reported; 'Within' compares |Δ| with the benchmark's tolerance.")
    return Table(
        name="reported_vs_reproduced",
        title="Reported vs reproduced",
        frame=wide,
        label_columns=8,
        formats={"Reproduced": FORMAT_SCORE, "Reported": FORMAT_SCORE, "Δ": FORMAT_DELTA, "Tolerance": FORMAT_SCORE},
        notes=tuple(notes),
    )


# ---------------------------------------------------------------------------------------------
# Ablations
# ---------------------------------------------------------------------------------------------


def ablation_table(
    records: pd.DataFrame, registry: BenchmarkRegistry, toolkit: str, samples: pd.DataFrame | None = None
) -> Table:
    """Variants by switch (TG-FOM, TG-DP) per LLM, with Δ against the full model.

    Variants come from the variant table or a manifest's ``switches``; records whose variant
    has neither are counted in a note. The full model (both switches on) is each LLM's reference;
    its own Δ cells are empty. An LLM without a full model gets empty Δ cells and a note.

    Each Δ gets the paired statistics of :func:`delta_table` (variant − full model).

    Returns:
        Rows (LLM, Variant, TG-FOM, TG-DP) + per benchmark a value column and a ``<label> Δ`` column,
        with ``stats`` (one row per variant and benchmark).
    """
    collector = StatsCollector(samples if samples is not None else pd.DataFrame())
    frame = headlines(records, ORIGIN_REPRODUCED, toolkit)
    infos = [variant_switches(v, _manifest(m)) for v, m in zip(frame["variant"], frame["manifest"])]
    unknown = sorted({v or m for v, m, i in zip(frame["variant"], frame["model"], infos) if i is None})
    keep = [i is not None for i in infos]
    frame = frame[keep].copy()
    infos = [i for i in infos if i is not None]
    notes = []
    rows = []
    labels: list[str] = []
    if not frame.empty:
        frame["llm"] = [i.llm for i in infos]
        frame["fom"] = [i.text_guided_mask for i in infos]
        frame["dp"] = [i.detail_perceiver for i in infos]
        frame["label"] = column_labels(frame, registry)
        frame = newest_per_cell(frame, ["variant", "label"], f"ablations ({toolkit})")
        labels = ordered_labels(frame, registry)
        for llm in sorted(set(frame["llm"]), key=_llm_rank):
            # Within an LLM: the full model first (the reference), then fewer switches on.
            group = frame[frame["llm"] == llm]
            variants = group[["variant", "fom", "dp"]].drop_duplicates("variant")
            variants = variants.assign(on=variants["fom"].astype(int) + variants["dp"].astype(int))
            variants = variants.sort_values(["on", "fom", "variant"], ascending=[False, False, True])
            full = variants[variants["fom"] & variants["dp"]]
            full_rows = group[group["variant"] == full["variant"].iloc[0]].set_index("label") if not full.empty else None
            full_values = full_rows["value"] if full_rows is not None else None
            if full.empty:
                notes.append(f"{llm}: no full model (TG-FOM and TG-DP on); Δ not computed.")
            for _, v in variants.iterrows():
                variant_rows = group[group["variant"] == v["variant"]].set_index("label")
                values = variant_rows["value"]
                row = {"LLM": llm, "Variant": v["variant"], "TG-FOM": ON if v["fom"] else OFF, "TG-DP": ON if v["dp"] else OFF}
                is_full = bool(v["fom"] and v["dp"])
                for label in labels:
                    row[label] = values.get(label, math.nan)
                    row[f"{label} Δ"] = (
                        delta(values.get(label, math.nan), full_values.get(label, math.nan))
                        if full_values is not None and not is_full else math.nan
                    )
                    if full_rows is not None and not is_full and label in variant_rows.index and label in full_rows.index:
                        collector.add(len(rows), f"{label} Δ", variant_rows.loc[label], full_rows.loc[label],
                                      toolkit=toolkit, llm=llm, benchmark=label, variant_a=v["variant"],
                                      variant_b=full["variant"].iloc[0])
                rows.append(row)
    value_columns = [c for label in labels for c in (label, f"{label} Δ")]
    wide = pd.DataFrame(rows, columns=["LLM", "Variant", "TG-FOM", "TG-DP", *value_columns])
    wide[value_columns] = wide[value_columns].astype(float)
    if unknown:
        notes.append(f"Not in the ablation: {', '.join(unknown)} (switches unknown: not a project variant and no manifest 'switches').")
    notes.append("Δ = variant − full model of the same LLM.")
    return Table(
        name=f"ablation_{toolkit.replace('-', '_')}",
        title=f"Ablations ({TOOLKIT_LABELS.get(toolkit, toolkit)}): TG-FOM and TG-DP switches",
        frame=wide,
        label_columns=4,
        formats={c: (FORMAT_DELTA if c.endswith(" Δ") else FORMAT_SCORE) for c in value_columns},
        best={label: True for label in labels},
        notes=(*notes, *collector.notes()),
        intervals=collector.intervals,
        stats=collector.frame(),
    )


# ---------------------------------------------------------------------------------------------
# Cross-toolkit agreement
# ---------------------------------------------------------------------------------------------

_SPACES = re.compile(r"\s+")


def normalize_answer(text: str) -> str:
    """Answer text for comparison: trimmed, case-folded, inner whitespace collapsed, final period dropped."""
    return _SPACES.sub(" ", str(text).strip().casefold()).rstrip(".").strip()


def answer_agreement(samples: pd.DataFrame, variant: str, benchmark: str) -> tuple[int, float]:
    """Share of samples on which the two toolkits gave the same (normalised) answer.

    Samples are joined on ``sample_id`` (VLMEvalKit ``index``, lmms-eval ``doc_id``).

    Returns:
        ``(number of samples answered by both, agreement in %)``; ``(0, nan)`` when none.
    """
    if samples.empty:
        return 0, math.nan
    mine = samples[(samples["variant"] == variant) & (samples["benchmark"] == benchmark)]
    left = mine[mine["toolkit"] == TOOLKIT_VLMEVALKIT][["sample_id", "prediction"]]
    right = mine[mine["toolkit"] == TOOLKIT_LMMS_EVAL][["sample_id", "prediction"]]
    joined = left.merge(right, on="sample_id", suffixes=("_a", "_b"))
    if joined.empty:
        return 0, math.nan
    same = [normalize_answer(a) == normalize_answer(b) for a, b in zip(joined["prediction_a"], joined["prediction_b"])]
    return len(same), 100.0 * sum(same) / len(same)


def agreement_table(records: pd.DataFrame, samples: pd.DataFrame, registry: BenchmarkRegistry) -> Table:
    """VLMEvalKit vs lmms-eval for every (variant, benchmark) both toolkits scored.

    Δ (lmms-eval − VLMEvalKit) is computed only when both headline scores have the same split,
    metric and scale; otherwise it is empty and the split/metric columns show why (e.g. a
    VLMEvalKit ``dev`` split against an lmms-eval task over every split). Answer agreement uses
    the per-sample predictions of both toolkits (see :func:`answer_agreement`) and does not need
    the scores to be comparable. Records without a variant cannot be matched across toolkits and
    are counted in a note.

    Returns:
        Rows (Variant, Benchmark, splits, metrics) + VLMEvalKit, lmms-eval, Δ, samples, agreement %.
    """
    frame = headlines(records, ORIGIN_REPRODUCED)
    frame = frame[frame["toolkit"].isin([TOOLKIT_VLMEVALKIT, TOOLKIT_LMMS_EVAL])]
    anonymous = int((frame["variant"] == "").sum())
    frame = newest_per_cell(frame[frame["variant"] != ""], ["toolkit", "variant", "benchmark"], "toolkit agreement")
    left = frame[frame["toolkit"] == TOOLKIT_VLMEVALKIT]
    right = frame[frame["toolkit"] == TOOLKIT_LMMS_EVAL]
    # One row per (variant, benchmark) scored by both toolkits; suffix _v = VLMEvalKit, _l = lmms-eval.
    pairs = left.merge(right, on=["variant", "benchmark"], suffixes=("_v", "_l"))
    order = {b: i for i, b in enumerate(registry.order(pairs["benchmark"]))}
    pairs = pairs.assign(_rank=[(v, order[b]) for v, b in zip(pairs["variant"], pairs["benchmark"])])
    pairs = pairs.sort_values("_rank", kind="stable").reset_index(drop=True)
    collector = StatsCollector(samples, AGREEMENT_STATS_LABELS)
    rows = []
    for position, p in pairs.iterrows():
        comparable = (p["split_v"], p["metric_v"], p["scale_v"]) == (p["split_l"], p["metric_l"], p["scale_l"])
        if comparable:
            side_l = {k: p[f"{k}_l"] for k in ("toolkit", "model", "dataset", "split", "metric", "scale", "value")}
            side_v = {k: p[f"{k}_v"] for k in ("toolkit", "model", "dataset", "split", "metric", "scale", "value")}
            collector.add(int(position), "Δ", {**side_l, "variant": p["variant"]}, {**side_v, "variant": p["variant"]},
                          variant=p["variant"], benchmark=registry.label(p["benchmark"]), toolkit_a=TOOLKIT_LMMS_EVAL,
                          toolkit_b=TOOLKIT_VLMEVALKIT)
        n, rate = answer_agreement(samples, p["variant"], p["benchmark"])
        rows.append(
            {
                "Variant": p["variant"], "Benchmark": registry.label(p["benchmark"]),
                "Split / metric (VLMEvalKit)": _split_metric(p["split_v"], p["metric_v"]),
                "Split / metric (lmms-eval)": _split_metric(p["split_l"], p["metric_l"]),
                "VLMEvalKit": p["value_v"], "lmms-eval": p["value_l"],
                "Δ": delta(p["value_l"], p["value_v"]) if comparable else math.nan,
                "Samples compared": n, "Answer agreement (%)": rate,
            }
        )
    columns = [
        "Variant", "Benchmark", "Split / metric (VLMEvalKit)", "Split / metric (lmms-eval)", "VLMEvalKit",
        "lmms-eval", "Δ", "Samples compared", "Answer agreement (%)",
    ]
    wide = pd.DataFrame(rows, columns=columns)
    for column in ("VLMEvalKit", "lmms-eval", "Δ", "Answer agreement (%)"):
        wide[column] = wide[column].astype(float)
    wide["Samples compared"] = wide["Samples compared"].astype("Int64")
    notes = [
        "Δ = lmms-eval − VLMEvalKit, only where both report the same split, metric and scale.",
        "Answer agreement: share of samples (joined on VLMEvalKit index = lmms-eval doc_id) with the same normalised answer.",
    ]
    if anonymous:
        notes.append(f"{anonymous} headline score(s) without a variant cannot be matched across toolkits.")
    notes.extend(collector.notes())
    return Table(
        name="toolkit_agreement",
        title="VLMEvalKit vs lmms-eval",
        frame=wide,
        label_columns=4,
        formats={
            "VLMEvalKit": FORMAT_SCORE, "lmms-eval": FORMAT_SCORE, "Δ": FORMAT_DELTA, "Samples compared": FORMAT_COUNT,
            "Answer agreement (%)": FORMAT_RATE,
        },
        notes=tuple(notes),
        intervals=collector.intervals,
        stats=collector.frame(),
    )


def _split_metric(split: str, metric: str) -> str:
    """``"dev / accuracy"``, or just the metric when there is no split."""
    return f"{split} / {metric}" if split else metric


def all_tables(records: pd.DataFrame, samples: pd.DataFrame, registry: BenchmarkRegistry) -> list[Table]:
    """Every table, in page order: per toolkit present main/deltas/ablation, then the others.

    Tables without rows are left out (the page says which sections are empty).
    """
    tables = []
    reproduced = records[records["origin"] == ORIGIN_REPRODUCED]
    toolkits = [t for t in (TOOLKIT_VLMEVALKIT, TOOLKIT_LMMS_EVAL) if (reproduced["toolkit"] == t).any()]
    for toolkit in toolkits:
        tables.append(main_table(records, registry, toolkit))
        tables.append(delta_table(records, registry, toolkit, samples))
    tables.append(concurrent_table(records, registry, toolkits[0]) if toolkits else concurrent_table(records, registry, TOOLKIT_VLMEVALKIT))
    tables.append(reported_vs_reproduced(records, registry))
    for toolkit in toolkits:
        tables.append(ablation_table(records, registry, toolkit, samples))
    tables.append(agreement_table(records, samples, registry))
    return tables


__all__ = [
    "ablation_table", "agreement_table", "all_tables", "answer_agreement", "column_labels",
    "concurrent_table", "delta_table", "headlines", "main_table", "normalize_answer", "reported_vs_reproduced",
]
