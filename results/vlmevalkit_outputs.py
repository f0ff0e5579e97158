"""Parser of VLMEvalKit output trees -> :class:`ScoreRecord` / :class:`SamplePrediction`.

Layouts (``vlmevalkit.md`` §4), all read by the same code:

* **flat** (ms-vlmeval 0.0.20): ``work_dir/<model>/<model>_<dataset>_*`` plus ``status.json``;
  ms also creates an empty ``T<timestamp>/`` folder, which is ignored;
* **upstream HEAD**: one folder per run, ``work_dir/<model>/T<YYYYMMDD-HHMMSS>/`` (with its own
  ``status.json``), and relative symlinks in ``work_dir/<model>/`` to the latest run's files;
* **legacy upstream / nvidia**: ``work_dir/<model>/T<YYYYMMDD>_G<commit8>/`` with absolute
  symlinks (no ``status.json``).

Every run folder is read; a symlink that resolves into a run folder is the same file and is not
read twice; a dangling symlink is skipped with a warning (the run folder holds the real file).
Records of the same score from different runs are resolved by :mod:`.collect` (newest wins).

Score files are recognised by suffix and then by their columns (never by dataset names):

=====================  ===================================  =====================================
file                   columns / content                    records
=====================  ===================================  =====================================
``_acc`` with split    ``split, Overall, <abilities>...``   MCQ: accuracy per split and ability;
                                                            fractions x 100 (MMBench, MMMU, ...)
``_acc`` without split ``Overall, <categories>...``         VQA: accuracy, already 0-100
``_score`` MME         ``perception, reasoning, <14 cats>`` sums (``perception``, ``reasoning``,
                                                            ``score`` per category)
``_score`` POPE        ``split, Overall, acc, precision,    f1 (= Overall), accuracy, precision,
                       recall``                             recall per subset; 0-100
``_score`` Hallusion   ``split, aAcc, fAcc, qAcc``          aAcc/fAcc/qAcc per row; 0-100
``_score`` MMVet       ``Category, tot, acc``               accuracy per category, n = tot
``_score`` yes/no      one row: ``Overall, <categories>``   accuracy; 0-100
``_score.json`` dict   OCRBench keys (``Final Score``...)   score (0-100), score_sum, categories
``_rating.json``       nested dict (video-benchmark style)  ``rating`` per flattened key
``status.json``        ``datasets.<d>.metrics``             used only when a dataset's score file
                                                            is missing (same column rules)
=====================  ===================================  =====================================

Tables may be CSV (``EVAL_FORMAT=csv``) or JSON lists of rows (``EVAL_FORMAT=json``). Predictions
(``<model>_<dataset>.xlsx|tsv|json``) give ``n`` and the per-sample answers. Pickles
(``*.pkl``) are never opened. Files that are neither score, status, manifest nor prediction files
(judge results, ``_auxmatch``, logs) are ignored.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tg_llava_eval.results.benchmarks import MME_SUM_CATEGORIES, Headline
from tg_llava_eval.results.errors import ResultFileError
from tg_llava_eval.results.identity import ModelIdentity
from tg_llava_eval.results.manifest import RunManifest, find_run_manifest, read_run_manifest
from tg_llava_eval.results.parsing import ParseContext, ParsedOutput, file_time, identify, iso_utc, mark_primary, parse_iso
from tg_llava_eval.results.records import (
    ORIGIN_REPRODUCED,
    SCALE_PERCENT,
    SCALE_RAW,
    SCALE_SUM,
    TOOLKIT_VLMEVALKIT,
    SamplePrediction,
    ScoreRecord,
    manifest_json,
)
from tg_llava_eval.results.score_tables import ScoreTable, number, read_table

logger = logging.getLogger(__name__)

#: Run-folder names: upstream HEAD ``T20260410-153012`` and legacy ``T20250101_G1a2b3c4d``.
UPSTREAM_RUN_DIR = re.compile(r"^T(\d{8})-(\d{6})$")
LEGACY_RUN_DIR = re.compile(r"^T(\d{8})_G([0-9a-f]{7,40})$")
STATUS_NAME = "status.json"
#: Score-file suffixes (after ``<model>_<dataset>``) and their kind.
SCORE_FILE = re.compile(r"^(?P<stem>.+)_(?P<kind>acc|score|rating)\.(?P<ext>csv|json)$")
PREDICTION_EXTENSIONS = (".xlsx", ".tsv", ".json")
#: Judge names VLMEvalKit inserts between dataset and suffix (``<m>_MMVet_gpt-4-turbo_score.csv``);
#: used only when neither ``status.json`` nor a prediction file names the dataset.
JUDGE_NAMES = (
    "exact_matching", "gpt-4o-mini", "gpt-4o", "gpt-4-turbo", "gpt-4-0125", "gpt4", "chatgpt-0125", "openai",
)
#: VLMEvalKit's circular MCQ copies carry ``index + 1e6 * k``; only base rows count as questions.
CIRCULAR_INDEX_OFFSET = 1_000_000
#: Per-item score files VLMEvalKit writes beside the score table (``<model>_<dataset>[_<judge>]_<kind>``):
#: ``_result`` (MCQ, one row per question, or per circular group with ``g_index``), ``_auxmatch``
#: (yes/no, POPE, MME: the extracted answer and its ``score``), ``_results`` (VQA).
ITEM_SCORE_FILE = re.compile(r"^(?P<stem>.+)_(?P<kind>result|results|auxmatch)\.(?P<ext>xlsx|csv|tsv)$")
#: Per-item score columns of those files, in the order they are looked for (the first present is
#: the score VLMEvalKit aggregated: ``hit`` for MCQ, ``score`` for yes/no and MME, ``eval_score``
#: for VQA).
ITEM_SCORE_COLUMNS = ("hit", "score", "eval_score")
#: MMBench ability abbreviations used as ``_acc.csv`` columns (``MMB_abbrs`` in VLMEvalKit).
MMB_ABBREVIATIONS = {
    "CP": "coarse_perception",
    "FP-S": "finegrained_perception (instance-level)",
    "FP-C": "finegrained_perception (cross-instance)",
    "LR": "logic_reasoning",
    "RR": "relation_reasoning",
    "AR": "attribute_reasoning",
}
#: Column names of the POPE and HallusionBench score tables (``POPE_rating``/``Hallusion_rating``).
POPE_METRICS = {"Overall": "f1", "acc": "accuracy", "precision": "precision", "recall": "recall"}
HALLUSION_METRICS = ("aAcc", "fAcc", "qAcc")
MME_SUMS = ("perception", "reasoning")
#: OCRBench ``_score.json`` keys: normalised 0-100 score and the 0-1000 sum.
OCRBENCH_NORM, OCRBENCH_SUM = "Final Score Norm", "Final Score"


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is a VLMEvalKit run folder (upstream or legacy naming)."""
    return bool(UPSTREAM_RUN_DIR.match(path.name) or LEGACY_RUN_DIR.match(path.name))


