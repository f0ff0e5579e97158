"""Paired statistics of one comparison: delta, bootstrap interval, exact McNemar p-value, MDE.

Pure functions on per-unit score arrays (numpy in, numbers out); what a *unit* is and how a
headline metric is computed from the toolkit's per-item scores is :mod:`.comparisons`' job.

* :func:`paired_bootstrap` — the 95 % percentile interval of ``metric(a) - metric(b)`` by a seeded
  paired bootstrap: units are resampled with replacement, *the same draw for both sides* (the
  pairing is what makes small differences measurable), optionally within strata (MME's categories,
  whose sum is the metric). :data:`BOOTSTRAP_RESAMPLES` and :data:`BOOTSTRAP_SEED` are the only
  home of the resample count and seed.
* :func:`mcnemar_exact` — the exact McNemar test for paired 0/1 scores: a two-sided binomial test
  (``scipy.stats.binomtest``) of the discordant pairs against 1/2.
* :func:`minimum_detectable_effect` — the smallest true delta a two-sided test at
  :data:`SIGNIFICANCE` detects with :data:`POWER`, from the bootstrap standard error (which
  shrinks as 1/sqrt(items)).
* :func:`average_interval` — the interval of a mean of deltas over benchmarks, from the same
  replicates (benchmarks are independent item sets, so replicate ``k`` of the mean is the mean of
  every benchmark's replicate ``k``).

Swapping the two sides negates every replicate, so the delta is negated and the interval mirrored
exactly; the McNemar p-value is symmetric.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

#: Bootstrap resamples per comparison. 10 000 puts the Monte-Carlo error of a 2.5 % / 97.5 %
#: percentile well below the 0.1-point rounding of the tables (the percentile of B draws has a
#: standard error of about sqrt(q (1 - q) / B) / f(x_q), ~0.2 % of the spread here) while one
#: comparison of a few thousand items still takes milliseconds.
BOOTSTRAP_RESAMPLES = 10_000
#: Seed of the bootstrap's ``numpy.random.Generator``: the same inputs give the same interval.
BOOTSTRAP_SEED = 20_240_917
#: Coverage of the interval.
CONFIDENCE = 0.95
#: Significance level of the marker (``*``) and of the minimum detectable effect.
SIGNIFICANCE = 0.05
#: Power of the minimum detectable effect.
POWER = 0.80
#: Draws per bootstrap chunk (bounds memory: chunk x units indices at a time).
_CHUNK = 1_000

#: A statistic of resampled units: ``(a values, b values)`` rows -> one value per row.
Statistic = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Interval:
    """A bootstrap result.

    Attributes:
        delta: The observed ``metric(a) - metric(b)`` on all units.
        low, high: The :data:`CONFIDENCE` percentile interval.
        replicates: The :data:`BOOTSTRAP_RESAMPLES` bootstrap deltas (for averages over benchmarks).
    """

    delta: float
    low: float
    high: float
    replicates: np.ndarray

    @property
    def standard_error(self) -> float:
        """Standard deviation of the replicates."""
        return float(np.std(self.replicates, ddof=1)) if len(self.replicates) > 1 else math.nan


def mean_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise mean of ``a - b`` (the statistic of an accuracy-like metric in score units)."""
    return np.mean(a - b, axis=-1)


