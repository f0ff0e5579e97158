"""The benchmark registry: toolkit dataset ids/tasks -> canonical benchmarks, metrics, headlines.

Everything the results layer knows about a benchmark is declared here once, as typed records
(the HF leaderboard template's ``Tasks`` enum, STYLE anchor F):

* :class:`BenchmarkSpec` — canonical name (as in ``reference_scores.csv``), the VLMEvalKit dataset
  ids and lmms-eval task names that measure it (each with the split it stands for), the headline
  record per toolkit (metric, split, category), the scale, the reproduction tolerance, and which
  rows of the reference CSV are its headline;
* :data:`LMMS_METRICS` — lmms-eval metric names -> canonical metric name and scale (fractions are
  multiplied by 100). A metric it does not list keeps its name and the ``raw`` scale, with a
  warning.

Users extend the registry with a JSON file (``collect --benchmarks FILE``), see
:func:`load_benchmark_specs`; the format is documented in ``docs/results.md``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tg_llava_eval.results.errors import ResultFileError
from tg_llava_eval.results.records import SCALE_PERCENT, SCALE_RAW, SCALE_SUM, SCALES, TOOLKIT_LMMS_EVAL, TOOLKIT_VLMEVALKIT

logger = logging.getLogger(__name__)

#: Default tolerance (in points of the benchmark's scale) for "reported vs reproduced".
DEFAULT_TOLERANCE = 1.0


@dataclass(frozen=True)
class Headline:
    """Which record of a dataset is its headline number (``primary``).

    Attributes:
        metric: Canonical metric (``accuracy``, ``f1``, ``perception``...).
        split: Split of the headline record; ``None`` = whatever split the file has, provided it has
            exactly one.
        category: Category of the headline record (``""`` = the overall score).
    """

    metric: str
    split: str | None = None
    category: str = ""


@dataclass(frozen=True)
class DatasetEntry:
    """One toolkit dataset/task measuring a benchmark.

    Attributes:
        toolkit: ``vlmevalkit`` or ``lmms-eval``.
        name: Dataset id (``MMBench_DEV_EN``) or task name (``mmbench_en_dev``), exact.
        split: Split this dataset stands for, recorded when the score file states none (lmms-eval
            tasks never do). ``None`` = keep the file's.
        headline: Headline record; ``None`` = the family default of the parser.
    """

    toolkit: str
    name: str
    split: str | None = None
    headline: Headline | None = None


@dataclass(frozen=True)
class BenchmarkSpec:
    """One benchmark.

    Attributes:
        name: Canonical name, as in the reference CSV's ``benchmark`` column.
        datasets: Toolkit datasets/tasks that measure it.
        scale: Scale of the headline metric (``percent`` or ``sum``), used for reference rows.
        tolerance: Allowed |reproduced - reported| before a row is flagged, in scale points.
        reference_headline: ``(split, metric)`` pairs of reference-CSV rows that count as this
            benchmark's headline; ``None`` = every row of the benchmark.
        label: Short column label in tables (defaults to ``name``).
    """

    name: str
    datasets: tuple[DatasetEntry, ...] = ()
    scale: str = SCALE_PERCENT
    tolerance: float = DEFAULT_TOLERANCE
    reference_headline: tuple[tuple[str, str], ...] | None = None
    label: str = ""

    @property
    def column_label(self) -> str:
        """The name shown as a table column."""
        return self.label or self.name


def _vlm(name: str, split: str | None = None, headline: Headline | None = None) -> DatasetEntry:
    """A VLMEvalKit dataset entry (shorthand for the table below)."""
    return DatasetEntry(TOOLKIT_VLMEVALKIT, name, split, headline)


def _lmms(name: str, split: str | None = None, headline: Headline | None = None) -> DatasetEntry:
    """An lmms-eval task entry (shorthand for the table below)."""
    return DatasetEntry(TOOLKIT_LMMS_EVAL, name, split, headline)


_ACC = Headline("accuracy")
_PERCEPTION = Headline("perception")
_F1 = Headline("f1")

#: The benchmarks of LLaVA-style tables (ids from vlmevalkit.md §4 and lmms-eval's task list).
DEFAULT_BENCHMARKS: tuple[BenchmarkSpec, ...] = (
    # MMBench: VLMEvalKit's _acc.csv has one row per split; LLaVA-style tables report dev (EN).
    # lmms-eval's mmbench tasks score with a GPT judge (gpt_eval_score) unless configured otherwise.
    BenchmarkSpec(
        "MMBench",
        (
            _vlm("MMBench_DEV_EN", headline=Headline("accuracy", "dev")),
            _vlm("MMBench_DEV_EN_V11", headline=Headline("accuracy", "dev")),
            _vlm("MMBench_TEST_EN", headline=Headline("accuracy", "test")),
            _lmms("mmbench_en_dev", "dev", _ACC),
            _lmms("mmbench_en_test", "test", _ACC),
        ),
        reference_headline=(
            ("dev (mmbench_dev_20230712)", "accuracy"),
            ("test (EN)", "accuracy"),
            ("not stated", "as reported (README column 'MMB')"),
        ),
    ),
    BenchmarkSpec(
        "MMBench-CN",
        (
            _vlm("MMBench_DEV_CN", headline=Headline("accuracy", "dev")),
            _vlm("MMBench_TEST_CN", headline=Headline("accuracy", "test")),
            _lmms("mmbench_cn_dev", "dev", _ACC),
        ),
    ),
    # MME: the headline is the perception sum (max 2000), as in the LLaVA-1.5 paper; reasoning
    # (lmms-eval: cognition, max 800) is recorded but not the headline. Tolerance in points of
    # the sum: 30 of 2000 is the spread seen between toolkits for one checkpoint (issue #1029).
    BenchmarkSpec(
        "MME",
        (_vlm("MME", headline=_PERCEPTION), _lmms("mme", headline=_PERCEPTION)),
        scale=SCALE_SUM,
        tolerance=30.0,
        reference_headline=(
            ("perception", "score (max 2000)"),
            ("perception", "score (exact matching)"),
            ("perception", "score (first value of the 'P/C' cell)"),
            ("not stated", "as reported (README column 'MME')"),
        ),
    ),
    # POPE: VLMEvalKit's "Overall" column is F1 x 100 (POPE_rating); lmms-eval's pope_f1_score.
    BenchmarkSpec("POPE", (_vlm("POPE", headline=_F1), _lmms("pope", headline=_F1))),
    # SEED-Bench: the image subset; LLaVA's own seed.sh also includes video frames (see the
    # reference CSV's split wording), which the reported-vs-reproduced table shows next to Δ.
    BenchmarkSpec(
        "SEED-Bench",
        (_vlm("SEEDBench_IMG", "image", _ACC), _lmms("seedbench", "image", Headline("seed_image"))),
        reference_headline=(
            ("LLaVA seed.sh set (image + video-frame questions)", "accuracy"),
            ("image (SEED-IMG)", "accuracy"),
            ("image (SEEDBench_IMG)", "accuracy (without ChatGPT extraction)"),
            ("not stated", "as reported (README column 'SEED')"),
        ),
    ),
    # MMMU: VLMEvalKit scores dev and validation in one file; papers report validation.
    BenchmarkSpec(
        "MMMU",
        (_vlm("MMMU_DEV_VAL", headline=Headline("accuracy", "validation")), _lmms("mmmu_val", "validation", _ACC)),
    ),
    BenchmarkSpec("MMStar", (_vlm("MMStar", headline=_ACC), _lmms("mmstar", headline=_ACC))),
    BenchmarkSpec("AI2D", (_vlm("AI2D_TEST", "test", _ACC), _lmms("ai2d", "test", _ACC))),
    # ScienceQA: the image subset of the test split is the LLaVA headline (SQA-IMG).
    BenchmarkSpec(
        "ScienceQA",
        (
            _vlm("ScienceQA_TEST", "test", _ACC),
            _vlm("ScienceQA_VAL", "val"),
            _lmms("scienceqa_img", "test", _ACC),
        ),
        reference_headline=(
            ("image subset (SQA-IMG; MODEL_ZOO 'SQA' column)", "accuracy"),
            ("test, image subset", "accuracy"),
            ("test", "accuracy"),
        ),
    ),
    BenchmarkSpec("GQA", (_vlm("GQA_TestDev_Balanced", "testdev_balanced", _ACC), _lmms("gqa", "testdev_balanced", _ACC))),
    BenchmarkSpec("TextVQA", (_vlm("TextVQA_VAL", "val", _ACC), _lmms("textvqa_val", "val", _ACC))),
    BenchmarkSpec("VQAv2", (_lmms("vqav2_val", "val", _ACC),)),
    BenchmarkSpec("VizWiz", (_lmms("vizwiz_vqa_val", "val", _ACC),)),
    # HallusionBench: aAcc (question-level accuracy) is the headline; fAcc/qAcc are recorded too.
    BenchmarkSpec(
        "HallusionBench",
        (_vlm("HallusionBench", headline=Headline("aAcc")), _lmms("hallusion_bench_image", headline=Headline("aAcc"))),
        reference_headline=(("overall", "aAcc"),),
    ),
    # OCRBench: VLMEvalKit's "Final Score Norm" (0-100); the 0-1000 sum is kept as score_sum.
    BenchmarkSpec(
        "OCRBench",
        (_vlm("OCRBench", headline=Headline("score")), _lmms("ocrbench", headline=_ACC)),
    ),
    # MM-Vet and LLaVA-Bench need a GPT judge; only the official-evaluator reference rows are
    # headlines (GPT-4-Turbo re-judged rows are kept but not compared).
    BenchmarkSpec(
        "MM-Vet",
        (_vlm("MMVet", headline=_ACC), _lmms("mmvet", headline=Headline("gpt_eval_score"))),
        reference_headline=(
            ("full set", "overall (official GPT-4 evaluator)"),
            ("full set", "Overall (official evaluator, GPT-4-0314)"),
            ("not stated", "as reported (README column 'MMVet')"),
        ),
    ),
    BenchmarkSpec(
        "LLaVA-Bench-in-the-Wild",
        (_vlm("LLaVABench"), _lmms("llava_in_the_wild")),
        reference_headline=(
            ("in-the-wild", "GPT-4 relative score"),
            ("in-the-wild", "overall (official evaluator, GPT-4-0314)"),
        ),
        label="LLaVA-W",
    ),
    # Benchmarks reported by the concurrent methods or LLaVA-1.5 without a project headline rule.
    BenchmarkSpec("MathVista", (_vlm("MathVista_MINI", "testmini"), _lmms("mathvista_testmini"))),
    BenchmarkSpec("RealWorldQA", (_vlm("RealWorldQA"), _lmms("realworldqa"))),
    BenchmarkSpec("CCBench", (_vlm("CCBench"),)),
    BenchmarkSpec("DocVQA", (_vlm("DocVQA_VAL", "val"), _lmms("docvqa_val", "val"))),
    # Grounding benchmarks of the concurrent methods (no toolkit dataset here); headline: val.
    *(
        BenchmarkSpec(name, reference_headline=(("val", "as reported (README RefCOCO table)"),))
        for name in ("RefCOCO", "RefCOCO+", "RefCOCOg")
    ),
    BenchmarkSpec(
        "RefCOCO/RefCOCO+/RefCOCOg",
        reference_headline=(("average of the 8 splits", "as reported (README column 'Avg')"),),
        label="RefCOCO avg",
    ),
)


@dataclass(frozen=True)
class MetricSpec:
    """How an lmms-eval metric becomes a record: canonical name and scale.

    ``fraction`` metrics (0-1) are multiplied by 100 and recorded as ``percent``.
    """

    name: str
    scale: str  # "fraction", "percent", "sum" or "raw"


#: lmms-eval metric names (the part before ``,<filter>``) of the tasks in the registry. Scales
#: follow each task's aggregation: ``mean`` of 0/1 scores and the POPE aggregations are fractions,
#: MME sums category scores, the GPT-judged and HallusionBench metrics are already percentages.
LMMS_METRICS: dict[str, MetricSpec] = {
    "acc": MetricSpec("accuracy", "fraction"),
    "accuracy": MetricSpec("accuracy", "fraction"),
    "exact_match": MetricSpec("accuracy", "fraction"),
    "mmmu_acc": MetricSpec("accuracy", "fraction"),
    "average": MetricSpec("accuracy", "fraction"),
    "ocrbench_accuracy": MetricSpec("accuracy", "fraction"),
    "anls": MetricSpec("anls", "fraction"),
    "seed_image": MetricSpec("seed_image", "fraction"),
    "seed_all": MetricSpec("seed_all", "fraction"),
    "gpt_eval_score": MetricSpec("gpt_eval_score", "percent"),
    "pope_accuracy": MetricSpec("accuracy", "fraction"),
    "pope_precision": MetricSpec("precision", "fraction"),
    "pope_recall": MetricSpec("recall", "fraction"),
    "pope_f1_score": MetricSpec("f1", "fraction"),
    "pope_yes_ratio": MetricSpec("yes_ratio", "fraction"),
    "mme_perception_score": MetricSpec("perception", "sum"),
    "mme_cognition_score": MetricSpec("reasoning", "sum"),
    "aAcc": MetricSpec("aAcc", "percent"),
    "fAcc": MetricSpec("fAcc", "percent"),
    "qAcc": MetricSpec("qAcc", "percent"),
}
_METRIC_SCALES = ("fraction", SCALE_PERCENT, SCALE_SUM, SCALE_RAW)

#: MME's summed scores: each category scores ``acc + acc+`` (both in %), where acc+ counts an
#: image right only when both its questions are right; a sum adds its categories' scores. The
#: category lists are VLMEvalKit's ``MME_rating`` ``super_cates`` (lmms-eval's ``mme`` task uses the
#: same ten and four). Per-item scores of these metrics carry the image as their ``group``.
MME_SUM_CATEGORIES: dict[str, tuple[str, ...]] = {
    "perception": (
        "OCR", "artwork", "celebrity", "color", "count", "existence", "landmark", "position", "posters", "scene",
    ),
    "reasoning": ("code_reasoning", "commonsense_reasoning", "numerical_calculation", "text_translation"),
}


@dataclass
class BenchmarkRegistry:
    """Lookup over benchmark specs (the defaults plus user additions).

    Attributes:
        specs: Specs in display order (table columns follow it).
        metrics: lmms-eval metric table (defaults plus user additions).
    """

    specs: list[BenchmarkSpec] = field(default_factory=lambda: list(DEFAULT_BENCHMARKS))
    metrics: dict[str, MetricSpec] = field(default_factory=lambda: dict(LMMS_METRICS))

    def __post_init__(self) -> None:
        self._rebuild()

    def _rebuild(self) -> None:
        """Index specs by name and datasets by (toolkit, name); a clash is a ``ValueError``."""
        self._by_name = {}
        self._by_dataset: dict[tuple[str, str], tuple[BenchmarkSpec, DatasetEntry]] = {}
        for spec in self.specs:
            if spec.name in self._by_name:
                raise ValueError(f"benchmark {spec.name!r} is declared twice")
            self._by_name[spec.name] = spec
            for entry in spec.datasets:
                key = (entry.toolkit, entry.name)
                if key in self._by_dataset:
                    raise ValueError(f"{entry.toolkit} dataset {entry.name!r} is declared for two benchmarks")
                self._by_dataset[key] = (spec, entry)

    def extend(self, specs: Iterable[BenchmarkSpec], metrics: dict[str, MetricSpec] | None = None) -> None:
        """Add specs (a spec with an existing name replaces it) and lmms-eval metric entries."""
        new = {s.name: s for s in specs}
        self.specs = [new.pop(s.name, s) for s in self.specs] + list(new.values())
        self.metrics.update(metrics or {})
        self._rebuild()

    def spec(self, benchmark: str) -> BenchmarkSpec | None:
        """The spec named ``benchmark``, or ``None``."""
        return self._by_name.get(benchmark)

    def lookup(self, toolkit: str, dataset: str) -> tuple[BenchmarkSpec | None, DatasetEntry | None]:
        """Spec and entry of a toolkit dataset/task (exact name), ``(None, None)`` if unknown."""
        return self._by_dataset.get((toolkit, dataset), (None, None))

    def benchmark_name(self, toolkit: str, dataset: str) -> str:
        """Canonical benchmark of a dataset; the dataset name itself when unknown."""
        spec, _ = self.lookup(toolkit, dataset)
        return spec.name if spec is not None else dataset

    def order(self, benchmarks: Iterable[str]) -> list[str]:
        """``benchmarks`` sorted: registry order first, then unknown names alphabetically."""
        position = {s.name: i for i, s in enumerate(self.specs)}
        unique = set(benchmarks)
        return sorted(unique, key=lambda b: (position.get(b, len(position)), b))

    def label(self, benchmark: str) -> str:
        """Column label of a benchmark."""
        spec = self.spec(benchmark)
        return spec.column_label if spec is not None else benchmark

    def tolerance(self, benchmark: str) -> float:
        """Reproduction tolerance of a benchmark (:data:`DEFAULT_TOLERANCE` when unknown)."""
        spec = self.spec(benchmark)
        return spec.tolerance if spec is not None else DEFAULT_TOLERANCE


def load_benchmark_specs(path: str | Path) -> tuple[list[BenchmarkSpec], dict[str, MetricSpec]]:
    """Read user benchmark specs from JSON.

    Format::

        {"benchmarks": [{"name": "TinyColour", "scale": "percent", "tolerance": 1.0,
                         "datasets": [{"toolkit": "vlmevalkit", "name": "tinymcq",
                                       "split": null, "headline": {"metric": "accuracy",
                                       "split": "dev", "category": ""}}]}],
         "lmms_metrics": {"my_metric": {"name": "accuracy", "scale": "fraction"}}}

    Args:
        path: The JSON file.

    Returns:
        ``(specs, lmms metric entries)``.

    Raises:
        ResultFileError: Invalid JSON or a field of the wrong type/value (named by its path).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ResultFileError(path, f"cannot read benchmark specs: {error}") from None
    if not isinstance(data, dict) or set(data) - {"benchmarks", "lmms_metrics"}:
        raise ResultFileError(path, "benchmark specs must be an object with keys 'benchmarks' and/or 'lmms_metrics'")
    items = _list(data.get("benchmarks", []), path, "benchmarks")
    specs = [_spec_from_json(item, path, f"benchmarks[{i}]") for i, item in enumerate(items)]
    metrics = {}
    for name, item in _dict(data.get("lmms_metrics", {}), path, "lmms_metrics").items():
        item = _dict(item, path, f"lmms_metrics.{name}")
        scale = item.get("scale")
        if scale not in _METRIC_SCALES:
            raise ResultFileError(path, f"lmms_metrics.{name}.scale must be one of {_METRIC_SCALES}, got {scale!r}")
        metrics[name] = MetricSpec(_str(item.get("name", name), path, f"lmms_metrics.{name}.name"), scale)
    return specs, metrics


