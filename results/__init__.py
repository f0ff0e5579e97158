"""``tg_llava_eval.results`` (repository folder ``results/``): toolkit outputs and published
numbers -> typed score records (no torch).

Pipeline (``docs/results.md``)::

    VLMEvalKit work dirs ─┐
    lmms-eval output dirs ┼─ collect() ─> [ScoreRecord] ─> records_to_frame() ─> results.csv
    reference CSVs ───────┘  (parsers)     [SamplePrediction] ─> samples.csv

Modules:

* :mod:`.records` — :class:`ScoreRecord`, :class:`SamplePrediction`, frame/CSV conversion;
* :mod:`.benchmarks` — the benchmark registry (dataset ids, headline metrics, scales, tolerances);
* :mod:`.identity` — model name -> variant/method/LLM (declared tables, user mapping);
* :mod:`.manifest` — the run manifest ``tg_llava_run.json`` written by our wrappers;
* :mod:`.vlmevalkit_outputs`, :mod:`.lmms_eval_outputs` — the two toolkits' parsers;
* :mod:`.reference` — reported scores with citations (shipped CSV + user CSVs);
* :mod:`.collect` — discovery, dispatch, duplicate resolution.

This package imports pandas (and openpyxl to read VLMEvalKit's xlsx predictions), never torch.
"""

from tg_llava_eval.results.benchmarks import BenchmarkRegistry, BenchmarkSpec, DatasetEntry, Headline, load_benchmark_specs
from tg_llava_eval.results.collect import CollectResult, collect, newest_wins
from tg_llava_eval.results.errors import ResultFileError, Skip
from tg_llava_eval.results.identity import VARIANTS, ModelIdentity, VariantInfo, read_model_mapping, resolve_identity
from tg_llava_eval.results.manifest import MANIFEST_NAME, RunManifest, read_run_manifest, write_run_manifest
from tg_llava_eval.results.parsing import ParseContext
from tg_llava_eval.results.records import (
    COLUMNS,
    SamplePrediction,
    ScoreRecord,
    frame_to_records,
    read_records_csv,
    read_samples_csv,
    records_to_frame,
    samples_to_frame,
    write_records_csv,
    write_samples_csv,
)
from tg_llava_eval.results.reference import load_reference_scores, read_reference_csv, shipped_reference_path

__all__ = [
    "COLUMNS", "MANIFEST_NAME", "VARIANTS", "BenchmarkRegistry", "BenchmarkSpec", "CollectResult", "DatasetEntry",
    "Headline", "ModelIdentity", "ParseContext", "ResultFileError", "RunManifest", "SamplePrediction",
    "ScoreRecord", "Skip", "VariantInfo", "collect", "frame_to_records", "load_benchmark_specs",
    "load_reference_scores", "newest_wins", "read_model_mapping", "read_records_csv", "read_reference_csv",
    "read_run_manifest", "read_samples_csv", "records_to_frame", "resolve_identity", "samples_to_frame",
    "shipped_reference_path", "write_records_csv", "write_run_manifest", "write_samples_csv",
]
