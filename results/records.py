"""Typed score records: the one schema every parser produces and every table consumes.

A :class:`ScoreRecord` is one number: one model, one benchmark (split, category), one metric, from
one source file (a toolkit's score file, or a row of a reference CSV with its citation). The
records of a collection become a pandas DataFrame with exactly the columns of :data:`COLUMNS`, in
that order; ``results.csv`` written by ``tg-llava-eval collect`` is that frame, and reading it back
validates every row (a bad row is an error naming the file, the row and the column).

The schema follows the lm-evaluation-harness ``result_schema`` idea (results described once, as a
type) and the HF leaderboard template's "results -> dataclass -> DataFrame" path.

:class:`SamplePrediction` is one model answer to one benchmark sample; the agreement table of
:mod:`tg_llava_eval.leaderboards` compares the answers of the two toolkits with it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tg_llava_eval.atomic_io import atomic_file
from tg_llava_eval.results.errors import ResultFileError

# --- controlled vocabularies -----------------------------------------------------------------

#: ``toolkit`` values of reproduced records (reported records carry the source's own wording).
TOOLKIT_VLMEVALKIT = "vlmevalkit"
TOOLKIT_LMMS_EVAL = "lmms-eval"

#: ``origin``: a number we measured from toolkit output, or a number copied from a publication.
ORIGIN_REPRODUCED = "reproduced"
ORIGIN_REPORTED = "reported"
ORIGINS = (ORIGIN_REPRODUCED, ORIGIN_REPORTED)

#: ``scale``: ``percent`` = 0-100 (fractions written by a toolkit are multiplied by 100 on parse);
#: ``sum`` = a summed score such as MME (perception max 2000) or OCRBench (max 1000);
#: ``raw`` = a metric whose range the registry does not know, kept exactly as the toolkit wrote it.
SCALE_PERCENT = "percent"
SCALE_SUM = "sum"
SCALE_RAW = "raw"
SCALES = (SCALE_PERCENT, SCALE_SUM, SCALE_RAW)


@dataclass(frozen=True)
class ScoreRecord:
    """One score.

    Attributes:
        model: The model's name as its toolkit wrote it (VLMEvalKit model folder such as
            ``TG-LLaVA-Qwen2-7B``; lmms-eval ``model_name``, e.g. the ``pretrained=`` path) unless
            the user model mapping declares a display name for it (``name`` column, see
            :mod:`.identity`; ``source`` still names the file that states the toolkit's name), or
            a descriptive name for a reported row (``"LLaVA-1.5 Vicuna-13B @336px/576tok"``).
        variant: The project variant (``tg-llava-qwen2-7b``, ``llava-1.5-vicuna-13b``, ``tiny``,
            ...), or ``""`` when neither a mapping, a run manifest nor the preset table names it.
        method: ``TG-LLaVA``, ``LLaVA-1.5``, ``ConvLLaVA``, ... (``""`` when unknown).
        llm: Canonical language-model label (``Vicuna-13B``, ``Llama-3-8B``, ``Qwen2-7B``, ...).
        toolkit: ``vlmevalkit`` or ``lmms-eval`` for reproduced records; for reported records the
            source's wording (``VLMEvalKit``, ``LLaVA official eval scripts``, ...).
        toolkit_version: Version or commit the output file states, ``""`` when it states none.
        benchmark: Canonical benchmark name from the registry (``MMBench``, ``MME``, ``POPE``), or
            the dataset/task name itself when the registry does not know it.
        dataset: The toolkit's dataset id or task name (``MMBench_DEV_EN``, ``mme``); ``""`` for
            reported rows.
        split: Split as written by the score file or declared by the registry (``dev``), ``""`` if
            none. For reported rows, the source's wording.
        category: Sub-score inside the split (MMBench ability, POPE subset, MME category), ``""``
            for the overall score.
        metric: Canonical metric (``accuracy``, ``f1``, ``perception``, ...) or the toolkit's own
            name when the registry has no alias for it.
        value: The number, on ``scale``.
        scale: One of :data:`SCALES`.
        higher_is_better: Direction of the metric.
        n: Number of samples behind the value when the output says it, else ``None``.
        primary: True for the one record per (model, benchmark, toolkit, run) that tables show.
        origin: ``reproduced`` or ``reported``.
        source: The file the value was read from (for reference CSVs ``path:line``).
        citation: For reported rows, the publication/document the number was copied from.
        run_time: ISO-8601 time of the run (newest wins among duplicates); ``""`` if unknown.
        manifest: The run manifest (``tg_llava_run.json``) as a compact JSON string, ``""`` if none.
    """

    model: str
    variant: str
    method: str
    llm: str
    toolkit: str
    toolkit_version: str
    benchmark: str
    dataset: str
    split: str
    category: str
    metric: str
    value: float
    scale: str
    higher_is_better: bool
    n: int | None
    primary: bool
    origin: str
    source: str
    citation: str = ""
    run_time: str = ""
    manifest: str = ""

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"ScoreRecord.scale must be one of {SCALES}, got {self.scale!r} ({self.source})")
        if self.origin not in ORIGINS:
            raise ValueError(f"ScoreRecord.origin must be one of {ORIGINS}, got {self.origin!r} ({self.source})")
        if not isinstance(self.value, float) or not math.isfinite(self.value):
            raise ValueError(f"ScoreRecord.value must be a finite float, got {self.value!r} ({self.source})")

    def key(self) -> tuple[str, ...]:
        """Identity of the score regardless of run: two records with one key are duplicates."""
        return (
            self.origin, self.toolkit, self.model, self.variant, self.benchmark, self.dataset,
            self.split, self.category, self.metric,
        )

    def replace(self, **changes: Any) -> ScoreRecord:
        """A copy with ``changes`` applied (records are immutable)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class SamplePrediction:
    """One model answer to one sample, for cross-toolkit answer agreement.

    Attributes:
        model, variant, toolkit, benchmark, dataset: As in :class:`ScoreRecord`.
        sample_id: VLMEvalKit ``index`` or lmms-eval ``doc_id``, as a string. The two toolkits'
            answers are joined on it, so a benchmark compared across toolkits must number its
            samples the same way in both (the project's synthetic benchmark does: row order).
        prediction: The model's raw answer text.
        target: The reference answer when the file states it, else ``""``.
        source: The predictions file.
        run_time: As in :class:`ScoreRecord` (newest wins among duplicates).
        score: The per-item score *as the toolkit computed it* for the dataset's headline metric
            (VLMEvalKit ``hit`` of its ``*_result.xlsx``, ``score`` of ``*_auxmatch.xlsx``,
            ``eval_score`` of ``*_results.xlsx``; lmms-eval's per-sample metric value), never
            recomputed here; ``None`` when the toolkit wrote none. The paired statistics of
            :mod:`tg_llava_eval.leaderboards.statistics` use it.
        score_metric: Where ``score`` came from: the toolkit's column or metric name (``hit``,
            ``score``, ``eval_score``, ``accuracy``, ``mme_perception_score``); ``""`` if none.
        group: Grouping key of items the metric scores together, ``""`` when it scores items
            alone: VLMEvalKit's circular MCQ group (``g_index``: every circular pass of one
            question shares the question's ``hit``), MME's image (``image_path`` / lmms-eval
            ``question_id``: acc+ needs both questions of an image right).
        category: The item's category when the file states it (MME sums per-category scores),
            else ``""``.
        split: The item's split when the predictions file states it (VLMEvalKit ``split``
            column), else ``""``; statistics of a split's headline use that split's items.
    """

    model: str
    variant: str
    toolkit: str
    benchmark: str
    dataset: str
    sample_id: str
    prediction: str
    target: str
    source: str
    run_time: str = ""
    score: float | None = None
    score_metric: str = ""
    group: str = ""
    category: str = ""
    split: str = ""

    def __post_init__(self) -> None:
        if self.score is not None and (not isinstance(self.score, float) or not math.isfinite(self.score)):
            raise ValueError(f"SamplePrediction.score must be a finite float or None, got {self.score!r} ({self.source})")

    def key(self) -> tuple[str, ...]:
        """Identity of the answer regardless of run."""
        return (self.toolkit, self.model, self.variant, self.benchmark, self.dataset, self.sample_id)


#: Column order of a records frame / ``results.csv`` (the dataclass field order).
COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ScoreRecord))
SAMPLE_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SamplePrediction))
#: Sample columns added with per-item scores; optional when reading (older samples files).
SAMPLE_SCORE_COLUMNS: tuple[str, ...] = ("score", "score_metric", "group", "category", "split")

