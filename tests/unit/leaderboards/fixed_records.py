"""A fixed, hand-written record set for the leaderboard tests and golden files.

It exercises every table: three LLMs with TG-LLaVA and LLaVA-1.5 on VLMEvalKit (one baseline
score missing), the Qwen2 ablations (no-fom, no-dp), lmms-eval runs of the Vicuna pair (for the
agreement table, with per-sample answers that agree on 3 of 4 samples), a duplicate headline from
an older run (newest wins), reported rows of LLaVA-1.5 and ConvLLaVA (with LaTeX/HTML special
characters in a citation), and a run manifest. Values are arbitrary but fixed.
"""

from __future__ import annotations

import json

import pandas as pd

from tg_llava_eval.results import SamplePrediction, ScoreRecord, records_to_frame, samples_to_frame
from tg_llava_eval.results.identity import VARIANTS

#: Headline benchmarks of the fixed set: name -> (dataset, split, metric, scale).
BENCHMARKS = {
    "MMBench": ("MMBench_DEV_EN", "dev", "accuracy", "percent"),
    "MME": ("MME", "", "perception", "sum"),
    "POPE": ("POPE", "", "f1", "percent"),
    "GQA": ("GQA_TestDev_Balanced", "testdev_balanced", "accuracy", "percent"),
    "TextVQA": ("TextVQA_VAL", "val", "accuracy", "percent"),
}

#: VLMEvalKit headline values per variant, benchmark order as in BENCHMARKS (None = not run).
VLMEVALKIT_VALUES = {
    "llava-1.5-vicuna-13b": (67.1, 1502.4, 86.2, 63.0, 59.9),
    "tg-llava-vicuna-13b": (69.4, 1550.0, 87.1, 64.2, 61.0),
    "llava-1.5-llama3-8b": (70.2, 1520.5, 85.9, 62.8, None),
    "tg-llava-llama3-8b": (72.0, 1569.8, 87.0, 63.9, 60.4),
    "llava-1.5-qwen2-7b": (71.5, 1548.1, 86.5, 62.1, 58.2),
    "tg-llava-qwen2-7b": (74.3, 1601.2, 88.0, 63.5, 60.9),
    "tg-llava-qwen2-7b-no-fom": (73.0, 1570.6, 87.2, 62.9, 59.5),
    "tg-llava-qwen2-7b-no-dp": (72.6, 1588.3, 87.6, 63.0, 60.1),
}
#: VLMEvalKit model folder per variant (presets; ablations run through the generic preset).
MODEL_NAMES = {
    "llava-1.5-vicuna-13b": "LLaVA-1.5-Vicuna-13B-TG",
    "tg-llava-vicuna-13b": "TG-LLaVA-Vicuna-13B",
    "llava-1.5-llama3-8b": "LLaVA-1.5-Llama3-8B-TG",
    "tg-llava-llama3-8b": "TG-LLaVA-Llama3-8B",
    "llava-1.5-qwen2-7b": "LLaVA-1.5-Qwen2-7B-TG",
    "tg-llava-qwen2-7b": "TG-LLaVA-Qwen2-7B",
    "tg-llava-qwen2-7b-no-fom": "tg-llava-qwen2-7b-no-fom",
    "tg-llava-qwen2-7b-no-dp": "tg-llava-qwen2-7b-no-dp",
}
#: lmms-eval headline values of the Vicuna pair: MMBench, MME, POPE.
LMMS_VALUES = {
    "llava-1.5-vicuna-13b": (66.8, 1498.0, 86.2),
    "tg-llava-vicuna-13b": (69.9, 1541.5, 86.9),
}
RUN_TIME = "2026-01-12T17:45:00+00:00"
OLDER_RUN_TIME = "2026-01-05T08:00:00+00:00"
MANIFEST = json.dumps(
    {"checkpoint": "ckpts/tg-qwen2", "schema": "tg_llava_run/1", "toolkit": "vlmevalkit", "toolkit_version": "0.0.20", "variant": "tg-llava-qwen2-7b"},
    sort_keys=True, separators=(",", ":"),
)


def _reproduced(toolkit: str, model: str, variant: str, benchmark: str, value: float, *, run_time: str = RUN_TIME, manifest: str = "") -> ScoreRecord:
    dataset, split, metric, scale = BENCHMARKS[benchmark]
    if toolkit == "lmms-eval":
        dataset = {"MMBench": "mmbench_en_dev", "MME": "mme", "POPE": "pope"}[benchmark]
    info = VARIANTS[variant]
    folder = f"work/{model}" if toolkit == "vlmevalkit" else f"lmms_out/{model.replace('/', '__')}"
    return ScoreRecord(
        model=model, variant=variant, method=info.method, llm=info.llm, toolkit=toolkit,
        toolkit_version="0.0.20" if toolkit == "vlmevalkit" else "0.7.3", benchmark=benchmark, dataset=dataset,
        split=split, category="", metric=metric, value=float(value), scale=scale, higher_is_better=True,
        n=None, primary=True, origin="reproduced", source=f"{folder}/{dataset}_score.csv", run_time=run_time,
        manifest=manifest,
    )


