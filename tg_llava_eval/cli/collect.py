"""``tg-llava-eval collect``: toolkit output trees -> ``results.csv`` (+ ``results.samples.csv``).

Pure pandas (no torch import). Every score file of VLMEvalKit and lmms-eval under the given paths
becomes one row of ``results.csv`` (columns of :data:`tg_llava_eval.results.COLUMNS`); per-sample
answers, used by the leaderboard's cross-toolkit agreement, go to ``<output stem>.samples.csv``.

Exit status: 0 on success, 1 when a path or file is bad (the message names it; ``--skip-bad``
turns malformed files into listed skips instead), 2 on usage errors.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tqdm import tqdm

from tg_llava_eval.cli.validation import require_file, require_output_file
from tg_llava_eval.errors import TGLlavaUsageError
from tg_llava_eval.results import (
    BenchmarkRegistry,
    ParseContext,
    ResultFileError,
    collect,
    load_benchmark_specs,
    read_model_mapping,
    write_records_csv,
    write_samples_csv,
)

logger = logging.getLogger(__name__)

HELP = "collect VLMEvalKit and lmms-eval scores into one results.csv"


def samples_path_for(results_csv: Path) -> Path:
    """Default samples file next to a results CSV: ``results.csv`` -> ``results.samples.csv``."""
    return results_csv.with_name(f"{results_csv.stem}.samples.csv")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``collect``.

    Paths may be VLMEvalKit work dirs (or single model folders), lmms-eval output paths, or
    single score/results files. ``--models`` and ``--benchmarks`` extend the declared tables
    (model identity, benchmark registry) without code changes; see ``docs/results.md``.
    """
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="work dirs, output dirs or single files")
    parser.add_argument("-o", "--output", type=Path, required=True, help="records CSV to write (e.g. results.csv)")
    parser.add_argument("--samples", type=Path, default=None, help="samples CSV (default: <output stem>.samples.csv)")
    parser.add_argument("--no-samples", action="store_true", help="do not read per-sample predictions")
    parser.add_argument(
        "--models", type=Path, default=None, metavar="CSV",
        help="model mapping CSV model,variant[,method,llm,name]: exact toolkit model names (VLMEvalKit model folder, "
             "lmms-eval pretrained= path) -> project variant; 'name' sets the name the tables show",
    )
    parser.add_argument("--benchmarks", type=Path, default=None, help="JSON with extra benchmark specs (docs/results.md)")
    parser.add_argument("--skip-bad", action="store_true", help="skip malformed files with a warning instead of failing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _progress(disabled: bool):
    """A progress wrapper for :func:`collect`: a tqdm bar on stderr (auto-off when not a TTY)."""

    def wrap(units, total):
        return tqdm(units, total=total, desc="collect", unit="run", disable=True if disabled else None, leave=False)

    return wrap


def run(args: argparse.Namespace) -> int:
    """Run ``collect``; returns the exit status.

    Prints what was written (records, samples), which models the mapping renamed (toolkit name
    -> display name), how many duplicates were resolved and every skipped item, so nothing that
    was not turned into a record goes unmentioned. A bad input (a malformed mapping row included)
    is logged as an error naming the file and gives status 1 without writing any output.
    """
    for path in args.paths:
        if not path.exists():
            raise TGLlavaUsageError(f"PATH {str(path)!r}: no such file or folder")
    require_output_file(args.output, "-o/--output")
    if args.samples is not None:
        require_output_file(args.samples, "--samples")
    for flag in ("models", "benchmarks"):
        if getattr(args, flag) is not None:
            require_file(getattr(args, flag), f"--{flag}")
    try:
        registry = BenchmarkRegistry()
        if args.benchmarks is not None:
            registry.extend(*load_benchmark_specs(args.benchmarks))
        mapping = read_model_mapping(args.models) if args.models is not None else {}
        ctx = ParseContext(registry=registry, mapping=mapping, read_samples=not args.no_samples)
        result = collect(args.paths, ctx, strict=not args.skip_bad, progress=_progress(args.no_progress))
    except ResultFileError as error:
        logger.error("%s", error)
        return 1
    write_records_csv(result.records, args.output)
    lines = [f"wrote {len(result.records)} score(s) to {args.output}"]
    if result.samples:
        samples_path = args.samples or samples_path_for(args.output)
        write_samples_csv(result.samples, samples_path)
        lines.append(f"wrote {len(result.samples)} sample prediction(s) to {samples_path}")
    if result.renamed:
        lines.append(f"{len(result.renamed)} model(s) renamed by {args.models}:")
        lines.extend(f"  {toolkit} {model!r} -> {shown!r}" for (toolkit, model), shown in result.renamed.items())
    if result.duplicates:
        lines.append(f"{len(result.duplicates)} duplicate score(s) resolved (newest run wins; see warnings)")
    if result.skips:
        lines.append(f"{len(result.skips)} item(s) skipped:")
        lines.extend(f"  {skip}" for skip in result.skips)
    print("\n".join(lines))
    return 0