_BOOL_COLUMNS = ("higher_is_better", "primary")
_TEXT_COLUMNS = tuple(c for c in COLUMNS if c not in ("value", "n") + _BOOL_COLUMNS)


def records_to_frame(records: Iterable[ScoreRecord]) -> pd.DataFrame:
    """Records -> DataFrame with the columns of :data:`COLUMNS` (``n`` as nullable Int64).

    Args:
        records: Any iterable of :class:`ScoreRecord`.

    Returns:
        A new DataFrame, one row per record, in input order.
    """
    frame = pd.DataFrame([dataclasses.astuple(r) for r in records], columns=list(COLUMNS))
    frame["value"] = frame["value"].astype("float64")
    frame["n"] = frame["n"].astype("Int64")
    for column in _BOOL_COLUMNS:
        frame[column] = frame[column].astype(bool)
    for column in _TEXT_COLUMNS:
        frame[column] = frame[column].astype(object)
    return frame


def frame_to_records(frame: pd.DataFrame, source: str | Path = "<frame>") -> list[ScoreRecord]:
    """DataFrame (e.g. a read ``results.csv``) -> validated records.

    Args:
        frame: A frame with at least the columns of :data:`COLUMNS` (extra columns are ignored).
        source: Name used in error messages (the CSV path).

    Returns:
        One :class:`ScoreRecord` per row.

    Raises:
        ResultFileError: A column is missing, or a row has a bad value (named by its CSV line:
            header = line 1).
    """
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        found = [c for c in frame.columns if c not in COLUMNS]
        what = "is not a records CSV (written by tg-llava-eval collect)" if len(missing) == len(COLUMNS) else \
            f"missing column(s) {', '.join(missing)}"
        raise ResultFileError(source, f"{what}; unexpected column(s): {', '.join(map(str, found)) or 'none'}")
    records = []
    for position, row in enumerate(frame.itertuples(index=False)):
        values = row._asdict()
        line = position + 2
        try:
            record = ScoreRecord(
                **{c: _text(values[c]) for c in _TEXT_COLUMNS},
                value=_float(values["value"], "value"),
                n=_optional_int(values["n"], "n"),
                higher_is_better=_bool(values["higher_is_better"], "higher_is_better"),
                primary=_bool(values["primary"], "primary"),
            )
        except ValueError as error:
            raise ResultFileError(source, f"line {line}: {error}") from None
        records.append(record)
    return records