def is_vlmevalkit_file(path: Path) -> bool:
    """Whether ``path`` looks like VLMEvalKit output: ``status.json`` or ``<folder model>_…`` score."""
    model = model_dir_of(path).name
    return path.name == STATUS_NAME or (path.name.startswith(f"{model}_") and SCORE_FILE.match(path.name) is not None)


def model_dir_of(path: Path) -> Path:
    """The ``work_dir/<model>`` folder of a file (skipping a run folder in between)."""
    folder = path.parent
    return folder.parent if is_run_dir(folder) else folder


# ---------------------------------------------------------------------------------------------
# Model folder -> units (one per run folder, plus the flat files)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunUnit:
    """Files of one VLMEvalKit run of one model.

    Attributes:
        model_dir: ``work_dir/<model>``.
        run_dir: The folder holding the files (``model_dir`` itself for the flat layout).
        files: The files to read (symlinks already resolved or dropped).
    """

    model_dir: Path
    run_dir: Path
    files: tuple[Path, ...]


def plan_model_dir(model_dir: Path, only: Iterable[Path] | None = None) -> tuple[list[RunUnit], ParsedOutput]:
    """Split a model folder into run units and report skipped symlinks.

    Args:
        model_dir: ``work_dir/<model>``.
        only: If given, restrict to these files (a file named on the command line).

    Returns:
        ``(units, output with skips)``.
    """
    report = ParsedOutput()
    wanted = {p.absolute() for p in only} if only is not None else None
    run_dirs = sorted(p for p in model_dir.iterdir() if p.is_dir() and not p.is_symlink() and is_run_dir(p))
    run_real = {p.resolve() for p in run_dirs}
    units = []
    for run_dir in run_dirs:
        files = tuple(sorted(p for p in run_dir.iterdir() if p.is_file() and not p.is_symlink()))
        if wanted is not None:
            files = tuple(p for p in files if p.absolute() in wanted)
        if files:
            units.append(RunUnit(model_dir, run_dir, files))
    flat = []
    for path in sorted(model_dir.iterdir()):
        if wanted is not None and path.absolute() not in wanted:
            continue
        if path.is_symlink():
            if not path.exists():
                reason = f"dangling symlink to {path.readlink()}"
                if run_dirs:
                    reason += f"; the run folder(s) {', '.join(p.name for p in run_dirs)} are read instead"
                if is_vlmevalkit_file(path):
                    report.skip(path, reason)
                continue
            target = path.resolve()
            if any(parent in run_real for parent in target.parents):
                logger.debug("%s links into a run folder that is read directly", path)
                continue
            flat.append(path)
        elif path.is_file():
            flat.append(path)
    if flat:
        units.append(RunUnit(model_dir, model_dir, tuple(flat)))
    return units, report


