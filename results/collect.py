"""Collect every score under some paths into records: discovery, dispatch, duplicates.

``collect(paths)`` walks files and folders, recognises the two toolkits' outputs by file name
and folder structure (never by guessing from content of unknown files), hands each unit to its
parser and merges the results:

* **Discovery.** lmms-eval: files named ``<date_id>_results.json`` (or ``results_<time>.json``).
  VLMEvalKit: folders ``work_dir/<model>`` holding ``<model>_<dataset>_{acc,score,rating}.{csv,json}``
  or ``status.json`` directly or in run folders ``T…/``. A path under which neither toolkit's output
  is found is an error ("unknown layout"), as is a score-like file (``*_acc.csv``, ``*_score.csv``)
  whose name does not start with its folder's model name.
* **Errors.** A malformed file raises :class:`ResultFileError` (file + problem). With
  ``strict=False`` it becomes a :class:`Skip` instead, logged as a warning and returned.
* **Duplicates.** The same score (same :meth:`ScoreRecord.key`) from two runs: the newest
  ``run_time`` wins and a warning names both files. The same file reached twice (a symlink, a
  path given twice) is read once.
* **Identity.** Models no rule identifies keep an empty variant, with one warning per model. A
  model the user mapping gives a display name (``name`` column, :mod:`.identity`) is recorded
  under that name; :attr:`CollectResult.renamed` keeps its toolkit name (logged once per model).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from tg_llava_eval.results.errors import ResultFileError, Skip
from tg_llava_eval.results.lmms_eval_outputs import is_results_file, parse_results_file
from tg_llava_eval.results.parsing import ParseContext, ParsedOutput
from tg_llava_eval.results.records import SamplePrediction, ScoreRecord
from tg_llava_eval.results.vlmevalkit_outputs import (
    SCORE_FILE,
    RunUnit,
    is_vlmevalkit_file,
    model_dir_of,
    parse_unit,
    plan_model_dir,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: A progress wrapper: ``progress(iterable, total)`` yields the same items (e.g. a tqdm bar).
Progress = Callable[[Iterable[T], int], Iterable[T]]


@dataclass
class CollectResult:
    """Everything :func:`collect` found.

    Attributes:
        records: Deduplicated scores, in discovery order.
        samples: Deduplicated per-sample predictions.
        skips: Files or parts deliberately not read (each was logged as a warning).
        duplicates: ``(kept source, dropped source)`` pairs resolved by "newest wins".
        renamed: ``{(toolkit, toolkit model name): display name}`` for every model the user
            mapping's ``name`` column renamed.
    """

    records: list[ScoreRecord] = field(default_factory=list)
    samples: list[SamplePrediction] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    renamed: dict[tuple[str, str], str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Unit:
    """One thing to parse: an lmms-eval results file or a VLMEvalKit run unit."""

    label: Path
    results_file: Path | None = None
    run_unit: RunUnit | None = None


def collect(
    paths: Sequence[str | Path],
    ctx: ParseContext | None = None,
    *,
    strict: bool = True,
    progress: Progress | None = None,
) -> CollectResult:
    """Parse every toolkit output under ``paths``.

    Args:
        paths: Files or folders (work dirs, output paths, single score/results files).
        ctx: Registry, model mapping, whether to read samples (defaults if ``None``).
        strict: Raise on malformed files (default); ``False`` = skip them with a warning.
        progress: Optional wrapper around the unit iterator (the CLI passes a tqdm bar).

    Returns:
        Records, samples, skips and resolved duplicates.

    Raises:
        ResultFileError: A path does not exist, holds no recognisable output, a score file cannot
            be attributed to a model, or (``strict``) a file is malformed.
    """
    ctx = ctx or ParseContext()
    units, result = _discover([Path(p) for p in paths])
    iterator: Iterable[_Unit] = progress(units, len(units)) if progress is not None else units
    parsed = ParsedOutput()
    for unit in iterator:
        try:
            if unit.results_file is not None:
                parsed.extend(parse_results_file(unit.results_file, ctx, strict))
            else:
                parsed.extend(parse_unit(unit.run_unit, ctx, strict))
        except ResultFileError as error:
            if strict:
                raise
            parsed.skip(error.path, f"malformed: {error.problem}")
    result.skips.extend(parsed.skips)
    result.renamed = dict(sorted(parsed.renamed.items()))
    for (toolkit, model), shown in result.renamed.items():
        logger.info("%s model %r is recorded as %r (model mapping)", toolkit, model, shown)
    result.records, result.duplicates = newest_wins(parsed.records)
    result.samples, sample_duplicates = newest_wins(parsed.samples)
    result.duplicates.extend(sample_duplicates)
    _warn_unidentified(result.records)
    logger.info(
        "collected %d score(s) and %d sample prediction(s) from %d unit(s); %d skipped, %d duplicate(s) resolved",
        len(result.records), len(result.samples), len(units), len(result.skips), len(result.duplicates),
    )
    return result


def _discover(paths: list[Path]) -> tuple[list[_Unit], CollectResult]:
    """Find the parse units under ``paths``."""
    result = CollectResult()
    units: list[_Unit] = []
    seen_results: set[Path] = set()
    # Model folders by resolved path (a folder reached twice is read once) -> (the path as first
    # given, the files it is restricted to or None for all of them).
    model_dirs: dict[Path, tuple[Path, set[Path] | None]] = {}
    for root in paths:
        if not root.exists():
            raise ResultFileError(root, "no such file or folder")
        found = 0
        for path in _files(root):
            if is_results_file(path):
                real = path.resolve()
                if real not in seen_results:
                    seen_results.add(real)
                    units.append(_Unit(path, results_file=path))
                found += 1
            elif is_vlmevalkit_file(path):
                model_dir = model_dir_of(path)
                shown, restricted = model_dirs.setdefault(model_dir.resolve(), (model_dir, set()))
                if root.is_file() and restricted is not None:
                    restricted.add(path)
                else:
                    model_dirs[model_dir.resolve()] = (shown, None)
                found += 1
            elif SCORE_FILE.match(path.name) and path.suffix == ".csv":
                raise ResultFileError(
                    path,
                    f"unknown layout: a score file whose name does not start with its model folder's name "
                    f"({model_dir_of(path).name!r}_…); VLMEvalKit writes work_dir/<model>/<model>_<dataset>_acc.csv",
                )
        if not found:
            raise ResultFileError(
                root,
                "unknown layout: no VLMEvalKit output (work_dir/<model>/<model>_<dataset>_acc.csv, _score.csv, "
                "status.json) and no lmms-eval output (<date>_results.json) found",
            )
    for model_dir, only in sorted(model_dirs.values(), key=lambda item: str(item[0])):
        run_units, report = plan_model_dir(model_dir, only)
        result.skips.extend(report.skips)
        units.extend(_Unit(u.run_dir, run_unit=u) for u in run_units)
    return units, result


def _files(root: Path) -> Iterator[Path]:
    """Files under ``root`` (``root`` itself if it is a file); symlinked folders are not followed."""
    if root.is_file():
        yield root
        return
    for folder, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(folder) / name
            if path.is_file() or path.is_symlink():
                yield path


K = TypeVar("K", ScoreRecord, SamplePrediction)


def newest_wins(items: Iterable[K]) -> tuple[list[K], list[tuple[str, str]]]:
    """Keep one item per :meth:`key`: the newest ``run_time`` (ties: the smaller source path).

    Args:
        items: Records or sample predictions.

    Returns:
        ``(kept items in first-seen key order, [(kept source, dropped source), ...])``. Each
        dropped duplicate from a different file is logged once per file pair as a warning.
    """
    kept: dict[tuple, K] = {}
    dropped: list[tuple[str, str]] = []
    warned: set[tuple[str, str]] = set()
    for item in items:
        key = item.key()
        current = kept.get(key)
        if current is None:
            kept[key] = item
            continue
        newer, older = (item, current) if (item.run_time, current.source) > (current.run_time, item.source) else (current, item)
        kept[key] = newer
        dropped.append((newer.source, older.source))
        pair = (newer.source, older.source)
        if pair not in warned and newer.source != older.source:
            warned.add(pair)
            logger.warning(
                "duplicate scores: %s (run %s) replaces %s (run %s) — the newest run wins",
                newer.source, newer.run_time or "?", older.source, older.run_time or "?",
            )
    return list(kept.values()), dropped


def _warn_unidentified(records: list[ScoreRecord]) -> None:
    models = sorted({(r.toolkit, r.model) for r in records if not r.variant})
    for toolkit, model in models:
        logger.warning(
            "%s model %r is not identified (no mapping entry, run manifest or preset); its records keep an "
            "empty variant — pass --models MAPPING.csv or write tg_llava_run.json", toolkit, model,
        )