def write_records_csv(records: Iterable[ScoreRecord], path: str | Path) -> Path:
    """Write records as CSV (columns :data:`COLUMNS`), atomically; returns the path."""
    with atomic_file(path) as temporary:
        records_to_frame(records).to_csv(temporary, index=False)
    return Path(path)


def read_records_csv(path: str | Path) -> list[ScoreRecord]:
    """Read and validate a records CSV written by :func:`write_records_csv` (or by hand).

    Raises:
        ResultFileError: Unreadable file, missing columns or a bad row (named by line).
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ResultFileError(path, f"cannot read records CSV: {error}") from None
    return frame_to_records(frame, source=path)


def samples_to_frame(samples: Iterable[SamplePrediction]) -> pd.DataFrame:
    """Sample predictions -> DataFrame with the columns of :data:`SAMPLE_COLUMNS`.

    ``score`` is float64 (NaN where the toolkit wrote no per-item score); the others are text.
    """
    frame = pd.DataFrame([dataclasses.astuple(s) for s in samples], columns=list(SAMPLE_COLUMNS)).astype(object)
    frame["score"] = pd.to_numeric(frame["score"], errors="raise").astype("float64")
    return frame


def write_samples_csv(samples: Iterable[SamplePrediction], path: str | Path) -> Path:
    """Write sample predictions as CSV, atomically; returns the path."""
    with atomic_file(path) as temporary:
        samples_to_frame(samples).to_csv(temporary, index=False)
    return Path(path)


def read_samples_csv(path: str | Path) -> list[SamplePrediction]:
    """Read a samples CSV written by :func:`write_samples_csv`.

    Files written before per-item scores existed lack :data:`SAMPLE_SCORE_COLUMNS`; their rows
    read with ``score=None`` (the leaderboard's statistics cells stay empty and say why).

    Raises:
        ResultFileError: Unreadable file, missing columns, or a ``score`` cell that is not a
            finite number (named by line: header = line 1).
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ResultFileError(path, f"cannot read samples CSV: {error}") from None
    required = [c for c in SAMPLE_COLUMNS if c not in SAMPLE_SCORE_COLUMNS]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ResultFileError(path, f"missing column(s) {missing}; a samples file needs {required}")
    samples = []
    for position, row in enumerate(frame.itertuples(index=False)):
        values = {c: str(v) for c, v in row._asdict().items() if c in SAMPLE_COLUMNS}
        try:
            score = values.pop("score", "")
            samples.append(SamplePrediction(**values, score=None if score == "" else _float(score, "score")))
        except ValueError as error:
            raise ResultFileError(path, f"line {position + 2}: {error}") from None
    return samples


def manifest_json(manifest: Mapping[str, Any] | None) -> str:
    """Compact, key-sorted JSON of a run manifest for :attr:`ScoreRecord.manifest` (``""`` if none)."""
    if not manifest:
        return ""
    return json.dumps(dict(manifest), sort_keys=True, separators=(",", ":"))


# --- cell converters (errors name the column; the caller adds file and line) ------------------


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _float(value: Any, column: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"column {column!r}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"column {column!r}: {value!r} is not a finite number")
    return number


def _optional_int(value: Any, column: str) -> int | None:
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"column {column!r}: {value!r} is not an integer") from None
    if not number.is_integer() or number < 0:
        raise ValueError(f"column {column!r}: {value!r} is not a non-negative integer")
    return int(number)


_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


def _bool(value: Any, column: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"column {column!r}: {value!r} is not a boolean (true/false)")


__all__ = [
    "COLUMNS", "ORIGINS", "ORIGIN_REPORTED", "ORIGIN_REPRODUCED", "SAMPLE_COLUMNS", "SAMPLE_SCORE_COLUMNS", "SCALES",
    "SCALE_PERCENT", "SCALE_RAW", "SCALE_SUM", "SamplePrediction", "ScoreRecord",
    "TOOLKIT_LMMS_EVAL", "TOOLKIT_VLMEVALKIT", "frame_to_records", "manifest_json",
    "read_records_csv", "read_samples_csv", "records_to_frame", "samples_to_frame",
    "write_records_csv", "write_samples_csv",
]
