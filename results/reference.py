"""Reported scores (publications) -> :class:`ScoreRecord` with a citation per row.

The shipped ``data/reference_scores.csv`` (published scores, each row with its citation)
and any user CSV with the same ten columns load through
:func:`read_reference_csv`::

    method,llm,resolution,visual_tokens,benchmark,split,metric,score,toolkit,source

Each row becomes one ``origin="reported"`` record: ``toolkit`` = the CSV's toolkit wording,
``citation`` = its ``source``, ``source`` = ``<file>:<line>``, ``llm`` canonicalised
(``Vicuna-13B-v1.5`` -> ``Vicuna-13B``), ``model`` = ``"<method> <llm> @<res>px/<tokens>tok"``. The
benchmark registry decides the scale (MME is a sum) and which rows are headline numbers
(``primary``; e.g. MME perception, not MME reasoning). TG-LLaVA's own numbers are not in the shipped
file (the paper's tables were not available); add them in a user CSV with a citation.
"""

from __future__ import annotations

import csv
import logging
from importlib import resources
from pathlib import Path

from tg_llava_eval.results.benchmarks import BenchmarkRegistry
from tg_llava_eval.results.errors import ResultFileError
from tg_llava_eval.results.identity import canonical_llm
from tg_llava_eval.results.records import ORIGIN_REPORTED, SCALE_PERCENT, ScoreRecord
from tg_llava_eval.results.score_tables import number

logger = logging.getLogger(__name__)

#: Columns of a reference CSV, in order.
REFERENCE_COLUMNS = ("method", "llm", "resolution", "visual_tokens", "benchmark", "split", "metric", "score", "toolkit", "source")
#: Name of the shipped file inside the package's ``data`` folder.
SHIPPED_REFERENCE = "reference_scores.csv"


def shipped_reference_path() -> Path:
    """Path of the reference CSV shipped as package data."""
    return Path(str(resources.files("tg_llava_eval.results").joinpath("data", SHIPPED_REFERENCE)))


def read_reference_csv(path: str | Path, registry: BenchmarkRegistry | None = None) -> list[ScoreRecord]:
    """Load a reference CSV as reported records.

    Args:
        path: The CSV (ten columns, see the module docstring).
        registry: Benchmark registry for scales and headline rows (defaults if ``None``).

    Returns:
        One record per row, in file order.

    Raises:
        ResultFileError: Unreadable file, missing columns, an empty required cell
            (``method``, ``benchmark``, ``score``, ``source``), a non-numeric score, or a row with
            the wrong number of fields — named by line.
    """
    path = Path(path)
    registry = registry or BenchmarkRegistry()
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle, strict=True))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ResultFileError(path, f"cannot read reference CSV: {error}") from None
    if not rows:
        raise ResultFileError(path, "file is empty")
    header = rows[0]
    missing = [c for c in REFERENCE_COLUMNS if c not in header]
    if missing:
        raise ResultFileError(path, f"missing column(s) {missing}; a reference CSV needs {list(REFERENCE_COLUMNS)}")
    records = []
    for line, cells in enumerate(rows[1:], start=2):
        if not cells:
            continue
        if len(cells) != len(header):
            raise ResultFileError(path, f"line {line}: {len(cells)} field(s) but the header has {len(header)}")
        row = dict(zip(header, cells))
        for column in ("method", "benchmark", "score", "source"):
            if not row[column].strip():
                raise ResultFileError(path, f"line {line}: column {column!r} is empty")
        value = number(row["score"], path, f"line {line}, column 'score'")
        spec = registry.spec(row["benchmark"])
        primary = spec is None or spec.reference_headline is None or (row["split"], row["metric"]) in spec.reference_headline
        llm = canonical_llm(row["llm"])
        records.append(
            ScoreRecord(
                model=_reference_model(row["method"], llm, row["resolution"], row["visual_tokens"]),
                variant="", method=row["method"], llm=llm, toolkit=row["toolkit"], toolkit_version="",
                benchmark=row["benchmark"], dataset="", split=row["split"], category="", metric=row["metric"],
                value=value, scale=spec.scale if spec is not None else SCALE_PERCENT, higher_is_better=True,
                n=None, primary=primary, origin=ORIGIN_REPORTED, source=f"{path}:{line}", citation=row["source"],
            )
        )
    if not records:
        raise ResultFileError(path, "no data rows below the header")
    return records


def load_reference_scores(
    extra: list[str | Path] = (), registry: BenchmarkRegistry | None = None, shipped: bool = True
) -> list[ScoreRecord]:
    """The shipped reference scores plus user CSVs.

    Args:
        extra: User reference CSVs (same columns), loaded after the shipped file.
        registry: Benchmark registry (defaults if ``None``).
        shipped: Include the shipped file.

    Returns:
        All reported records.
    """
    paths = ([shipped_reference_path()] if shipped else []) + [Path(p) for p in extra]
    records = []
    for path in paths:
        records.extend(read_reference_csv(path, registry))
        logger.debug("loaded reference scores from %s", path)
    return records


def _reference_model(method: str, llm: str, resolution: str, visual_tokens: str) -> str:
    """Display name of a reported model: method, LLM and, when given, resolution/token budget."""
    name = f"{method} {llm}".strip()
    if resolution.strip() and visual_tokens.strip():
        name += f" @{resolution.strip()}px/{visual_tokens.strip()}tok"
    return name