def _reported(method: str, llm: str, benchmark: str, split: str, metric: str, value: float, toolkit: str, citation: str, model: str, line: int) -> ScoreRecord:
    return ScoreRecord(
        model=model, variant="", method=method, llm=llm, toolkit=toolkit, toolkit_version="", benchmark=benchmark,
        dataset="", split=split, category="", metric=metric, value=float(value),
        scale="sum" if benchmark == "MME" else "percent", higher_is_better=True, n=None, primary=True,
        origin="reported", source=f"reference.csv:{line}", citation=citation,
    )


def fixed_records() -> list[ScoreRecord]:
    """The fixed record set (see the module docstring)."""
    records = []
    for variant, values in VLMEVALKIT_VALUES.items():
        manifest = MANIFEST if variant == "tg-llava-qwen2-7b" else ""
        for benchmark, value in zip(BENCHMARKS, values):
            if value is not None:
                records.append(_reproduced("vlmevalkit", MODEL_NAMES[variant], variant, benchmark, value, manifest=manifest))
    # An older run of the same variant under the generic preset name: loses to the newer one.
    records.append(_reproduced("vlmevalkit", "tg_llava", "tg-llava-vicuna-13b", "MMBench", 60.0, run_time=OLDER_RUN_TIME))
    for variant, values in LMMS_VALUES.items():
        model = f"ckpts/{variant}"
        for benchmark, value in zip(("MMBench", "MME", "POPE"), values):
            records.append(_reproduced("lmms-eval", model, variant, benchmark, value))
    # A non-headline record (category): never shown in tables.
    records.append(records[0].replace(category="AR", value=12.5, primary=False))
    zoo = "LLaVA MODEL_ZOO.md (haotian-liu/LLaVA@c121f04)"
    vlmeval = "VLMEvalKit results/*.md @e02f3ff7"
    conv = "ConvLLaVA README & zoo (arXiv 2405.15738), 50% res_x [v1]"
    records += [
        _reported("LLaVA-1.5", "Vicuna-13B", "MMBench", "dev (mmbench_dev_20230712)", "accuracy", 67.7, "LLaVA official eval scripts", zoo, "LLaVA-1.5 Vicuna-13B @336px/576tok", 2),
        _reported("LLaVA-1.5", "Vicuna-13B", "MME", "perception", "score (max 2000)", 1531.3, "LLaVA official eval scripts", zoo, "LLaVA-1.5 Vicuna-13B @336px/576tok", 3),
        _reported("LLaVA-1.5", "Vicuna-13B", "POPE", "COCO POPE", "as reported", 85.9, "LLaVA official eval scripts", zoo, "LLaVA-1.5 Vicuna-13B @336px/576tok", 4),
        _reported("LLaVA-1.5", "Vicuna-13B", "GQA", "testdev_balanced", "accuracy", 63.3, "LLaVA official eval scripts", zoo, "LLaVA-1.5 Vicuna-13B @336px/576tok", 5),
        _reported("LLaVA-1.5", "Vicuna-13B", "TextVQA", "val", "accuracy", 61.3, "LLaVA official eval scripts", zoo, "LLaVA-1.5 Vicuna-13B @336px/576tok", 6),
        _reported("LLaVA-1.5", "Vicuna-13B", "MME", "perception", "score (exact matching)", 1485.0, "VLMEvalKit", vlmeval, "LLaVA-1.5 Vicuna-13B @336px/576tok", 7),
        _reported("ConvLLaVA", "7B", "MME", "not stated", "as reported", 1541.0, "not stated", conv, "ConvLLaVA 7B @768px/144tok", 8),
        _reported("ConvLLaVA", "7B", "MMBench", "not stated", "as reported", 68.0, "not stated", conv, "ConvLLaVA 7B @768px/144tok", 9),
        _reported("ConvLLaVA", "7B", "DocVQA", "not stated", "as reported", 44.8, "not stated", conv, "ConvLLaVA 7B @768px/144tok", 10),
    ]
    return records


def fixed_samples() -> list[SamplePrediction]:
    """POPE answers of tg-llava-vicuna-13b in both toolkits: 3 of 4 shared samples agree."""
    vlm = ["Yes", "no", "Yes.", "No"]
    lmms = ["yes", "No", "yes", "Yes"]
    samples = []
    for i, (a, b) in enumerate(zip(vlm, lmms)):
        samples.append(SamplePrediction("TG-LLaVA-Vicuna-13B", "tg-llava-vicuna-13b", "vlmevalkit", "POPE", "POPE", str(i), a, "", "work/pope.xlsx", RUN_TIME))
        samples.append(SamplePrediction("ckpts/tg-llava-vicuna-13b", "tg-llava-vicuna-13b", "lmms-eval", "POPE", "pope", str(i), b, "", "lmms/pope.jsonl", RUN_TIME))
    # A sample only one toolkit answered does not count.
    samples.append(SamplePrediction("TG-LLaVA-Vicuna-13B", "tg-llava-vicuna-13b", "vlmevalkit", "POPE", "POPE", "99", "Yes", "", "work/pope.xlsx", RUN_TIME))
    return samples


def fixed_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(records frame, samples frame)`` of the fixed set."""
    return records_to_frame(fixed_records()), samples_to_frame(fixed_samples())
