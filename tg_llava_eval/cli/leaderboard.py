"""``tg-llava-eval leaderboard``: ``results.csv`` -> tables in md, tex, csv, xlsx, html and png.

Pure pandas/openpyxl/matplotlib (no torch import). Reported scores come from the reference CSV
shipped with the package (``--no-shipped-reference`` to leave it out) plus any ``--reference``
CSV with the same columns. Per-sample predictions for the answer-agreement table are read from
``--samples`` or, by default, from ``<results stem>.samples.csv`` when it exists.

Exit status: 0 on success, 1 when an input file is bad (the message names it), 2 on usage
errors.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tg_llava_eval.cli.collect import samples_path_for
from tg_llava_eval.cli.validation import require_file
from tg_llava_eval.errors import TGLlavaUsageError
from tg_llava_eval.leaderboards import FORMATS, build_leaderboard
from tg_llava_eval.leaderboards.build import DEFAULT_TITLE
from tg_llava_eval.results import (
    BenchmarkRegistry,
    ResultFileError,
    load_benchmark_specs,
    load_reference_scores,
    read_records_csv,
    read_samples_csv,
    records_to_frame,
    samples_to_frame,
)

logger = logging.getLogger(__name__)

HELP = "build leaderboard tables (md, tex, csv, xlsx, html, png) from results.csv"


def _formats(text: str) -> list[str]:
    """Parse ``--formats md,tex,...``; unknown names are a usage error listing the valid ones."""
    formats = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise argparse.ArgumentTypeError(f"unknown format(s) {unknown or text!r}; choose from {','.join(FORMATS)}")
    return formats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``leaderboard``.

    Several records CSVs can be combined (e.g. one per machine); reported scores come from the
    shipped reference CSV plus ``--reference`` files; ``--benchmarks`` must be the file given to
    ``collect`` when the results use custom benchmarks (labels, order, tolerances).
    """
    parser.add_argument("results", nargs="+", type=Path, metavar="RESULTS_CSV", help="records CSV(s) written by collect")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    parser.add_argument("--reference", type=Path, action="append", default=[], help="extra reference CSV (repeatable)")
    parser.add_argument("--no-shipped-reference", action="store_true", help="leave out the shipped reference scores")
    parser.add_argument("--samples", type=Path, action="append", default=None, help="samples CSV (repeatable)")
    parser.add_argument("--benchmarks", type=Path, default=None, help="JSON with extra benchmark specs (docs/results.md)")
    parser.add_argument(
        "--formats", type=_formats, default=list(FORMATS), help=f"comma-separated subset of {','.join(FORMATS)} (default: all)"
    )
    parser.add_argument("--title", default=DEFAULT_TITLE, help="document title")


def run(args: argparse.Namespace) -> int:
    """Run ``leaderboard``; returns the exit status.

    Reads and validates every input first (records, references, samples), so a bad file stops
    the command before any output is written; then builds the tables and writes the formats.
    """
    for path in args.results:
        require_file(path, "RESULTS_CSV")
    for path in [*args.reference, *(args.samples or [])]:
        require_file(path, "--reference" if path in args.reference else "--samples")
    if args.benchmarks is not None:
        require_file(args.benchmarks, "--benchmarks")
    if args.output.exists() and not args.output.is_dir():
        raise TGLlavaUsageError(f"-o/--output {str(args.output)!r}: is a file, expected a folder")
    try:
        registry = BenchmarkRegistry()
        if args.benchmarks is not None:
            registry.extend(*load_benchmark_specs(args.benchmarks))
        records = [r for path in args.results for r in read_records_csv(path)]
        # Reported numbers (with citations) join the reproduced ones in one frame.
        records += load_reference_scores(args.reference, registry, shipped=not args.no_shipped_reference)
        # Samples: the files given, else the sidecar `collect` wrote next to each records CSV.
        sample_paths = args.samples if args.samples is not None else [
            p for p in (samples_path_for(path) for path in args.results) if p.exists()
        ]
        samples = [s for path in sample_paths for s in read_samples_csv(path)]
    except ResultFileError as error:
        logger.error("%s", error)
        return 1
    output = build_leaderboard(
        records_to_frame(records), args.output, samples=samples_to_frame(samples), registry=registry,
        formats=args.formats, title=args.title,
    )
    written = sum(len(files) for files in output.files.values())
    non_empty = sum(not t.empty() for t in output.tables)
    print(f"wrote {written} file(s) to {args.output}: {non_empty} of {len(output.tables)} table(s) have rows")
    return 0


__all__ = ["HELP", "add_arguments", "run"]
