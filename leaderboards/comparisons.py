"""Paired comparisons of two headline scores from the toolkits' own per-item scores.

A table cell such as "TG-LLaVA − LLaVA-1.5 on MMBench" compares two headline records. This module
finds the per-item scores behind each (the samples frame's ``score`` column, written by
``collect`` from the toolkit's own per-item files, see ``docs/results.md``), pairs the items both
sides answered, and hands per-unit arrays to :mod:`.statistics`:

* **Units.** Items are joined on ``sample_id``; a unit is the item's ``group`` when the metric
  groups items (VLMEvalKit's circular MMBench question, MME's image), else the item.
* **Metric from items** (:data:`ITEM_METRICS`): ``mean`` — percent-scale headlines are the mean of
  per-unit scores × 100 (a unit's score is the mean of its items: every pass of a circular
  question carries the question's ``hit``); ``mme`` — MME sums, per category, ``acc + acc+`` (both
  in %, acc+ = share of images with every question right), bootstrapped within categories.
  Other headlines (POPE's F1, ...) are not averages of per-item scores: no statistics, and the
  reason is returned.
* **Consistency check.** Each side's per-item scores must reproduce its headline value (to
  :data:`REPRODUCE_TOLERANCE`); otherwise the scores are not the ones behind the number and no
  statistics are given (the reason names both numbers).
* **p-value.** Exact McNemar when every unit score is 0 or 1 (``mean`` metrics), else none.

Every function returns either a :class:`Comparison` or the reason there is none: a table never
drops a cell silently.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tg_llava_eval.leaderboards.statistics import (
    BOOTSTRAP_RESAMPLES,
    SIGNIFICANCE,
    Interval,
    is_binary,
    mcnemar_exact,
    minimum_detectable_effect,
    paired_bootstrap,
)
from tg_llava_eval.results.benchmarks import MME_SUM_CATEGORIES
from tg_llava_eval.results.records import SCALE_PERCENT, SCALE_SUM

#: How a headline is computed from per-unit scores, by kind (see the module docstring).
ITEM_METRICS = {
    "mean": "mean of per-unit scores x 100 (accuracy-like, percent scale)",
    "mme": "MME sum over categories of acc + acc+ (acc+ per image), bootstrapped within categories",
}
#: Largest |headline - value from per-item scores| accepted as "the same number" (relative to
#: max(1, |headline|)): the toolkits write the aggregate with full float precision.
REPRODUCE_TOLERANCE = 1e-6
#: Columns of the samples frame that identify one model's answers to one dataset.
_SIDE_KEYS = ("toolkit", "model", "variant", "dataset")


@dataclass(frozen=True)
class Comparison:
    """Paired statistics of ``a - b`` on one benchmark.

    Attributes:
        delta: ``metric(a) - metric(b)`` over the paired units (equals the table's Δ when both
            sides answered the same items).
        ci_low, ci_high: The bootstrap interval.
        p_value: Exact McNemar p-value (0/1 unit scores), NaN otherwise.
        n_pairs: Paired units (items, or groups).
        unit: ``item`` or ``group``.
        kind: Key of :data:`ITEM_METRICS`.
        mde: Minimum detectable effect (see :func:`.statistics.minimum_detectable_effect`).
        interval: The bootstrap result (replicates feed the average over benchmarks).
    """

    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    n_pairs: int
    unit: str
    kind: str
    mde: float
    interval: Interval

    @property
    def significant(self) -> bool:
        """Whether the p-value is below :data:`.statistics.SIGNIFICANCE`."""
        return not math.isnan(self.p_value) and self.p_value < SIGNIFICANCE


def item_metric_kind(record: Mapping) -> str | None:
    """The :data:`ITEM_METRICS` kind of a headline record, ``None`` if its metric is not one."""
    if record["scale"] == SCALE_PERCENT and record["metric"] in ("accuracy", "score", "rating"):
        return "mean"
    if record["scale"] == SCALE_SUM and record["metric"] in MME_SUM_CATEGORIES:
        return "mme"
    return None


def side_items(samples: pd.DataFrame, record: Mapping) -> pd.DataFrame:
    """The scored samples behind a headline record (same toolkit, model, variant, dataset)."""
    if samples.empty or "score" not in samples.columns:
        return samples.iloc[0:0]
    mask = pd.Series(True, index=samples.index)
    for key in _SIDE_KEYS:
        mask &= samples[key] == record[key]
    mine = samples[mask]
    if record.get("split") and "split" in mine.columns:
        # Items of another split are not behind a split's headline (an item without a split is).
        mine = mine[(mine["split"] == "") | (mine["split"] == record["split"])]
    return mine[mine["score"].notna()]


def compare(record_a: Mapping, record_b: Mapping, samples: pd.DataFrame) -> Comparison | str:
    """Paired statistics of ``record_a - record_b`` (two headline records of one benchmark).

    Args:
        record_a, record_b: Rows of the records frame (``toolkit``, ``model``, ``variant``,
            ``dataset``, ``metric``, ``scale``, ``value``).
        samples: The samples frame (``score``, ``group``, ``category`` columns; may be empty).

    Returns:
        The comparison, or a short reason why there is none (no per-item scores, a metric that
        is not an average of them, scores that do not reproduce the headline, no common items).
    """
    kind = item_metric_kind(record_a)
    if kind is None or kind != item_metric_kind(record_b):
        return f"{record_a['metric']} is not computed from per-item scores"
    items_a, items_b = side_items(samples, record_a), side_items(samples, record_b)
    for record, items in ((record_a, items_a), (record_b, items_b)):
        if items.empty:
            return f"{NO_SCORES} for {record['model']} ({record['toolkit']}, {record['dataset']})"
        from_items = _metric(kind, _units(items.assign(score_a=items["score"], score_b=items["score"]), kind, record["metric"]))
        headline = float(record["value"])
        if abs(from_items - headline) > REPRODUCE_TOLERANCE * max(1.0, abs(headline)):
            return (f"per-item scores of {record['model']} ({record['toolkit']}, {record['dataset']}) give "
                    f"{from_items:.4g}, not the headline {headline:.4g}")
    joined = items_a.merge(items_b, on="sample_id", suffixes=("_a", "_b"))
    if joined.empty:
        return "no item answered by both"
    joined = joined.assign(
        score=joined["score_a"],
        group=np.where(joined["group_a"] != "", joined["group_a"], joined["group_b"]),
        category=np.where(joined["category_a"] != "", joined["category_a"], joined["category_b"]),
    )
    units = _units(joined, kind, str(record_a["metric"]))
    grouped = bool((joined["group"] != "").any())
    if kind == "mean":
        a, b = units["score_a"].to_numpy(), units["score_b"].to_numpy()
        interval = paired_bootstrap(a * 100.0, b * 100.0)
        p_value = mcnemar_exact(a, b) if is_binary(a) and is_binary(b) else math.nan
    else:
        total = _mme_total(units["category"].to_numpy())

        def statistic(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            return total(x) - total(y)

        columns_a = ["n", "sum_a", "product_a"]
        columns_b = ["n", "sum_b", "product_b"]
        interval = paired_bootstrap(units[columns_a].to_numpy(float), units[columns_b].to_numpy(float),
                                    statistic=statistic, strata=units["category"].to_numpy())
        p_value = math.nan
    return Comparison(
        delta=interval.delta, ci_low=interval.low, ci_high=interval.high, p_value=p_value, n_pairs=len(units),
        unit="group" if grouped else "item", kind=kind, mde=minimum_detectable_effect(interval.standard_error),
        interval=interval,
    )


def _units(items: pd.DataFrame, kind: str, metric: str) -> pd.DataFrame:
    """Per-unit values of paired items (columns ``score_a``, ``score_b``, ``group``, ``category``).

    ``mean``: one row per unit with the mean score of each side. ``mme``: one row per (category,
    image) of the sum ``metric``'s categories, with the item count ``n``, each side's score sum and
    score product (acc+ of an image is the product of its 0/1 scores, as VLMEvalKit's
    ``MME_rating`` computes it), in sorted category order (the bootstrap's strata order).
    """
    unit = np.where(items["group"] != "", items["group"], "item:" + items["sample_id"].astype(str))
    frame = items.assign(unit=unit)
    if kind == "mean":
        return frame.groupby("unit", sort=True).agg(score_a=("score_a", "mean"), score_b=("score_b", "mean")).reset_index()
    frame = frame[frame["category"].isin(MME_SUM_CATEGORIES[metric])]
    grouped = frame.groupby(["category", "unit"], sort=True)
    return grouped.agg(
        n=("score_a", "size"), sum_a=("score_a", "sum"), sum_b=("score_b", "sum"),
        product_a=("score_a", "prod"), product_b=("score_b", "prod"),
    ).reset_index()


def _metric(kind: str, units: pd.DataFrame) -> float:
    """The headline value of side ``a`` computed from its units (the consistency check)."""
    if kind == "mean":
        return float(units["score_a"].mean() * 100.0)
    total = _mme_total(units["category"].to_numpy())
    return float(total(units[["n", "sum_a", "product_a"]].to_numpy(float)[None])[0])


def _mme_total(categories: np.ndarray):
    """MME sum over units sorted by category: per category ``100 Σ sums / Σ n`` (acc) plus
    ``100 mean(products)`` (acc+), summed; maps ``(draws, units, 3)`` arrays to one value per draw."""
    spans = [np.flatnonzero(categories == c) for c in sorted(set(categories.tolist()))]

    def total(x: np.ndarray) -> np.ndarray:
        out = np.zeros(x.shape[0])
        for index in spans:
            part = x[:, index[0]:index[-1] + 1]
            out += 100.0 * part[..., 1].sum(axis=1) / part[..., 0].sum(axis=1) + 100.0 * part[..., 2].mean(axis=1)
        return out

    return total


#: Start of the reason "no per-item scores for <model> (...)".
NO_SCORES = "no per-item scores"
#: Columns of a ``<table>_stats`` frame: the pair's labels, then the numbers (``toolkit_a`` /
#: ``toolkit_b`` replace ``variant_a`` / ``variant_b`` for the toolkit agreement table).
STATS_LABELS = ("toolkit", "llm", "benchmark", "split", "variant_a", "variant_b")
AGREEMENT_STATS_LABELS = ("variant", "benchmark", "split", "toolkit_a", "toolkit_b")
STATS_NUMBERS = ("delta", "ci_low", "ci_high", "p_value", "n_pairs", "mde")
STATS_TRAILER = ("unit", "test", "note")


class StatsCollector:
    """Collects one table's comparisons: the long-format rows, the cells' intervals and notes.

    Args:
        samples: The samples frame.
        labels: The label columns of the stats frame (:data:`STATS_LABELS` or
            :data:`AGREEMENT_STATS_LABELS`).
    """

    def __init__(self, samples: pd.DataFrame, labels: tuple[str, ...] = STATS_LABELS) -> None:
        self.samples = samples
        self.labels = labels
        self.rows: list[dict] = []
        self.intervals: dict[tuple[int, str], tuple[float, float, bool]] = {}
        self.reasons: dict[str, list[str]] = {}
        self.mde: dict[str, tuple[float, int]] = {}

    def add(self, position: int, column: str, record_a: Mapping, record_b: Mapping, **labels: str) -> Comparison | None:
        """Compare ``record_a - record_b`` for the cell ``(position, column)``; one stats row either way."""
        result = compare(record_a, record_b, self.samples)
        labels.setdefault("split", str(record_a.get("split") or ""))
        return self.add_result(position, column, result, **labels)

    def add_result(self, position: int, column: str, result: Comparison | str, **labels: str) -> Comparison | None:
        """Record an already computed comparison (or the reason there is none)."""
        row: dict = {key: labels.get(key, "") for key in self.labels}
        if isinstance(result, str):
            row.update({key: math.nan for key in STATS_NUMBERS})
            row.update(unit="", test="", note=result)
            reasons = self.reasons.setdefault(str(labels.get("benchmark", column)), [])
            if result not in reasons:
                reasons.append(result)
            self.rows.append(row)
            return None
        row.update(delta=result.delta, ci_low=result.ci_low, ci_high=result.ci_high, p_value=result.p_value,
                   n_pairs=result.n_pairs, mde=result.mde, unit=result.unit,
                   test="McNemar exact" if not math.isnan(result.p_value) else "", note="")
        self.rows.append(row)
        self.intervals[(position, column)] = (result.ci_low, result.ci_high, result.significant)
        benchmark = str(labels.get("benchmark", column))
        if not math.isnan(result.mde):
            self.mde[benchmark] = max(self.mde.get(benchmark, (0.0, 0)), (result.mde, result.n_pairs))
        return result

    def frame(self) -> pd.DataFrame:
        """The long-format stats frame (columns: labels, :data:`STATS_NUMBERS`, :data:`STATS_TRAILER`)."""
        columns = [*self.labels, *STATS_NUMBERS, *STATS_TRAILER]
        frame = pd.DataFrame(self.rows, columns=columns)
        for column in STATS_NUMBERS:
            frame[column] = frame[column].astype(float)
        frame["n_pairs"] = frame["n_pairs"].astype("Int64")
        return frame

    def notes(self) -> tuple[str, ...]:
        """The method note, the minimum detectable effects, and why cells have no statistics."""
        if not self.rows:
            return ()
        notes = [method_note()]
        if self.mde:
            effects = ", ".join(f"{b} ±{m:.1f} ({n} units)" for b, (m, n) in self.mde.items())
            notes.append(f"Minimum detectable effect (80 % power, two-sided α = 0.05, from the item count and the "
                         f"paired spread; the largest per benchmark): {effects}.")
        if not self.intervals:
            # Nothing could be compared (reported numbers, score-only trees, samples without scores).
            other = sorted({r for reasons in self.reasons.values() for r in reasons if not r.startswith(NO_SCORES)})
            notes.append("No statistics: the samples carry no usable per-item scores for these records (reported "
                         "numbers, score-only output trees or samples collected without scores), so the statistics "
                         "cells are empty" + (f"; also: {'; '.join(other)}" if other else "") + ".")
            return tuple(notes)
        for benchmark, reasons in self.reasons.items():
            more = f" (and {len(reasons) - 1} more, see the stats CSV)" if len(reasons) > 1 else ""
            notes.append(f"No statistics for {benchmark}: {reasons[0]}{more}.")
        return tuple(notes)


def method_note() -> str:
    """The table note saying which test and how many resamples."""
    return (f"Statistics: Δ [95 % CI] from a seeded paired bootstrap ({BOOTSTRAP_RESAMPLES:,} resamples) over the "
            "items both sides answered, over groups where the metric groups them (circular MMBench questions, "
            "MME images within categories); * = p < 0.05 in an exact McNemar test (two-sided binomial test on "
            "the discordant pairs) for 0/1 scores. Details in csv/<table>_stats.csv.")


__all__ = [
    "AGREEMENT_STATS_LABELS", "ITEM_METRICS", "REPRODUCE_TOLERANCE", "STATS_LABELS", "STATS_NUMBERS", "Comparison",
    "StatsCollector", "compare", "item_metric_kind", "method_note", "side_items",
]
