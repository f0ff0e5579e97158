"""Parser of lmms-eval output files -> :class:`ScoreRecord` / :class:`SamplePrediction`.

lmms-eval (0.4-0.7) writes, per run, into ``<output_path>/<model_name_sanitized>/`` (``lmms_eval.md``
§5):

* ``<date_id>_results.json`` — ``results.<task>`` holds ``"<metric>,<filter>": value`` plus
  ``<metric>_stderr…`` entries and ``alias``; ``n-samples.<task>.effective``, ``higher_is_better``,
  ``config`` (``model``, ``model_args``), ``model_name``, ``model_name_sanitized``,
  ``lmms_eval_version`` and ``date`` sit beside it;
* ``<date_id>_samples_<task>.jsonl`` (``--log_samples``) — one JSON object per document with
  ``doc_id``, ``target``, ``filtered_resps`` (a string, or a list in older versions) and metrics.

``date_id`` is ``%Y%m%d_%H%M%S`` in the run's ``--timezone`` (default Asia/Singapore), which the
results file records; run times are converted to UTC. The older lm-eval-harness style names
``results_<ISO time>.json`` / ``samples_<task>_<ISO time>.jsonl`` are read too.

Metric names go through :data:`~tg_llava_eval.results.benchmarks.LMMS_METRICS` (canonical name +
scale; fractions x 100). Stderr entries are not scores and are not recorded. A value that is not a
number (``"N/A"`` for a metric, ``null``) is an error naming task and metric. A filter other
than ``none`` is kept in the metric name as ``metric[filter]``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tg_llava_eval.results.benchmarks import MME_SUM_CATEGORIES, Headline
from tg_llava_eval.results.errors import ResultFileError
from tg_llava_eval.results.manifest import find_run_manifest, read_run_manifest
from tg_llava_eval.results.parsing import ParseContext, ParsedOutput, file_time, identify, iso_utc, mark_primary
from tg_llava_eval.results.records import (
    ORIGIN_REPRODUCED,
    SCALE_PERCENT,
    SCALE_RAW,
    TOOLKIT_LMMS_EVAL,
    SamplePrediction,
    ScoreRecord,
    manifest_json,
)
from tg_llava_eval.results.score_tables import number

logger = logging.getLogger(__name__)

#: ``<date_id>_results.json`` (0.4+) and ``results_<ISO>.json`` (lm-eval-harness style).
RESULTS_FILE = re.compile(r"^(?:(?P<date_id>\d{8}_\d{6})_results|results_(?P<iso>[0-9T:.\-]+))\.json$")
SAMPLES_FILE = re.compile(r"^(?:(?P<date_id>\d{8}_\d{6})_samples_(?P<task>.+)|samples_(?P<task2>.+)_(?P<iso>[0-9T:.\-]+))\.jsonl$")
#: Suffixes of ``results`` keys that are uncertainty estimates, not scores.
STDERR_SUFFIXES = ("_stderr", "_stderr_clt", "_stderr_clustered")
#: Default ``--timezone`` of lmms-eval (used when the results file does not record one).
DEFAULT_TIMEZONE = "Asia/Singapore"
#: Keys of a results file that are not task entries.
_NON_METRIC_KEYS = ("alias", " ", "samples")


def is_results_file(path: Path) -> bool:
    """Whether ``path`` is named like an lmms-eval aggregated results file."""
    return RESULTS_FILE.match(path.name) is not None


def parse_results_file(path: Path, ctx: ParseContext, strict: bool = True) -> ParsedOutput:
    """Parse one lmms-eval results file (and its samples files, if requested).

    Args:
        path: ``<date_id>_results.json``.
        ctx: Registry, mapping and options.
        strict: Raise on a malformed samples file instead of recording a :class:`Skip`. (A
            malformed results file always raises; :mod:`.collect` decides whether to skip it.)

    Returns:
        Records, samples and skips.

    Raises:
        ResultFileError: Invalid JSON, no ``results`` object, an empty ``results``, a task entry
            that is not an object, or a metric value that is not a number.
    """
    out = ParsedOutput()
    data = _load_object(path)
    results = data.get("results")
    if not isinstance(results, dict):
        raise ResultFileError(path, "no 'results' object (not an lmms-eval results file?)")
    if not results:
        raise ResultFileError(path, "'results' is empty: the run evaluated no task")
    # Identity: model_name (the pretrained path) names the model; the sanitized folder name and
    # the folder itself are exact aliases for the user mapping; variant= may come as a model arg.
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    model_args = parse_model_args(str(config.get("model_args") or ""))
    model = str(data.get("model_name") or model_args.get("pretrained") or config.get("model") or path.parent.name)
    aliases = tuple(a for a in (str(data.get("model_name_sanitized") or ""), path.parent.name) if a and a != model)
    manifest_path = find_run_manifest(path.parent)
    manifest = read_run_manifest(manifest_path) if manifest_path is not None else None
    identity = identify(ctx, model, manifest, model_args.get("variant", ""), aliases)
    # The name records carry: a display name from the user mapping, else model_name itself (the
    # results file, each record's source, keeps model_name either way).
    shown = out.note_name(TOOLKIT_LMMS_EVAL, model, identity)
    run_time = _run_time(path, config)
    version = manifest.toolkit_version if manifest and manifest.toolkit_version else _version(data)
    n_samples = data.get("n-samples") if isinstance(data.get("n-samples"), dict) else {}
    directions = data.get("higher_is_better") if isinstance(data.get("higher_is_better"), dict) else {}
    warned: set[str] = set()  # unknown metric names already reported for this file
    # task -> (lmms-eval metric name, canonical metric) of its headline: whose per-sample value
    # the samples keep as their score.
    headline_metrics: dict[str, tuple[str, str]] = {}
    for task, entry in results.items():
        if not isinstance(entry, dict):
            raise ResultFileError(path, f"results.{task} must be an object, got {type(entry).__name__}")
        spec, dataset_entry = ctx.registry.lookup(TOOLKIT_LMMS_EVAL, task)
        records = []
        raw_names: dict[str, str] = {}  # canonical metric (with filter) -> lmms-eval metric name
        for key, value in entry.items():
            if key in _NON_METRIC_KEYS:
                continue
            metric_name, _, filter_name = key.partition(",")
            if metric_name.endswith(STDERR_SUFFIXES):
                continue
            raw = number(value, path, f"results.{task}.{key!r}")
            # Canonical name and scale from the metric table; fractions become percentages.
            metric_spec = ctx.registry.metrics.get(metric_name)
            if metric_spec is None:
                if metric_name not in warned:
                    logger.warning(
                        "%s: lmms-eval metric %r (task %s) is not in the metric table; value kept on the "
                        "'raw' scale (declare it with a benchmark spec 'lmms_metrics' entry)", path, metric_name, task,
                    )
                    warned.add(metric_name)
                canonical, scale, value_ = metric_name, SCALE_RAW, raw
            elif metric_spec.scale == "fraction":
                canonical, scale, value_ = metric_spec.name, SCALE_PERCENT, raw * 100.0
            else:
                canonical, scale, value_ = metric_spec.name, metric_spec.scale, raw
            if not math.isfinite(value_):  # e.g. a "fraction" of 1e306 overflows when made a percentage
                raise ResultFileError(path, f"results.{task}.{key!r} = {raw!r} is out of range on the {scale!r} scale")
            if filter_name and filter_name != "none":
                canonical = f"{canonical}[{filter_name}]"
            task_directions = directions.get(task) if isinstance(directions.get(task), dict) else {}
            raw_names[canonical] = metric_name
            records.append(
                ScoreRecord(
                    model=shown, variant=identity.variant, method=identity.method, llm=identity.llm,
                    toolkit=TOOLKIT_LMMS_EVAL, toolkit_version=version,
                    benchmark=spec.name if spec is not None else task, dataset=task,
                    split=(dataset_entry.split or "") if dataset_entry is not None else "", category="",
                    metric=canonical, value=float(value_), scale=scale,
                    higher_is_better=bool(task_directions.get(metric_name, True)),
                    n=_effective(n_samples.get(task)), primary=False, origin=ORIGIN_REPRODUCED,
                    source=str(path), run_time=run_time,
                    manifest=manifest_json(manifest.to_dict() if manifest else None),
                )
            )
        if not records:
            out.skip(path, f"task {task!r} has no metric values")
            continue
        # Headline: declared by the registry, else the task's first metric (lmms-eval lists the
        # metrics in the task's metric_list order, its main metric first by convention).
        headline = dataset_entry.headline if dataset_entry is not None and dataset_entry.headline else Headline(records[0].metric)
        marked = mark_primary(records, headline, str(path))
        primary = next((r for r in marked if r.primary), None)
        if primary is not None:
            headline_metrics[task] = (raw_names[primary.metric], primary.metric)
        out.records.extend(marked)
    if ctx.read_samples:
        for samples_path in samples_files(path):
            try:
                out.samples.extend(_read_samples(samples_path, shown, identity.variant, ctx, run_time, headline_metrics))
            except ResultFileError as error:
                if strict:
                    raise
                out.skip(samples_path, f"malformed: {error.problem}")
    return out


def samples_files(results_path: Path) -> list[Path]:
    """The samples files written by the same run as ``results_path`` (same folder and date id).

    lmms-eval names both files after the run's ``date_id``; several runs in one folder (one per
    ``--tasks`` call) are thereby kept apart. Samples of a run whose results file is missing are
    never read (they have no scores to go with).

    Returns:
        The matching ``*.jsonl`` files, sorted by name.
    """
    match = RESULTS_FILE.match(results_path.name)
    if match is None:
        return []
    found = []
    for candidate in sorted(results_path.parent.glob("*.jsonl")):
        sample = SAMPLES_FILE.match(candidate.name)
        if sample is None:
            continue
        if match.group("date_id") and sample.group("date_id") == match.group("date_id"):
            found.append(candidate)
        elif match.group("iso") and sample.group("iso") == match.group("iso"):
            found.append(candidate)
    return found


def _read_samples(
    path: Path, model: str, variant: str, ctx: ParseContext, run_time: str,
    headline_metrics: dict[str, tuple[str, str]] | None = None,
) -> list[SamplePrediction]:
    """One :class:`SamplePrediction` per line of a ``*_samples_<task>.jsonl`` file.

    ``headline_metrics`` (task -> (lmms-eval metric name, canonical metric) of the task's
    headline) says whose per-sample value is the sample's ``score`` (see :func:`_sample_score`).

    Raises:
        ResultFileError: An unreadable file, a line that is not JSON (a cut-off write), a
            sample without ``doc_id`` or a per-sample metric value that is not a number — named
            by line.
    """
    match = SAMPLES_FILE.match(path.name)
    task = (match.group("task") or match.group("task2")) if match else path.stem
    benchmark = ctx.registry.benchmark_name(TOOLKIT_LMMS_EVAL, task)
    metric_name, canonical = (headline_metrics or {}).get(task, ("", ""))
    if not metric_name:
        logger.warning("%s: task %r has no headline metric; its samples carry no per-item score", path, task)
    samples = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ResultFileError(path, f"cannot read samples file: {error}") from None
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as error:
            raise ResultFileError(path, f"line {line_number}: invalid JSON (truncated?): {error}") from None
        if not isinstance(doc, dict) or "doc_id" not in doc:
            raise ResultFileError(path, f"line {line_number}: a sample needs a 'doc_id'")
        score = _sample_score(doc, metric_name, canonical, path, line_number)
        samples.append(
            SamplePrediction(
                model=model, variant=variant, toolkit=TOOLKIT_LMMS_EVAL, benchmark=benchmark, dataset=task,
                sample_id=str(doc["doc_id"]), prediction=_first_response(doc.get("filtered_resps", doc.get("resps"))),
                target=_text(doc.get("target")), source=str(path), run_time=run_time, **score,
            )
        )
    return samples


def _sample_score(doc: dict, metric_name: str, canonical: str, path: Path, line_number: int) -> dict[str, Any]:
    """The per-sample value lmms-eval logged for the headline metric, as ``SamplePrediction`` fields.

    lmms-eval logs each metric's ``process_results`` output per document: a number (``accuracy``,
    ``exact_match``) or an object with a ``score`` (``pope_*``, ``mme_*``: ``question_id`` names the
    image, ``category`` the MME category). MME sums (``perception``, ``reasoning``) group the
    questions of an image (acc+), so their ``question_id`` becomes the ``group``. A document
    without the value (or an object without ``score``) has no score.

    Raises:
        ResultFileError: A value that is not a finite number.
    """
    value = doc.get(metric_name) if metric_name else None
    where = f"line {line_number}, {metric_name!r}"
    if isinstance(value, dict):
        if "score" not in value:
            return {}
        group = _text(value.get("question_id")) if canonical in MME_SUM_CATEGORIES else ""
        return {"score": number(value["score"], path, f"{where}.score"), "score_metric": metric_name,
                "group": group, "category": _text(value.get("category"))}
    if value is None:
        return {}
    if isinstance(value, bool):
        return {"score": float(value), "score_metric": metric_name}
    return {"score": number(value, path, where), "score_metric": metric_name}


def _first_response(value: Any) -> str:
    """``filtered_resps`` is a string (0.7) or a (nested) list of strings (older versions)."""
    while isinstance(value, list) and value:
        value = value[0]
    return _text(value if not isinstance(value, list) else "")


def _text(value: Any) -> str:
    """``str(value)``, with ``None`` as ``""``."""
    return "" if value is None else str(value)


def parse_model_args(text: str) -> dict[str, str]:
    """``"pretrained=a,variant=b"`` -> ``{"pretrained": "a", "variant": "b"}``.

    Only ``pretrained`` and ``variant`` are used (identity). Items without ``=`` are ignored here:
    lmms-eval itself accepted the string when it ran, so they are values of a previous key that
    contained a comma (JSON model args), not separate settings.
    """
    pairs = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            pairs[key.strip()] = value.strip()
    return pairs


def _effective(value: Any) -> int | None:
    """``n-samples.<task>.effective`` (documents actually evaluated, after ``--limit``), if an int."""
    if isinstance(value, dict) and isinstance(value.get("effective"), int):
        return value["effective"]
    return None


def _version(data: dict) -> str:
    """``lmms_eval_version`` as written; wheel installs write ``unknown@unknown``, recorded as ``""``."""
    version = str(data.get("lmms_eval_version") or "")
    return "" if version in ("", "unknown@unknown", "unknown") else version


def _run_time(path: Path, config: dict) -> str:
    """UTC run time from the file name and the recorded ``--timezone``.

    ``<date_id>_results.json`` is local time in ``config.resolved_cli_args.timezone`` (lmms-eval's
    default, Asia/Singapore, when not recorded); harness-style ``results_<ISO>.json`` names carry
    no zone and are taken as UTC; anything else falls back to the file's modification time.
    """
    match = RESULTS_FILE.match(path.name)
    resolved = config.get("resolved_cli_args") if isinstance(config.get("resolved_cli_args"), dict) else {}
    zone_name = str(resolved.get("timezone") or DEFAULT_TIMEZONE)
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        logger.warning("%s: unknown timezone %r; run time taken as UTC", path, zone_name)
        zone = dt.timezone.utc
    if match and match.group("date_id"):
        moment = dt.datetime.strptime(match.group("date_id"), "%Y%m%d_%H%M%S").replace(tzinfo=zone)
        return iso_utc(moment)
    if match and match.group("iso"):
        text = match.group("iso")
        for fmt in ("%Y-%m-%dT%H-%M-%S.%f", "%Y-%m-%dT%H-%M-%S"):
            try:
                return iso_utc(dt.datetime.strptime(text, fmt))
            except ValueError:
                continue
    return file_time(path)


def _load_object(path: Path) -> dict:
    """Decode a results file that must be a JSON object.

    Raises:
        ResultFileError: Unreadable, empty, invalid (e.g. truncated) JSON, or not an object.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ResultFileError(path, f"cannot read file: {error}") from None
    if not text.strip():
        raise ResultFileError(path, "file is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ResultFileError(path, f"invalid JSON (truncated?): {error}") from None
    if not isinstance(data, dict):
        raise ResultFileError(path, f"an lmms-eval results file is a JSON object, got {type(data).__name__}")
    return data