def paired_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    *,
    statistic: Statistic = mean_difference,
    strata: np.ndarray | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> Interval:
    """Seeded paired bootstrap of ``statistic`` over units.

    Args:
        a, b: Per-unit values of the two sides, shape ``(units,)`` or ``(units, k)`` (several values
            per unit, e.g. MME's item count, score sum and pair product), aligned by unit.
        statistic: Maps resampled ``(a, b)`` arrays of shape ``(draws, units[, k])`` to one delta
            per draw; it must be antisymmetric (``statistic(b, a) == -statistic(a, b)``) for the
            mirrored interval on swapping.
        strata: Optional stratum per unit: units are resampled within their stratum (each keeps
            its size), for metrics that sum per-stratum scores. The statistic then receives the
            strata concatenated in sorted stratum order.
        resamples: Number of bootstrap draws.
        seed: Seed of ``numpy.random.default_rng``.
        confidence: Coverage of the percentile interval.

    Returns:
        The observed delta, the percentile interval and the replicates.

    Raises:
        ValueError: ``a`` and ``b`` differ in shape, or there are no units.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired arrays differ in shape: {a.shape} vs {b.shape}")
    if len(a) == 0:
        raise ValueError("a paired bootstrap needs at least one unit")
    if strata is None:
        groups = [np.arange(len(a))]
    else:
        strata = np.asarray(strata)
        groups = [np.flatnonzero(strata == s) for s in sorted(set(strata.tolist()))]
    order = np.concatenate(groups)
    observed = float(statistic(a[order][None], b[order][None])[0])
    rng = np.random.default_rng(seed)
    replicates = np.empty(resamples)
    for start in range(0, resamples, _CHUNK):
        draws = min(_CHUNK, resamples - start)
        # Same indices for both sides (the pairing), drawn within each stratum.
        index = np.concatenate([g[rng.integers(0, len(g), size=(draws, len(g)))] for g in groups], axis=1)
        replicates[start:start + draws] = statistic(a[index], b[index])
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return Interval(observed, float(low), float(high), replicates)


def mcnemar_exact(a: Sequence[float], b: Sequence[float]) -> float:
    """Exact McNemar p-value of paired 0/1 scores.

    Only discordant pairs carry information: ``n_ab`` units right on ``a`` only, ``n_ba`` right on
    ``b`` only. Under "no difference" each discordant pair falls either way with probability 1/2,
    so the p-value is the two-sided binomial test of ``n_ab`` successes in ``n_ab + n_ba`` trials
    (``scipy.stats.binomtest``); 1.0 when there is no discordant pair.

    Raises:
        ValueError: Lengths differ or a score is not 0 or 1.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired scores differ in length: {a.shape} vs {b.shape}")
    if not is_binary(a) or not is_binary(b):
        raise ValueError("McNemar's test needs 0/1 scores")
    only_a = int(np.sum((a == 1) & (b == 0)))
    only_b = int(np.sum((a == 0) & (b == 1)))
    if only_a + only_b == 0:
        return 1.0
    stats = _scipy_stats()
    return float(stats.binomtest(only_a, only_a + only_b, 0.5, alternative="two-sided").pvalue)


def is_binary(values: np.ndarray) -> bool:
    """Whether every value is 0 or 1."""
    values = np.asarray(values, dtype=float)
    return bool(np.all((values == 0) | (values == 1)))


def minimum_detectable_effect(standard_error: float, significance: float = SIGNIFICANCE, power: float = POWER) -> float:
    """Smallest true |delta| a two-sided test at ``significance`` finds with ``power``:
    ``(z_{1 - α/2} + z_{power}) · SE`` (about 2.8 standard errors).

    With 0/1 scores the standard error of a paired delta is ``sqrt(discordance / n)``, so the
    effect a benchmark can show shrinks with the square root of its item count: on 2 000 items with
    10 % discordant pairs it is about 2 points, and ±0.3 there is noise.
    """
    if not math.isfinite(standard_error):
        return math.nan
    stats = _scipy_stats()
    return float((stats.norm.ppf(1 - significance / 2) + stats.norm.ppf(power)) * standard_error)


def _scipy_stats():
    """``scipy.stats``, imported on first use: importing it runs array-API probes that touch
    ``sys.modules["torch"]``, and ``leaderboards`` must import where torch is absent or blocked."""
    from scipy import stats

    return stats


def average_interval(intervals: Sequence[Interval], confidence: float = CONFIDENCE) -> Interval:
    """Interval of the mean delta over benchmarks, from the benchmarks' own replicates.

    Raises:
        ValueError: No intervals, or replicate counts that differ.
    """
    if not intervals:
        raise ValueError("an average needs at least one interval")
    if len({len(i.replicates) for i in intervals}) != 1:
        raise ValueError("intervals with different numbers of replicates cannot be averaged")
    replicates = np.mean(np.stack([i.replicates for i in intervals]), axis=0)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return Interval(float(np.mean([i.delta for i in intervals])), float(low), float(high), replicates)


__all__ = [
    "BOOTSTRAP_RESAMPLES", "BOOTSTRAP_SEED", "CONFIDENCE", "POWER", "SIGNIFICANCE", "Interval", "average_interval",
    "is_binary", "mcnemar_exact", "mean_difference", "minimum_detectable_effect", "paired_bootstrap",
]