# ---------------------------------------------------------------------------------------------
# One unit -> records
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RunFacts:
    """What a run's folder and status.json say about the run."""

    run_time: str
    version: str
    status: dict
    manifest: RunManifest | None
    manifest_json: str


def parse_unit(unit: RunUnit, ctx: ParseContext, strict: bool = True) -> ParsedOutput:
    """Parse one run unit (see :func:`plan_model_dir`).

    Args:
        unit: The files of one run of one model.
        ctx: Registry, mapping and options.
        strict: Raise on a malformed file (default) instead of recording a :class:`Skip`.

    Returns:
        Records, samples and skips of the unit.

    Raises:
        ResultFileError: A malformed file (when ``strict``), naming the file and the problem.
    """
    out = ParsedOutput()
    model = unit.model_dir.name
    facts = _run_facts(unit)
    identity = identify(ctx, model, facts.manifest)
    # File names use the folder's name; records and samples carry the mapping's display name if any.
    shown = out.note_name(TOOLKIT_VLMEVALKIT, model, identity)
    by_name = {p.name: p for p in unit.files}
    datasets = set(facts.status.get("datasets", {})) if isinstance(facts.status.get("datasets"), dict) else set()
    predictions = {
        p.name[len(model) + 1: -len(p.suffix)]: p
        for p in unit.files
        if p.name.startswith(f"{model}_") and p.suffix in PREDICTION_EXTENSIONS and not SCORE_FILE.match(p.name)
    }
    known = datasets | set(predictions)
    item_files = _item_score_files(unit.files, model, known)
    scored: set[str] = set()  # datasets with a score file (read or skipped): no status.json fallback
    for name, path in sorted(by_name.items()):
        match = SCORE_FILE.match(name)
        if not name.startswith(f"{model}_") or match is None:
            continue
        dataset = _dataset_of(match.group("stem")[len(model) + 1:], known)
        scored.add(dataset)
        try:
            records = _records_from_score_file(path, match.group("kind"), dataset, model, identity, facts, ctx)
        except ResultFileError as error:
            if strict:
                raise
            out.skip(path, f"malformed: {error.problem}")
            continue
        prediction = predictions.get(dataset)
        if prediction is not None:
            try:
                frame = _read_predictions(prediction)
            except ResultFileError as error:
                if strict:
                    raise
                out.skip(prediction, f"malformed: {error.problem}")
                frame = None
            if frame is not None:
                records = _with_sample_counts(records, frame)
                if ctx.read_samples:
                    scores = None
                    if dataset in item_files:
                        by_image = any(r.primary and r.metric in MME_SUM_CATEGORIES for r in records)
                        try:
                            scores = read_item_scores(item_files[dataset], by_image)
                        except ResultFileError as error:
                            if strict:
                                raise
                            out.skip(item_files[dataset], f"malformed: {error.problem}")
                    out.samples.extend(_samples(frame, prediction, shown, identity.variant, records[0].benchmark, dataset,
                                                facts.run_time, scores))
        out.records.extend(records)
    _status_fallback(unit, facts, scored, model, identity, ctx, strict, out)
    return out