def _spec_from_json(item: Any, path: Path, where: str) -> BenchmarkSpec:
    """One ``benchmarks[i]`` object -> :class:`BenchmarkSpec`.

    Every field is checked with its JSON path (``benchmarks[0].datasets[1].toolkit``) in the
    message, so an error in a long specs file points at the exact entry.

    Raises:
        ResultFileError: Unknown keys, wrong types or values out of their vocabularies.
    """
    item = _dict(item, path, where)
    unknown = set(item) - {"name", "datasets", "scale", "tolerance", "reference_headline", "label"}
    if unknown:
        raise ResultFileError(path, f"{where}: unknown key(s) {sorted(unknown)}")
    scale = item.get("scale", SCALE_PERCENT)
    if scale not in SCALES:
        raise ResultFileError(path, f"{where}.scale must be one of {SCALES}, got {scale!r}")
    tolerance = item.get("tolerance", DEFAULT_TOLERANCE)
    if not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool) or tolerance < 0:
        raise ResultFileError(path, f"{where}.tolerance must be a non-negative number, got {tolerance!r}")
    datasets = []
    for j, entry in enumerate(_list(item.get("datasets", []), path, f"{where}.datasets")):
        at = f"{where}.datasets[{j}]"
        entry = _dict(entry, path, at)
        toolkit = entry.get("toolkit")
        if toolkit not in (TOOLKIT_VLMEVALKIT, TOOLKIT_LMMS_EVAL):
            raise ResultFileError(path, f"{at}.toolkit must be 'vlmevalkit' or 'lmms-eval', got {toolkit!r}")
        headline = None
        if entry.get("headline") is not None:
            h = _dict(entry["headline"], path, f"{at}.headline")
            headline = Headline(
                metric=_str(h.get("metric"), path, f"{at}.headline.metric"),
                split=None if h.get("split") is None else _str(h["split"], path, f"{at}.headline.split"),
                category=_str(h.get("category", ""), path, f"{at}.headline.category"),
            )
        datasets.append(
            DatasetEntry(
                toolkit=toolkit,
                name=_str(entry.get("name"), path, f"{at}.name"),
                split=None if entry.get("split") is None else _str(entry["split"], path, f"{at}.split"),
                headline=headline,
            )
        )
    reference = item.get("reference_headline")
    if reference is not None:
        pairs = _list(reference, path, f"{where}.reference_headline")
        if not all(isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in pairs):
            raise ResultFileError(path, f"{where}.reference_headline must be a list of [split, metric] pairs")
        reference = tuple((p[0], p[1]) for p in pairs)
    return BenchmarkSpec(
        name=_str(item.get("name"), path, f"{where}.name"),
        datasets=tuple(datasets),
        scale=scale,
        tolerance=float(tolerance),
        reference_headline=reference,
        label=_str(item.get("label", ""), path, f"{where}.label"),
    )


def _dict(value: Any, path: Path, where: str) -> dict:
    """``value`` if it is a JSON object, else an error naming ``where``."""
    if not isinstance(value, dict):
        raise ResultFileError(path, f"{where} must be an object, got {type(value).__name__}")
    return value


def _list(value: Any, path: Path, where: str) -> list:
    """``value`` if it is a JSON array, else an error naming ``where``."""
    if not isinstance(value, list):
        raise ResultFileError(path, f"{where} must be a list, got {type(value).__name__}")
    return value


def _str(value: Any, path: Path, where: str) -> str:
    """``value`` if it is a string (non-empty for ``….name`` fields), else an error naming ``where``."""
    if not isinstance(value, str) or (where.endswith(".name") and not value):
        raise ResultFileError(path, f"{where} must be a non-empty string, got {value!r}")
    return value