def _run_facts(unit: RunUnit) -> _RunFacts:
    """Read what the run itself says: ``status.json``, the nearest manifest, time and version.

    Run time: ``status.json`` ``created_at``, else the run-folder name, else the newest file's
    modification time. Version: the manifest's toolkit release (distribution, version and checkout
    commit: :meth:`RunManifest.toolkit_release`), else ``git:<commit>`` from
    ``status.json`` or a legacy ``T…_G<commit>`` folder (the commit of the repository VLMEvalKit ran
    from), else ``""``.

    Raises:
        ResultFileError: An unreadable ``status.json`` or an invalid manifest.
    """
    status_path = unit.run_dir / STATUS_NAME
    status: dict = {}
    if status_path in unit.files:
        try:
            status = json.loads(status_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ResultFileError(status_path, f"invalid status.json: {error}") from None
        if not isinstance(status, dict):
            raise ResultFileError(status_path, "status.json must be a JSON object")
    manifest_path = find_run_manifest(unit.run_dir, stop=unit.model_dir)
    manifest = read_run_manifest(manifest_path) if manifest_path is not None else None
    run_time = parse_iso(str(status.get("created_at", ""))) or _run_dir_time(unit.run_dir)
    if not run_time:
        run_time = max(file_time(p) for p in unit.files)
    commit = str(status.get("commit") or "")
    legacy = LEGACY_RUN_DIR.match(unit.run_dir.name)
    if legacy and not commit:
        commit = legacy.group(2)
    release = manifest.toolkit_release() if manifest else ""
    version = release or (f"git:{commit}" if commit else "")
    return _RunFacts(run_time, version, status, manifest, manifest_json(manifest.to_dict() if manifest else None))


def _run_dir_time(run_dir: Path) -> str:
    """Run time from an upstream (date and time) or legacy (date only) run-folder name."""
    upstream = UPSTREAM_RUN_DIR.match(run_dir.name)
    if upstream:
        return iso_utc(dt.datetime.strptime("".join(upstream.groups()), "%Y%m%d%H%M%S"))
    legacy = LEGACY_RUN_DIR.match(run_dir.name)
    if legacy:
        return iso_utc(dt.datetime.strptime(legacy.group(1), "%Y%m%d"))
    return ""


def _dataset_of(stem: str, known: set[str]) -> str:
    """Dataset name of ``<dataset>[_<judge>]``: a known dataset, else strip a declared judge name."""
    if stem in known:
        return stem
    prefixed = [d for d in known if stem.startswith(f"{d}_")]
    if prefixed:
        return max(prefixed, key=len)
    for judge in JUDGE_NAMES:
        if stem.endswith(f"_{judge}"):
            return stem[: -len(judge) - 1]
    return stem


# ---------------------------------------------------------------------------------------------
# Score tables by family
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Value:
    """One number of a score file before it becomes a record."""

    split: str
    category: str
    metric: str
    value: float
    scale: str
    n: int | None = None


def _records_from_score_file(
    path: Path, kind: str, dataset: str, model: str, identity: ModelIdentity, facts: _RunFacts, ctx: ParseContext
) -> list[ScoreRecord]:
    """Records of one score file: JSON objects by key, tables (CSV or JSON rows) by columns."""
    if path.suffix == ".json":
        data = _load_json(path)
        if kind == "rating" or isinstance(data, dict):
            values, headline = (_rating_values if kind == "rating" else _dict_values)(data, path)
            return _to_records(values, headline, path, dataset, model, identity, facts, ctx)
    table = read_table(path)
    values, headline = table_values(table, kind)
    return _to_records(values, headline, path, dataset, model, identity, facts, ctx)


def table_values(table: ScoreTable, kind: str | None) -> tuple[list[_Value], Headline]:
    """Classify a score table by its columns and extract its values.

    Args:
        table: The parsed table.
        kind: ``acc`` or ``score`` (the file suffix), ``None`` for tables rebuilt from
            ``status.json`` (classified by columns alone).

    Returns:
        ``(values, family headline)``.

    Raises:
        ResultFileError: Columns that match no family, a missing column, a non-numeric cell, or
            MCQ accuracies outside [0, 1].
    """
    columns = set(table.columns)
    if set(MME_SUMS) <= columns:
        return _mme(table), Headline("perception")
    if "split" in columns:
        if set(POPE_METRICS) <= columns:
            return _split_rows(table, POPE_METRICS), Headline("f1")
        if set(HALLUSION_METRICS) <= columns:
            return _split_rows(table, {m: m for m in HALLUSION_METRICS}), Headline("aAcc")
        if kind in ("acc", None):
            table.require("Overall")
            return _mcq(table), Headline("accuracy")
        raise ResultFileError(
            table.path,
            f"unrecognised _score table with a 'split' column (columns: {list(table.columns)}); "
            f"expected POPE ({sorted(POPE_METRICS)}) or HallusionBench ({list(HALLUSION_METRICS)})",
        )
    if {"Category", "tot", "acc"} <= columns:
        return _mmvet(table), Headline("accuracy")
    if "Overall" in columns:
        return _one_row_percent(table), Headline("accuracy")
    raise ResultFileError(
        table.path,
        f"unrecognised score table (columns: {list(table.columns)}): none of the VLMEvalKit families "
        "(MCQ/VQA 'Overall', MME 'perception'+'reasoning', POPE, HallusionBench, MMVet)",
    )


def _mcq(table: ScoreTable) -> list[_Value]:
    """MCQ ``_acc`` table: one row per split; ``Overall`` and every ability/category column.

    VLMEvalKit writes fractions here (``report_acc``); a value outside [0, 1] means the file is
    not what its columns claim, so it is an error rather than a silently mis-scaled score.
    """
    values = []
    for i, row in enumerate(table.rows):
        split = _split_name(row["split"])
        for column in table.columns:
            if column == "split":
                continue
            fraction = table.number(i, column)
            if not 0.0 <= fraction <= 1.0:
                raise ResultFileError(
                    table.path,
                    f"line {table.lines[i]}, column {column!r}: {fraction} is not a fraction in [0, 1] "
                    "(VLMEvalKit MCQ accuracies are fractions)",
                )
            category = "" if column == "Overall" else column
            values.append(_Value(split, category, "accuracy", fraction * 100.0, SCALE_PERCENT))
    return values


def _split_rows(table: ScoreTable, metrics: dict[str, str]) -> list[_Value]:
    """POPE/HallusionBench: one row per subset, the ``Overall`` row is the overall score."""
    values = []
    for i, row in enumerate(table.rows):
        subset = str(row["split"])
        category = "" if subset == "Overall" else subset
        for column, metric in metrics.items():
            values.append(_Value("", category, metric, table.number(i, column), SCALE_PERCENT))
    return values


def _mme(table: ScoreTable) -> list[_Value]:
    """MME ``_score`` table (``MME_rating``): the two sums and 14 category scores (0-200 each)."""
    if len(table.rows) != 1:
        raise ResultFileError(table.path, f"an MME score table has one row, found {len(table.rows)}")
    values = []
    for column in table.columns:
        value = table.number(0, column)
        if column in MME_SUMS:
            values.append(_Value("", "", column, value, SCALE_SUM))
        else:
            values.append(_Value("", column, "score", value, SCALE_SUM))
    return values


def _mmvet(table: ScoreTable) -> list[_Value]:
    """MMVet ``_score`` table: ``Category, tot, acc`` rows; the ``Overall`` row is the headline."""
    values = []
    for i, row in enumerate(table.rows):
        category = "" if row["Category"] == "Overall" else str(row["Category"])
        total = table.number(i, "tot")
        values.append(_Value("", category, "accuracy", table.number(i, "acc"), SCALE_PERCENT, int(total)))
    return values


def _one_row_percent(table: ScoreTable) -> list[_Value]:
    """VQA ``_acc`` and default yes/no ``_score``: one row, ``Overall`` + categories, 0-100."""
    if len(table.rows) != 1:
        raise ResultFileError(table.path, f"expected one row (Overall + categories), found {len(table.rows)}")
    return [
        _Value("", "" if column == "Overall" else column, "accuracy", table.number(0, column), SCALE_PERCENT)
        for column in table.columns
    ]


def _dict_values(data: dict, path: Path) -> tuple[list[_Value], Headline | None]:
    """``_score.json`` objects: OCRBench's keys, else every number as a ``raw`` metric."""
    if OCRBENCH_NORM in data or OCRBENCH_SUM in data:
        values = []
        for key, value in data.items():
            number_ = number(value, path, f"key {key!r}")
            if key == OCRBENCH_NORM:
                values.append(_Value("", "", "score", number_, SCALE_PERCENT))
            elif key == OCRBENCH_SUM:
                values.append(_Value("", "", "score_sum", number_, SCALE_SUM))
            else:
                values.append(_Value("", key, "score_sum", number_, SCALE_SUM))
        return values, Headline("score")
    if not data:
        raise ResultFileError(path, "empty score object")
    values = [_Value("", key, "score", number(value, path, f"key {key!r}"), SCALE_RAW) for key, value in data.items()]
    logger.warning("%s: score object with unknown keys; values kept on the 'raw' scale", path)
    return values, None


def _rating_values(data: Any, path: Path) -> tuple[list[_Value], Headline | None]:
    """``_rating.json`` (video benchmarks): nested objects flattened to ``a/b/c`` categories.

    Leaves may be numbers or numeric strings (``raw``), strings with ``%`` (``percent``),
    ``[correct, total, "xx.xx%"]`` (percent, n = total) or ``[correct, total]`` (percent of the
    ratio). The key ``overall`` (any case) at the top level is the overall score.
    """
    if not isinstance(data, dict) or not data:
        raise ResultFileError(path, "a _rating.json must be a non-empty JSON object")
    values: list[_Value] = []

    def walk(node: Any, keys: list[str]) -> None:
        where = "key " + "/".join(keys)
        category = "/".join(keys)
        if len(keys) == 1 and keys[0].lower() == "overall":
            category = ""
        if isinstance(node, dict):
            for key, child in node.items():
                walk(child, keys + [str(key)])
        elif isinstance(node, list):
            if len(node) not in (2, 3):
                raise ResultFileError(path, f"{where}: expected [correct, total(, 'pct%')], got {node!r}")
            correct, total = number(node[0], path, where), number(node[1], path, where)
            if total <= 0:
                raise ResultFileError(path, f"{where}: total must be positive, got {node[1]!r}")
            values.append(_Value("", category, "rating", correct / total * 100.0, SCALE_PERCENT, int(total)))
        else:
            scale = SCALE_PERCENT if isinstance(node, str) and node.strip().endswith("%") else SCALE_RAW
            values.append(_Value("", category, "rating", number(node, path, where), scale))

    walk(data, [])
    return values, Headline("rating")


def _to_records(
    values: list[_Value], family_headline: Headline | None, path: Path, dataset: str, model: str,
    identity: ModelIdentity, facts: _RunFacts, ctx: ParseContext,
) -> list[ScoreRecord]:
    """Turn a file's values into records and mark its headline.

    The registry names the benchmark and may declare the split a split-less file stands for and
    the headline; otherwise the family's default headline applies. ``model`` is the model folder's
    name; the records carry ``identity.table_name(model)`` (the mapping's display name, if any).
    """
    spec, entry = ctx.registry.lookup(TOOLKIT_VLMEVALKIT, dataset)
    benchmark = spec.name if spec is not None else dataset
    default_split = entry.split if entry is not None and entry.split else ""
    records = [
        ScoreRecord(
            model=identity.table_name(model), variant=identity.variant, method=identity.method, llm=identity.llm,
            toolkit=TOOLKIT_VLMEVALKIT, toolkit_version=facts.version, benchmark=benchmark, dataset=dataset,
            split=v.split or default_split, category=v.category, metric=v.metric, value=float(v.value),
            scale=v.scale, higher_is_better=True, n=v.n, primary=False, origin=ORIGIN_REPRODUCED,
            source=str(path), run_time=facts.run_time, manifest=facts.manifest_json,
        )
        for v in values
    ]
    headline = entry.headline if entry is not None and entry.headline is not None else family_headline
    return mark_primary(records, headline, str(path))


def _split_name(value: Any) -> str:
    """VLMEvalKit writes ``none`` when the dataset has no split column."""
    text = str(value)
    return "" if text == "none" else text


# ---------------------------------------------------------------------------------------------
# status.json fallback
# ---------------------------------------------------------------------------------------------


def _status_fallback(
    unit: RunUnit, facts: _RunFacts, scored: set[str], model: str, identity: ModelIdentity, ctx: ParseContext,
    strict: bool, out: ParsedOutput,
) -> None:
    """Datasets that ``status.json`` lists but no score file covers: metrics or a skip.

    A dataset with an error message or skip reason, or without metrics (e.g. a custom VQA set
    VLMEvalKit cannot score), is a documented skip. A dataset with metrics but no score file (the
    file was deleted or never copied) is read from the metrics with the same column rules.
    """
    datasets = facts.status.get("datasets")
    if not isinstance(datasets, dict):
        return
    status_path = unit.run_dir / STATUS_NAME
    for dataset, entry in sorted(datasets.items()):
        if dataset in scored or not isinstance(entry, dict):
            continue
        metrics = entry.get("metrics")
        if entry.get("error_message") or entry.get("skip_reason"):
            reason = entry.get("error_message") or entry.get("skip_reason")
            out.skip(status_path, f"dataset {dataset!r} status {entry.get('status')!r}: {reason}")
        elif not metrics:
            out.skip(status_path, f"dataset {dataset!r} (status {entry.get('status')!r}) has no score file and no metrics")
        else:
            try:
                table = table_from_status_metrics(metrics, status_path, dataset)
                values, headline = table_values(table, None)
                out.records.extend(_to_records(values, headline, table.path, dataset, model, identity, facts, ctx))
                logger.info("%s: %s read from status.json metrics (no score file)", model, dataset)
            except ResultFileError as error:
                if strict:
                    raise
                out.skip(status_path, f"malformed metrics of {dataset!r}: {error.problem}")


def table_from_status_metrics(metrics: Any, path: Path, dataset: str) -> ScoreTable:
    """Rebuild the score table VLMEvalKit flattened into ``status.json``.

    ``status.json`` stores ``{"split=dev|Overall": 0.75, ...}``: dimension columns as
    ``name=value`` prefixes, then the numeric column. Rows are rebuilt from the prefixes.

    Raises:
        ResultFileError: Metrics that are not an object of numbers, or keys that do not rebuild
            into a rectangular table.
    """
    if not isinstance(metrics, dict):
        raise ResultFileError(path, f"datasets.{dataset}.metrics must be an object")
    rows: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for key, value in metrics.items():
        parts = str(key).split("|")
        dims = tuple(tuple(p.split("=", 1)) for p in parts[:-1])
        if any(len(d) != 2 for d in dims):
            raise ResultFileError(path, f"datasets.{dataset}.metrics: cannot read key {key!r}")
        row = rows.setdefault(dims, dict(dims))
        row[parts[-1]] = value
    header: list[str] = []
    for row in rows.values():
        header.extend(c for c in row if c not in header)
    table_rows = tuple(rows.values())
    for i, row in enumerate(table_rows, start=1):
        if list(row) != header and set(row) != set(header):
            raise ResultFileError(path, f"datasets.{dataset}.metrics: row {i} has columns {list(row)}, others {header}")
    source = Path(f"{path}#datasets.{dataset}.metrics")
    return ScoreTable(source, tuple(header), tuple({c: r[c] for c in header} for r in table_rows), tuple(range(1, len(table_rows) + 1)))


# ---------------------------------------------------------------------------------------------
# Predictions: sample counts and answers
# ---------------------------------------------------------------------------------------------


def _read_predictions(path: Path) -> pd.DataFrame:
    """Read ``<model>_<dataset>.xlsx|tsv|json`` (needs ``index`` and ``prediction`` columns).

    Raises:
        ResultFileError: The file cannot be read or lacks the two columns.
    """
    try:
        if path.suffix == ".xlsx":
            frame = pd.read_excel(path, engine="openpyxl")
        elif path.suffix == ".tsv":
            frame = pd.read_csv(path, sep="\t")
        else:
            frame = pd.DataFrame(_load_json(path))
    except ResultFileError:
        raise
    except Exception as error:  # openpyxl/pandas raise many types for a corrupt workbook
        raise ResultFileError(path, f"cannot read prediction file: {type(error).__name__}: {error}") from None
    missing = [c for c in ("index", "prediction") if c not in frame.columns]
    if missing:
        raise ResultFileError(path, f"prediction file lacks column(s) {missing}")
    return frame


def _base_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Drop VLMEvalKit's circular copies (index >= 1e6) when the index is numeric."""
    index = pd.to_numeric(frame["index"], errors="coerce")
    if index.isna().any():
        return frame
    return frame[index < CIRCULAR_INDEX_OFFSET]


def _with_sample_counts(records: list[ScoreRecord], frame: pd.DataFrame) -> list[ScoreRecord]:
    """Fill ``n`` from the prediction rows: overall, per split, per category/ability."""
    base = _base_rows(frame)
    result = []
    for record in records:
        if record.n is not None or record.metric in MME_SUMS:
            result.append(record)
            continue
        rows = base
        if record.split and "split" in rows.columns:
            rows = rows[rows["split"].astype(str) == record.split]
        if record.category:
            mask = _category_mask(rows, record.category)
            if mask is None:
                result.append(record)
                continue
            rows = rows[mask]
        result.append(record.replace(n=int(len(rows))))
    return result


def _category_mask(rows: pd.DataFrame, category: str) -> pd.Series | None:
    """Rows whose ``category`` or ``l2-category`` (comma lists allowed) is ``category``."""
    names = {category, MMB_ABBREVIATIONS.get(category, category)}
    mask = None
    for column in ("category", "l2-category"):
        if column in rows.columns:
            hit = rows[column].astype(str).map(lambda cell: bool(names & {c.strip() for c in cell.split(",")}))
            mask = hit if mask is None else (mask | hit)
    if mask is None or not mask.any():
        return None
    return mask


def _samples(
    frame: pd.DataFrame, path: Path, model: str, variant: str, benchmark: str, dataset: str, run_time: str,
    scores: ItemScores | None = None,
) -> list[SamplePrediction]:
    """One :class:`SamplePrediction` per prediction row (circular copies included: their
    ``index`` ≥ 1e6 simply finds no partner in lmms-eval's ``doc_id`` numbering).

    ``scores`` (from :func:`read_item_scores`) gives each row the toolkit's per-item score: by
    ``index``, or for a circular file by the row's question (``index mod 1e6`` = ``g_index``), so
    every circular pass carries its question's ``hit`` and the question as ``group``. A row the
    score file does not cover keeps ``score=None``.
    """
    answers = frame["answer"] if "answer" in frame.columns else pd.Series([""] * len(frame))
    splits = frame["split"] if "split" in frame.columns else pd.Series([""] * len(frame))
    samples = []
    for index, prediction, answer, split in zip(frame["index"], frame["prediction"], answers, splits):
        sample_id = _sample_id(index)
        item = scores.lookup(sample_id) if scores is not None else None
        samples.append(
            SamplePrediction(
                model=model, variant=variant, toolkit=TOOLKIT_VLMEVALKIT, benchmark=benchmark, dataset=dataset,
                sample_id=sample_id, prediction="" if pd.isna(prediction) else str(prediction),
                target="" if pd.isna(answer) else str(answer), source=str(path), run_time=run_time,
                split="" if pd.isna(split) else _split_name(split), **(item or {}),
            )
        )
    return samples


@dataclass(frozen=True)
class ItemScores:
    """The per-item scores of one VLMEvalKit per-item file, keyed by ``index`` (or ``g_index``).

    Attributes:
        path: The file they were read from.
        column: The score column (one of :data:`ITEM_SCORE_COLUMNS`).
        circular: Whether rows are circular groups (``g_index``): a prediction row's question is
            ``index mod 1e6`` and the group's ``hit`` is its score.
        items: ``{index text: (score, group, category)}``.
    """

    path: Path
    column: str
    circular: bool
    items: dict[str, tuple[float, str, str]]

    def lookup(self, sample_id: str) -> dict[str, Any] | None:
        """``SamplePrediction`` keyword arguments (score, score_metric, group, category) of one row."""
        key = sample_id
        if self.circular:
            try:
                key = str(int(float(sample_id)) % CIRCULAR_INDEX_OFFSET)
            except ValueError:
                return None
        found = self.items.get(key)
        if found is None:
            return None
        score, group, category = found
        return {"score": score, "score_metric": self.column, "group": group, "category": category}


def _item_score_files(files: Iterable[Path], model: str, known: set[str]) -> dict[str, Path]:
    """Per-item score files of a run (see :data:`ITEM_SCORE_FILE`), by dataset.

    ``_result`` files carry a judge name (``<dataset>_exact_matching_result.xlsx``), resolved like
    score files; ``_auxmatch``/``_results`` files name the dataset alone. A dataset with several
    (xlsx and csv of one run) uses the first by name; ``.pkl`` intermediates are never opened.
    """
    found: dict[str, Path] = {}
    for path in sorted(files):
        match = ITEM_SCORE_FILE.match(path.name)
        if not path.name.startswith(f"{model}_") or match is None:
            continue
        stem = match.group("stem")[len(model) + 1:]
        dataset = _dataset_of(stem, known) if match.group("kind") == "result" else stem
        found.setdefault(dataset, path)
    return found


def read_item_scores(path: Path, by_image: bool = False) -> ItemScores | None:
    """Read the per-item scores VLMEvalKit wrote (never recomputed here).

    Args:
        path: A ``_result``/``_auxmatch``/``_results`` file (xlsx, csv or tsv).
        by_image: Group items by ``image_path`` (MME: acc+ scores both questions of an image).

    Returns:
        The scores, or ``None`` (with a warning) when the file has none of
        :data:`ITEM_SCORE_COLUMNS` (a judge file of another layout): its dataset's samples then
        carry no score and the statistics cells say so.

    Raises:
        ResultFileError: An unreadable file, no ``index`` column, a score that is not a number or
            boolean (named by line and column), or ``by_image`` without an ``image_path`` column.
    """
    try:
        if path.suffix == ".xlsx":
            frame = pd.read_excel(path, engine="openpyxl")
        else:
            frame = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",")
    except Exception as error:  # openpyxl/pandas raise many types for a corrupt file
        raise ResultFileError(path, f"cannot read per-item score file: {type(error).__name__}: {error}") from None
    if "index" not in frame.columns:
        raise ResultFileError(path, "per-item score file lacks the 'index' column")
    column = next((c for c in ITEM_SCORE_COLUMNS if c in frame.columns), None)
    if column is None:
        logger.warning("%s: none of the per-item score columns %s; its samples carry no score", path, list(ITEM_SCORE_COLUMNS))
        return None
    if by_image and "image_path" not in frame.columns:
        raise ResultFileError(path, "MME per-item scores need the 'image_path' column (acc+ pairs the questions of an image)")
    circular = "g_index" in frame.columns
    keys = frame["g_index"] if circular else frame["index"]
    categories = frame["category"] if "category" in frame.columns else pd.Series([""] * len(frame))
    items = {}
    for position, (key, value, category) in enumerate(zip(keys, frame[column], categories)):
        where = f"line {position + 2}, column {column!r}"  # header = line 1 (xlsx: row 1)
        score = _item_score(value, path, where)
        question = _sample_id(key)
        if by_image:
            group = str(frame["image_path"].iloc[position])
        else:
            group = question if circular else ""
        items[question] = (score, group, "" if pd.isna(category) else str(category))
    return ItemScores(path, column, circular, items)


def _item_score(value: Any, path: Path, where: str) -> float:
    """A per-item score cell: a boolean (``True``/``False``, also as text) or a finite number."""
    if isinstance(value, (bool, np.bool_)):
        return float(bool(value))
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return float(value.strip().lower() == "true")
    return number(value, path, where)


def _sample_id(index: Any) -> str:
    """Integer-valued indices as ``"12"`` (xlsx may return 12.0)."""
    if isinstance(index, float) and index.is_integer():
        return str(int(index))
    return str(index)


def _load_json(path: Path) -> Any:
    """Decode a JSON file; unreadable or invalid JSON is a :class:`ResultFileError`."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ResultFileError(path, f"cannot read file: {error}") from None
    except json.JSONDecodeError as error:
        raise ResultFileError(path, f"invalid JSON (truncated?): {error}") from None
